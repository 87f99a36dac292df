"""`fraudctl train`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from fraudctl.cli.common import (
    GracefulStop,
    JsonOption,
    console,
    err_console,
    key_values,
    print_json,
    state_of,
)
from fraudctl.timespec import parse_duration, parse_time_bound

if TYPE_CHECKING:
    from fraudctl.services.train import TrainOptions


def train(
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Option(
            help="hgb (HistGradientBoosting, default) or logreg (splines + logistic regression)."
        ),
    ] = "hgb",
    since: Annotated[
        str | None,
        typer.Option(help="Only events at or after this time (ISO-8601 UTC or YYYY-MM-DD)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="Only events before this time, with the labels known by then "
            "(ISO-8601 UTC or YYYY-MM-DD). Default: now."
        ),
    ] = None,
    test_fraction: Annotated[
        float,
        typer.Option(min=0.05, max=0.5, help="Newest share of labeled events held out."),
    ] = 0.2,
    every: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Retrain on this interval (e.g. 1h, 30m) while new labeled data arrives; "
            "Ctrl-C stops between runs.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the model.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Train a fraud model on a point-in-time training set from Feast, log it to MLflow
    (params, metrics, plots, skops model, lineage) and register a new version with the
    alias `candidate`.

    Exit 0 when a version was registered, 4 when there is too little labeled data, 3
    when the registry or the offline store is unreachable.
    """
    from fraudctl.errors import UsageError
    from fraudctl.model import MODEL_KINDS
    from fraudctl.services.train import TrainOptions

    if model not in MODEL_KINDS:
        raise UsageError(
            f"--model {model!r} is not a known model", hint=f"use one of: {', '.join(MODEL_KINDS)}"
        )
    since_at = parse_time_bound("--since", since) if since else None
    until_at = parse_time_bound("--until", until) if until else None
    if since_at and until_at and until_at <= since_at:
        raise UsageError(
            f"--until {until} is not after --since {since}", hint="give a later --until"
        )
    interval = parse_duration("--every", every) if every else None
    if interval is not None and until_at is not None:
        raise UsageError(
            "--every retrains on data as it arrives; a fixed --until would train on the same "
            "data every time",
            hint="drop --until (or --every)",
        )
    options = TrainOptions(model, since_at, until_at, test_fraction, seed)
    settings = state_of(ctx).settings
    if interval is None:
        _train_once(settings, options, as_json)
    else:
        _train_every(settings, options, interval, as_json)


def _open(settings: Any) -> tuple[Any, Any, Any]:
    from fraudctl.bootstrap import wire

    backends = wire(settings)
    backends.registry.check()  # fail fast, before reading anything
    with err_console.status("opening the feature store…"):
        feast = backends.features
    return backends.offline, feast, backends.registry


def _train_once(settings: Any, options: TrainOptions, as_json: bool) -> None:
    from fraudctl.services.train import train_once

    offline, feast, registry = _open(settings)
    with err_console.status("training…") as status:

        def progress(message: str) -> None:
            status.update(f"{message}…")

        result = train_once(offline, feast, registry, options, progress)
    _report(result.as_dict(), as_json)


def _train_every(settings: Any, options: TrainOptions, interval: float, as_json: bool) -> None:
    from fraudctl.services.train import retrain_every

    offline, feast, registry = _open(settings)
    with GracefulStop() as stop, err_console.status("training…") as status:

        def progress(message: str) -> None:
            status.update(f"{message}…")

        trained = retrain_every(
            offline,
            feast,
            registry,
            options,
            interval,
            progress,
            lambda outcome: _report(outcome, as_json),
            stop.requested,
        )
    if not as_json:
        err_console.print(f"stopped after {trained} registered run(s)")


def _report(outcome: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(outcome)
        return
    if outcome.get("skipped"):
        console.print(f"[yellow]skipped[/yellow]: {outcome['reason']}")
        return
    metrics, rows, timings = outcome["metrics"], outcome["rows"], outcome["timings"]
    console.print(
        key_values(
            {
                "model": f"{outcome['model_name']} version {outcome['version']} "
                f"(alias {outcome['alias']}, {outcome['model']})",
                "run": f"{outcome['run_id']} (experiment {outcome['experiment_id']})",
                "tracking": outcome["tracking_uri"],
                "threshold": f"{outcome['threshold']:.4f} (max F1 on validation)",
                "ROC AUC": f"{metrics['roc_auc']:.4f}",
                "PR AUC": f"{metrics['pr_auc']:.4f}",
                "recall @ 1% FPR": f"{metrics['recall_at_1pct_fpr']:.4f}",
                "precision / recall @ threshold": f"{metrics['precision_at_threshold']:.4f}"
                f" / {metrics['recall_at_threshold']:.4f}",
                "Brier": f"{metrics['brier']:.4f}",
                "rows": f"{rows['labeled']:,} labeled (fit {rows['fit']:,}, validation "
                f"{rows['validation']:,}, holdout {rows['holdout']:,}); "
                f"{rows['unlabeled']:,} without a label yet, "
                f"{rows['without_features']:,} without features",
                "fraud share": ", ".join(
                    f"{name} {part['fraud_share']:.2%}" for name, part in outcome["splits"].items()
                ),
                "time": f"{timings['total_s']:.1f} s (features {timings['retrieval_s']:.1f} s, "
                f"fit {timings['fit_s']:.1f} s)",
            },
            title="trained",
        )
    )
