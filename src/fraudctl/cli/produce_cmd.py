"""`fraudctl produce`: the synthetic transaction stream."""

from __future__ import annotations

import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.panel import Panel

from fraudctl.cli.common import (
    FRAUD_RATE,
    FraudRateOption,
    GracefulStop,
    JsonOption,
    console,
    err_console,
    explicit,
    key_values,
    option_name,
    print_json,
    state_of,
)
from fraudctl.errors import ExitCode, UsageError
from fraudctl.timespec import parse_duration

if TYPE_CHECKING:
    from fraudctl.services.produce import ProduceSummary
    from fraudctl.services.replay import ReplaySummary

DRIFT_HELP = (
    "Shift distributions: amount=F (scale amounts), country=CC:P (send share P of events "
    "to country CC), device=D:P (likewise a device), fraud=F (fraud rate). "
    "Example: amount=1.8,country=BR:0.5"
)


def produce(
    ctx: typer.Context,
    rate: Annotated[
        float,
        typer.Option(min=0, help="Events per second, paced by a clock; 0 = as fast as possible."),
    ] = 100.0,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after N events.")] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.001, help="Stop after SECONDS (else run until Ctrl-C).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed and options, same events.")] = 0,
    population_seed: Annotated[
        int | None,
        typer.Option(
            help="Seed of the users (homes, devices, spend, activity); default --seed. "
            "Another --seed with the same population is new traffic of the same users."
        ),
    ] = None,
    users: Annotated[int, typer.Option(min=1, help="Size of the user population.")] = 10_000,
    fraud_rate: FraudRateOption = FRAUD_RATE,
    label_delay: Annotated[
        float, typer.Option(min=0, help="Seconds after each event its true label is published.")
    ] = 60.0,
    drift: Annotated[str | None, typer.Option(help=DRIFT_HELP)] = None,
    invalid_rate: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="Share of records deliberately breaking the contract (DLQ tests)."
        ),
    ] = 0.0,
    start: Annotated[
        str | None,
        typer.Option(
            help="Event time of the first event (ISO-8601 UTC). Default: now; with --rate 0, "
            "so that the events end now."
        ),
    ] = None,
    span: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="With --rate 0 and --count: spread the events over this much event time "
            "(e.g. 48h), ending now or starting at --start. Default: 100 events per second.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Producer processes, each with its share of the users (per-user order is "
            "kept). Default: 2 with --rate 0, else 1. A seed reproduces the events for a "
            "given number of workers.",
        ),
    ] = None,
    delivery_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to keep retrying a message the bus has not acked.")
    ] = 120.0,
    score: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Also POST every valid event to /v1/score of the `fraudctl serve` at URL, as "
            "the payment system would: the served predictions and the labels share event "
            "ids (what `fraudctl quality` joins). Latency and errors are counted.",
        ),
    ] = None,
    score_concurrency: Annotated[
        int, typer.Option(min=1, max=256, help="--score: requests in flight at most.")
    ] = 8,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            metavar="FILE",
            help="Replay your own transactions from a .csv, .jsonl or .parquet file (also "
            ".csv.gz, .jsonl.gz) instead of generating them: each row an event, rows that "
            "cannot be one go to the DLQ with the file, row and reason. --rate defaults to "
            "0 (as fast as possible) here.",
        ),
    ] = None,
    map_spec: Annotated[
        str | None,
        typer.Option(
            "--map",
            metavar="FIELD=COLUMN,…",
            help="--from: the file's column of each contract field, e.g. "
            "transaction_amount=amt,user_id=cc_num (a field not named here comes from the "
            "column of its own name).",
        ),
    ] = None,
    set_spec: Annotated[
        str | None,
        typer.Option(
            "--set",
            metavar="FIELD=VALUE,…",
            help="--from: one value of a field for every row, e.g. country=US,device=web.",
        ),
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(
            metavar="COLUMN",
            help="--from: the column of the true label (default: 'label' "
            "when the file has it; none: no labels are published).",
        ),
    ] = None,
    label_ts_column: Annotated[
        str | None,
        typer.Option(
            metavar="COLUMN",
            help="--from: the column of when each label became known (instead of --label-delay).",
        ),
    ] = None,
    time_mode: Annotated[
        str,
        typer.Option(
            "--time",
            metavar="keep|shift-to-now|Nx",
            help="--from: keep the file's event times (refused if any is more than a minute "
            "ahead), shift them so the last event is now, or compress the timeline N times "
            "and publish each event when its time comes (60x: an hour in a minute).",
        ),
    ] = "keep",
    as_json: JsonOption = False,
) -> None:
    """Publish a realistic synthetic transaction stream with delayed labels.

    Live events carry label null; each event's true label follows on the labels topic
    --label-delay seconds later. Exit 0 when every published message was acknowledged,
    3 when some were not (the summary says how many), 130 after Ctrl-C.
    """
    from fraudctl.adapters.bus import stream_topics
    from fraudctl.bootstrap import open_producer, open_scoring
    from fraudctl.generator import DriftSpec, GeneratorOptions
    from fraudctl.services.produce import ProducePlan, produce_in_workers

    if from_file is not None:
        from fraudctl.cli.produce_from import replay_file

        replay_file(ctx, from_file, map_spec=map_spec, set_spec=set_spec,
                    label_column=label_column, label_ts_column=label_ts_column,
                    time_mode=time_mode, rate=rate, label_delay=label_delay,
                    delivery_timeout=delivery_timeout, score=score,
                    score_concurrency=score_concurrency, as_json=as_json)  # fmt: skip
        return
    replay_only = [name for name in ("map_spec", "set_spec", "label_column", "label_ts_column",
                                     "time_mode") if explicit(ctx, name)]  # fmt: skip
    if replay_only:
        raise UsageError(
            f"{', '.join(option_name(ctx, n) for n in replay_only)} only apply with --from FILE"
        )
    if count is not None and duration is not None:
        raise UsageError("give --count or --duration, not both")
    if rate == 0 and count is None and start is None:
        raise UsageError(
            "--rate 0 needs --count (events are laid out to end now) or an explicit --start"
        )
    first, event_rate = _event_layout(rate, count, start, span)

    workers = workers or (2 if rate == 0 and score is None else 1)
    if workers > users:
        raise UsageError(f"--workers {workers} is more than --users {users}")
    state = state_of(ctx)
    settings = state.settings
    options = GeneratorOptions(
        users=users, fraud_rate=fraud_rate, seed=seed, drift=DriftSpec.parse(drift),
        population_seed=population_seed,
    )  # fmt: skip
    plan = ProducePlan(
        rate=rate,
        count=count,
        duration=duration,
        label_delay=label_delay,
        invalid_rate=invalid_rate,
        start=first,
        topic_transactions=settings.topic_transactions,
        topic_labels=settings.topic_labels,
        delivery_timeout_s=delivery_timeout,
        event_rate=event_rate,
    )
    bus = state.backends.bus
    bus.ensure_topics(stream_topics(settings), settings.topic_partitions)

    stop = GracefulStop()
    live = Live(console=err_console, transient=True, auto_refresh=False)
    show = err_console.is_terminal and not as_json
    with stop, live if show else nullcontext():

        def progress(summary: ProduceSummary, message: str) -> None:
            if show:
                live.update(_panel(summary, message, bus.address), refresh=True)

        summary = produce_in_workers(
            partial(open_producer, settings, delivery_timeout),
            options,
            plan,
            workers,
            should_stop=stop.requested,
            on_progress=progress,
            open_scoring=None if score is None else partial(open_scoring, score, score_concurrency),
        )

    result = summary.as_dict() | {
        "bus": settings.bus,
        "address": bus.address,
        "topics": {"transactions": plan.topic_transactions, "labels": plan.topic_labels},
        "rate": rate,
        "workers": workers,
        "seed": seed,
        "drift": options.drift.describe(),
        "score_url": score,
    }
    if as_json:
        print_json(result)
    else:
        console.print(key_values(_summary_rows(result)))
    exit_for(summary, bus.address, score)


