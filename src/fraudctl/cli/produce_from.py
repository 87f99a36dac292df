"""`fraudctl produce --from FILE`: replay the user's own transactions."""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.live import Live
from rich.panel import Panel

from fraudctl.cli import common
from fraudctl.cli.produce_cmd import exit_for, formatted
from fraudctl.errors import UsageError

if TYPE_CHECKING:
    from fraudctl.services.replay import ReplaySummary

# Options of the generator that mean nothing for a file.
GENERATOR_ONLY = ("count", "duration", "seed", "population_seed", "users", "fraud_rate", "drift",
                  "invalid_rate", "start", "span", "workers")  # fmt: skip


def replay_file(
    ctx: typer.Context,
    path: Path,
    *,
    map_spec: str | None,
    set_spec: str | None,
    label_column: str | None,
    label_ts_column: str | None,
    time_mode: str,
    rate: float,
    label_delay: float,
    delivery_timeout: float,
    score: str | None,
    score_concurrency: int,
    as_json: bool,
) -> None:
    from fraudctl.adapters.bus import stream_topics
    from fraudctl.bootstrap import open_producer, open_scoring, open_source
    from fraudctl.replay import ColumnMap, TimeMode
    from fraudctl.services.replay import ReplayPlan, replay

    explicit = partial(common.explicit, ctx)
    given = [common.option_name(ctx, name) for name in GENERATOR_ONLY if explicit(name)]
    if given:
        raise UsageError(
            f"{', '.join(given)}: options of the generator, not of --from",
            hint="a replay publishes every row of the file; drop them",
        )
    if label_ts_column is not None and explicit("label_delay"):
        raise UsageError("give --label-ts-column or --label-delay, not both")
    mode = TimeMode.parse(time_mode)
    if mode.kind == "compress" and explicit("rate"):
        raise UsageError(
            f"--time {time_mode} paces the replay by the file's own times; --rate cannot "
            "pace it too",
            hint="drop --rate, or use --time keep|shift-to-now with --rate",
        )
    source = open_source(path)
    columns = ColumnMap.build(
        source.columns(),
        map_spec=map_spec,
        set_spec=set_spec,
        label_column=label_column,
        label_ts_column=label_ts_column,
    )
    state = common.state_of(ctx)
    settings = state.settings
    key = settings.pseudonym_key.get_secret_value().encode() if settings.pseudonym_key else b""
    plan = ReplayPlan(
        columns=columns,
        time=mode,
        rate=rate if explicit("rate") else 0.0,
        label_delay=label_delay,
        topic_transactions=settings.topic_transactions,
        topic_labels=settings.topic_labels,
        topic_dlq=settings.topic_dlq,
        delivery_timeout_s=delivery_timeout,
        pseudonym_key=key,
    )
    bus = state.backends.bus
    bus.ensure_topics(stream_topics(settings), settings.topic_partitions)
    producer = open_producer(settings, delivery_timeout)
    stop = common.GracefulStop()
    live = Live(console=common.err_console, transient=True, auto_refresh=False)
    show = common.err_console.is_terminal and not as_json
    with stop, live if show else nullcontext():

        def progress(summary: ReplaySummary, message: str) -> None:
            if show:
                live.update(_panel(summary, message, bus.address), refresh=True)

        summary = replay(
            source, producer, plan, should_stop=stop.requested, on_progress=progress,
            scoring=None if score is None else open_scoring(score, score_concurrency),
        )  # fmt: skip
        producer.close()

    result = summary.as_dict() | {
        "bus": settings.bus,
        "address": bus.address,
        "topics": {
            "transactions": plan.topic_transactions,
            "labels": plan.topic_labels,
            "dlq": plan.topic_dlq,
        },
        "mapping": columns.describe(),
        "rate": plan.rate,
        "pseudonym_keyed": bool(key),
        "score_url": score,
    }
    if as_json:
        common.print_json(result)
    else:
        common.console.print(common.key_values(_rows(result)))
    if summary.users_pseudonymised and not key:
        common.err_console.print(
            "[yellow]warning:[/yellow] user ids were pseudonymised with an unkeyed hash; "
            "anyone can recompute it from a guess of the original id. Set "
            "FRAUDCTL_PSEUDONYM_KEY in .env (`fraudctl config init` generates one)."
        )
    if summary.rows and summary.dead_lettered * 2 > summary.rows:
        common.err_console.print(
            f"[yellow]warning:[/yellow] {summary.dead_lettered:,} of {summary.rows:,} rows went "
            f"to {plan.topic_dlq} (by field: {summary.dlq_reasons}); is the mapping right? "
            "Each dead letter's `reason` header names what was wrong with its row"
        )
    exit_for(summary, bus.address, score)


def _rows(result: dict[str, object]) -> dict[str, object]:
    keys = ("file", "rows", "published", "acknowledged", "labels_published",
            "labels_acknowledged", "labels_pending", "unlabelled", "fraud_events",
            "dead_lettered", "dlq_reasons", "users_pseudonymised", "time", "file_first_ts",
            "file_last_ts", "first_event_ts", "last_event_ts", "elapsed_s", "rows_per_s",
            "stopped_by", "bus", "address", "mapping")  # fmt: skip
    return formatted(result, keys)


def _panel(summary: ReplaySummary, message: str, address: str) -> Panel:
    total, done, rate = summary.rows_total, summary.rows, summary.rows_per_s
    share = f"{done / total:.0%}" if total else "-"
    eta = f"{(total - done) / rate:,.0f} s" if rate > 0 and total >= done else "-"
    text = (
        f"{message} {summary.file} → {address}\n"
        f"rows {done:,} / {total:,} ({share})  rate {rate:,.0f} rows/s  ETA {eta}\n"
        f"published {summary.published:,}  acked {summary.acknowledged:,}  "
        f"labels {summary.labels_published:,}  DLQ {summary.dead_lettered:,}"
    )
    return Panel(text, title="fraudctl produce --from", expand=False)
