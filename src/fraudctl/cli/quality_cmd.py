"""`fraudctl quality`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from fraudctl.cli.common import (
    GracefulStop,
    JsonOption,
    console,
    err_console,
    print_json,
    state_of,
    table,
    verdict,
)

SHOWN = {
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "precision_at_threshold": "precision @ threshold",
    "recall_at_threshold": "recall @ threshold",
    "alert_rate": "alert rate",
    "brier": "Brier score",
    "calibration_error": "calibration error (ECE)",
    "top_k_precision": "card precision top-k / day",
    "fraud_share": "fraud share",
}


def quality(
    ctx: typer.Context,
    window: Annotated[
        str,
        typer.Option(help="Predictions scored in last:DURATION (ending now) or START/END."),
    ] = "last:24h",
    by: Annotated[str, typer.Option(help="variant or version.")] = "variant",
    top_k: Annotated[
        int | None,
        typer.Option(min=1, help="k of the card precision top-k (default: quality_top_k)."),
    ] = None,
    show_history: Annotated[
        bool, typer.Option("--history", help="Print the recorded runs (newest last) and exit.")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Measure again every --every (the window moving with the clock) until "
            "Ctrl-C, serving the gauges on 127.0.0.1:--metrics-port.",
        ),
    ] = False,
    every: Annotated[
        str, typer.Option(metavar="DURATION", help="--follow: time between runs (e.g. 1m).")
    ] = "5m",
    metrics_port: Annotated[
        int, typer.Option(min=0, max=65535, help="--follow: Prometheus port (0 = none).")
    ] = 9465,
    as_json: JsonOption = False,
) -> None:
    """Live model quality: the prediction log joined with the labels as they arrive,
    per variant (or model version): matured-label coverage, ROC AUC, PR AUC, precision and
    recall at the served threshold, alert rate, Brier score, calibration error, card
    precision top-k per day and the label delay — each with a 95 % interval and the
    counts behind it (docs/quality.md). A prediction counts once its label arrived, or as
    unlabeled once it is older than quality_max_label_delay_s; younger ones are pending.

    Every run is appended to the quality log in the offline store, and pushed as gauges
    when FRAUDCTL_PUSHGATEWAY_URL is set.

    With --follow: one run per --every (a run that overruns is not stacked), each logged
    and pushed, its gauges also served on --metrics-port; --json prints one JSON line per
    run. Ctrl-C stops it (exit 130).

    Exit 0 with figures for every group; 4 when a group has too few matured labels
    (insufficient_data, its figures left out); 3 a store or the registry is unreachable.
    """
    from fraudctl.services.drift import WindowSpec
    from fraudctl.services.quality import QualityOptions, history, measure_quality, options_of
    from fraudctl.timespec import parse_duration

    state = state_of(ctx)
    settings = state.settings
    if show_history:
        runs = history(state.backends.offline)
        if as_json:
            print_json({"runs": runs})
        else:
            rows = [
                (
                    r["as_of"],
                    r["by"],
                    r["status"],
                    ", ".join(f"{g['group']} {_short(g)}" for g in r["groups"]),
                )
                for r in runs
            ]
            console.print(table("quality runs", ("as of", "by", "status", "groups"), rows))
        return

    def options_at(now: datetime) -> QualityOptions:
        spec = WindowSpec.parse("--window", window, now=now, training_allowed=False)
        assert spec.start is not None and spec.end is not None
        overrides = {"as_of": now, "by": by} | ({} if top_k is None else {"top_k": top_k})
        return options_of(settings, spec.start, spec.end, **overrides)

    options = options_at(datetime.now(UTC))  # a bad --window or --by: exit 2 before anything
    if follow:
        _follow(state.backends, options_at, parse_duration("--every", every), metrics_port,
                as_json)  # fmt: skip
        return
    with err_console.status("measuring quality…") as status:
        result = measure_quality(state.backends, options, lambda m: status.update(f"{m}…"))
    verdict(
        result.as_dict(), as_json, _show, ok=result.status == "ok", push_error=result.push_error
    )


def _follow(backends: Any, options_at: Any, every_s: float, port: int, as_json: bool) -> None:
    from fraudctl.adapters.metrics import GaugeBoard
    from fraudctl.errors import ExitCode
    from fraudctl.services.quality import follow_quality, quality_gauges

    board = GaugeBoard()
    if port:
        board.serve(port)
        err_console.print(f"quality gauges on http://127.0.0.1:{port}/metrics")

    def on_result(result: Any) -> None:
        board.show(quality_gauges(result))
        if result.push_error:
            err_console.print(f"[yellow]warning[/yellow]: gauges not pushed: {result.push_error}")
        if as_json:
            print_json(result.as_dict())
        else:
            _show(result.as_dict())

    with GracefulStop() as stop:
        follow_quality(backends, options_at, every_s, on_result, stop.requested)
    raise typer.Exit(ExitCode.INTERRUPTED)


def _short(group: dict[str, Any]) -> str:
    auc = (group.get("figures") or {}).get("roc_auc") or {}
    return f"AUC {auc['value']:.3f}" if auc.get("value") is not None else group["status"]


def _cell(estimate: dict[str, Any] | None) -> str:
    if not estimate or estimate.get("value") is None:
        return "—"
    return f"{estimate['value']:.4f} [{estimate['low']:.4f}, {estimate['high']:.4f}]"


def _show(outcome: dict[str, Any]) -> None:
    groups = outcome["groups"]
    if not groups:
        console.print(
            f"no predictions scored in {outcome['window']['start']} → {outcome['window']['end']}"
        )
        return
    header = ["", *(g["group"] for g in groups)]
    rows: list[list[str]] = [
        ["versions", *(", ".join(g["versions"]) for g in groups)],
        ["predictions", *(f"{g['counts']['predictions']:,}" for g in groups)],
        [
            "matured labels (fraud)",
            *(f"{g['counts']['labeled']:,} ({g['counts']['fraud']:,})" for g in groups),
        ],
        [
            "unlabeled · pending",
            *(f"{g['counts']['unlabeled_matured']:,} · {g['counts']['pending']:,}" for g in groups),
        ],
        ["coverage", *(_cell(g["coverage"]) for g in groups)],
    ]
    for key, label in SHOWN.items():
        rows.append([label, *(_cell(g["figures"].get(key)) for g in groups)])
    rows.append(
        [
            "label delay p50 / p99 (s)",
            *(
                f"{g['label_delay_s']['p50']:.0f} / {g['label_delay_s']['p99']:.0f}"
                if g["label_delay_s"]["p50"] is not None
                else "—"
                for g in groups
            ),
        ]
    )
    rows.append(
        ["status", *(g["status"] + (f": {g['reason']}" if g["reason"] else "") for g in groups)]
    )
    console.print(
        table(
            f"quality of {outcome['model']} by {outcome['by']} "
            f"({outcome['window']['start']} → {outcome['window']['end']})",
            header,
            rows,
        )
    )