def exit_for(summary: ProduceSummary | ReplaySummary, address: str, score: str | None) -> None:
    """The exit of a produce run: 3 when messages were not acknowledged or a --score
    server answered nothing, 130 after Ctrl-C (the summary is printed first)."""
    if summary.not_acknowledged:
        err_console.print(
            f"[red]error:[/red] {summary.not_acknowledged:,} messages were not acknowledged by "
            f"{address} ({summary.failures or 'still in flight at the delivery timeout'})"
        )
        raise typer.Exit(ExitCode.BACKEND_UNAVAILABLE)
    if score is not None and summary.scored == 0 and summary.score_failed:
        err_console.print(
            f"[red]error:[/red] the server at {score} answered none of {summary.score_failed:,} "
            f"scoring requests ({summary.score_errors}); is `fraudctl serve` running there?"
        )
        raise typer.Exit(ExitCode.BACKEND_UNAVAILABLE)
    if summary.stopped_by == "interrupt":
        raise typer.Exit(ExitCode.INTERRUPTED)


def _event_layout(
    rate: float, count: int | None, start: str | None, span: str | None
) -> tuple[float | None, float | None]:
    """The event time of the first event and, for `--span`, the event-time rate."""
    from fraudctl.contract import parse_utc_timestamp
    from fraudctl.services.produce import default_start

    event_rate = None
    if span is not None:
        if rate != 0 or count is None:
            raise UsageError(
                "--span lays out a --rate 0 run", hint="use it with --rate 0 and --count"
            )
        event_rate = count / parse_duration("--span", span)
    now = time.time()
    if start is None:
        first = default_start(rate, count, now, event_rate)
    else:
        try:
            first = parse_utc_timestamp(start).timestamp()
        except ValueError as exc:
            raise UsageError(f"--start {start!r} {exc}") from exc
        if first > now + 60:
            raise UsageError(f"--start {start} is in the future; events would break the contract")
        if event_rate is not None and count is not None and first + count / event_rate > now + 60:
            raise UsageError(
                f"--start {start} with --span {span} ends in the future; events would break "
                "the contract",
                hint="start earlier, or drop --start to end the span now",
            )

    return first, event_rate


