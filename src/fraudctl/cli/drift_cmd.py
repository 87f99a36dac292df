"""`fraudctl drift`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from fraudctl.cli.common import (
    JsonOption,
    console,
    err_console,
    state_of,
    table,
    verdict,
)


def drift(
    ctx: typer.Context,
    reference: Annotated[
        str,
        typer.Option(
            help="training (the serving baseline's training window, from its MLflow lineage) "
            "or START/END (ISO-8601 UTC or YYYY-MM-DD)."
        ),
    ] = "training",
    current: Annotated[
        str, typer.Option(help="last:DURATION (ending now, e.g. last:1h) or START/END.")
    ] = "last:1h",
    source: Annotated[
        str,
        typer.Option(help="predictions (the serving prediction log) or events (materialized)."),
    ] = "predictions",
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Drift when the largest PSI reaches this (default: setting drift_threshold, 0.3).",
        ),
    ] = None,
    min_rows: Annotated[
        int, typer.Option(min=1, help="Fewer rows in either window: insufficient_data.")
    ] = 500,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the Evidently HTML report (default under FRAUDCTL_HOME)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Measure drift of the model's inputs and score: PSI per feature with bins fixed from
    the reference, an Evidently HTML report (copied to the offline store and logged to
    MLflow), and a record `promote` reads.

    Exit 0 ok; 4 drift (largest PSI ≥ --threshold) or insufficient data (fewer than
    --min-rows in either window); 3 a store or the registry is unreachable.
    """
    from fraudctl.errors import UsageError
    from fraudctl.services.drift import SOURCES, DriftOptions, WindowSpec, run_drift

    if source not in SOURCES:
        raise UsageError(f"--source {source!r} is not known", hint="use predictions or events")
    now = datetime.now(UTC)
    state = state_of(ctx)
    settings = state.settings
    options = DriftOptions(
        WindowSpec.parse("--reference", reference, now=now, training_allowed=True),
        WindowSpec.parse("--current", current, now=now, training_allowed=False),
        source,
        settings.drift_threshold if threshold is None else threshold,
        min_rows,
        report,
    )
    with err_console.status("measuring drift…") as status:
        result = run_drift(state.backends, options, lambda m: status.update(f"{m}…"))
    verdict(
        result.as_dict(), as_json, _show, ok=result.status == "ok", push_error=result.push_error
    )


def _show(outcome: dict[str, Any]) -> None:
    rows = sorted(outcome["features"], key=lambda f: -f["psi"])
    console.print(
        table(
            f"drift of {outcome['model']['name']} v{outcome['model']['version']} inputs",
            ["feature", "PSI", "bins"],
            [
                (
                    f["feature"],
                    f"{f['psi']:.4f}" + (" ⚠" if f["psi"] >= outcome["threshold"] else ""),
                    len(f["bins"]),
                )
                for f in rows
            ],
        )
    )
    ref, cur = outcome["reference"], outcome["current"]
    console.print(f"reference: {ref['what']} {ref['start']} → {ref['end']} ({ref['rows']:,} rows)")
    console.print(f"current: {cur['what']} {cur['start']} → {cur['end']} ({cur['rows']:,} rows)")
    score = outcome["drift_score"]
    colour = {"ok": "green", "drift": "red"}.get(outcome["status"], "yellow")
    console.print(
        f"status: [{colour}]{outcome['status']}[/{colour}]"
        + (
            f" (drift score {score:.4f}, threshold {outcome['threshold']})"
            if score is not None
            else ""
        )
        + (
            f" — fewer than {outcome['min_rows']} rows in a window"
            if outcome["status"] == "insufficient_data"
            else ""
        )
    )
    if outcome["report"]:
        console.print(f"report: {outcome['report']} (copied to {outcome['report_uri']})")