def _summary_rows(result: dict[str, object]) -> dict[str, object]:
    from fraudctl.services.produce import COUNTS

    run = ("elapsed_s", "producing_s", "events_per_s", "stopped_by", "workers")
    scoring = ("score_url", "score_p50_ms", "score_p95_ms") if result.get("score_url") else ()
    return formatted(result, (*COUNTS, *run, "bus", "address", "drift", *scoring))


def formatted(result: dict[str, object], keys: tuple[str, ...]) -> dict[str, object]:
    """The rows of a summary table: ``keys`` of ``result``, numbers with separators."""
    rows = {}
    for key in keys:
        value = result[key]
        rows[key.replace("_", " ")] = (
            f"{value:,.1f}"
            if isinstance(value, float)
            else (f"{value:,}" if isinstance(value, int) else value)
        )
    return rows


def _panel(summary: ProduceSummary, message: str, address: str) -> Panel:
    data = summary.as_dict()
    text = (
        f"{message} → {address}\n"
        f"published {data['published']:,}  acked {data['acknowledged']:,}  "
        f"failed {data['failed']:,}  labels {data['labels_published']:,}\n"
        f"rate {data['events_per_s']:,.0f} ev/s  elapsed {data['elapsed_s']:,.1f} s  "
        f"invalid injected {data['invalid_injected']:,}"
    )
    return Panel(text, title="fraudctl produce", expand=False)
