"""`fraudctl materialize` and `fraudctl features get`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fraudctl.cli.common import (
    GracefulStop,
    JsonOption,
    console,
    err_console,
    key_values,
    print_json,
    said_no,
    state_of,
)
from fraudctl.timespec import parse_time_bound

LAG_REFRESH_S = 10.0

if TYPE_CHECKING:
    from fraudctl.bootstrap import Wiring
    from fraudctl.services.materialize import Materializer


def materialize(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep consuming (streaming) until Ctrl-C.")
    ] = False,
    max_events: Annotated[
        int | None, typer.Option(min=1, help="Stop after about N transactions (whole polls).")
    ] = None,
    flush_interval: Annotated[
        float,
        typer.Option(min=0.1, help="--follow: seconds between durable offline flushes."),
    ] = 5.0,
    metrics_port: Annotated[
        int, typer.Option(min=0, max=65535, help="--follow: Prometheus port (0 = none).")
    ] = 9464,
    check_freshness: Annotated[
        bool,
        typer.Option(
            "--check-freshness",
            help="Only check: exit 4 when online features trail the stream by more than "
            "--freshness-slo seconds (from the events' own timestamps).",
        ),
    ] = False,
    freshness_slo: Annotated[float, typer.Option(min=0, help="Seconds.")] = 120.0,
    backfill: Annotated[
        tuple[str, str] | None,
        typer.Option(
            metavar="START END",
            help="Only rebuild the online store from the offline user_state snapshots with "
            "a state time in [START, END] (ISO-8601 UTC or YYYY-MM-DD), through Feast's "
            "materialization: the recovery path after losing Redis.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Batch: processes, each owning a share of the partitions (default: the "
            "cores, up to 4, on Kafka; 1 on the embedded bus).",
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            min=100,
            max=1_000_000,
            help="Records per batch: one poll, one durable flush and one commit.",
        ),
    ] = 50_000,
    as_json: JsonOption = False,
) -> None:
    """Consume transactions and labels, validate, dead-letter, deduplicate, compute
    features, write the offline and online stores, then commit.

    Batch (default): up to the end seen at the start, then exit. --follow: online writes
    per poll, offline flush and commit every --flush-interval, Prometheus metrics on
    127.0.0.1:--metrics-port, until Ctrl-C. Exit 0 when done; 2 when another run of the
    consumer group holds this home (it is named); 3 when a backend or the disk is
    unavailable (nothing past the last durable write is committed: a rerun completes the
    work); 4 when damaged regions of the embedded bus were read around (everything
    readable is materialized and committed; `fraudctl bus check` lists them).
    """

    from fraudctl.adapters.bus import stream_topics

    backends = state_of(ctx).backends
    settings = backends.settings
    if backfill is not None:
        _backfill(backends, backfill, as_json)
        return
    backends.bus.ensure_topics(stream_topics(settings), settings.topic_partitions)
    if check_freshness:
        _check_freshness(backends, freshness_slo, as_json)
        return
    with materialize_lease(settings):
        _materialize(
            backends, follow, max_events, flush_interval, metrics_port, workers, batch_size, as_json
        )


def materialize_lease(settings: Any) -> contextlib.AbstractContextManager[None]:
    """One consuming run per consumer group and home: a second is refused (exit 2)
    before it reads anything, naming the first."""
    from fraudctl.adapters.locks import run_lease

    lease = settings.home / "locks" / f"materialize-{settings.consumer_group}.lock"
    return run_lease(lease, f"materialize of consumer group {settings.consumer_group!r}")


def _materialize(
    backends: Wiring,
    follow: bool,
    max_events: int | None,
    flush_interval: float,
    metrics_port: int,
    workers: int | None,
    batch_size: int,
    as_json: bool,
) -> None:
    import os

    from fraudctl.errors import ExitCode, UsageError
    from fraudctl.services.materialize import open_materializer

    settings = backends.settings

    if follow and workers not in (None, 1):
        raise UsageError(
            "--follow runs one process (it serves one metrics endpoint)",
            hint="drop --workers, or run one --follow per share of the partitions",
        )
    if workers is None:  # auto: the embedded bus and SQLite stores gain nothing from more
        workers = 1 if settings.bus == "filelog" or follow else min(os.cpu_count() or 1, 4)
    if settings.offline_store == "s3":
        from fraudctl.adapters.probes import ensure_bucket

        ensure_bucket(settings)
    with err_console.status("opening the feature store…"):
        backends.features.where  # noqa: B018 -- opening it applies changed definitions, once
    with GracefulStop() as stop:
        if follow:
            materializer = open_materializer(backends, batch_size=batch_size)
            try:
                summary = _follow(materializer, flush_interval, metrics_port, stop.requested)
            finally:
                materializer.close()
        else:
            summary = _batch(backends, workers, max_events, batch_size, stop.requested)
    if summary.bus_damage:
        _refuse_damage(summary.as_dict(), summary.unreadable_records, backends, as_json)
    _report(summary.as_dict(), backends, as_json)
    if stop.requested() and not follow:
        # What was processed is committed; the rest waits for the next run.
        raise typer.Exit(ExitCode.INTERRUPTED)


def _refuse_damage(
    result: dict[str, Any], unreadable: int | None, backends: Wiring, as_json: bool
) -> None:
    """Everything readable is materialized and committed; the damage is named, exit 4."""
    from fraudctl.errors import Refused

    if not as_json:
        _report(result, backends, as_json)
        for region in result["bus_damage"]:
            err_console.print(f"damaged: {region['path']} at byte {region['byte']}", soft_wrap=True)
    regions = result["bus_damage"]
    held = "an unknown number of" if unreadable is None else f"{unreadable:,}"
    first = regions[0]
    raise Refused(
        f"the embedded bus has {len(regions)} damaged region(s) holding {held} unreadable "
        f"records (first: {first['path']} at byte {first['byte']}, {first['kind']}); every "
        "readable record was materialized and committed",
        hint="`fraudctl bus check` lists every region; see docs/operations.md "
        "(embedded-bus damage) for what to do",
        details=_with_stores(result, backends),
    )


def _with_stores(result: dict[str, Any], backends: Wiring) -> dict[str, Any]:
    return result | {
        "offline": backends.offline.uri,
        "online": f"{backends.settings.online_store} ({backends.features.where})",
    }


def _report(result: dict[str, Any], backends: Wiring, as_json: bool) -> None:
    """A run's summary with where it wrote, as JSON or a table."""
    result = _with_stores(result, backends)
    if as_json:
        print_json(result)
    else:
        shown = {k.replace("_", " "): v for k, v in result.items() if k != "bus_damage"}
        console.print(key_values(shown))


def _batch(
    backends: Wiring,
    workers: int,
    max_events: int | None,
    batch_size: int,
    should_stop: Callable[[], bool],
) -> Any:
    from fraudctl.services.materialize import open_materializer
    from fraudctl.services.materialize_workers import materialize_in_workers

    with err_console.status("materializing…") as status:

        def progress(s: Any) -> None:
            status.update(f"materializing… {s.events_read:,} events, {s.batches} batches")

        if workers > 1:
            from fraudctl.bootstrap import wire

            return materialize_in_workers(
                wire,
                backends.settings,
                workers,
                max_events,
                batch_size=batch_size,
                should_stop=should_stop,
                on_progress=progress,
            )
        materializer = open_materializer(backends, batch_size=batch_size)
        try:
            return materializer.run_to_end(max_events, progress, should_stop)
        finally:
            materializer.close()


def _backfill(backends: Wiring, bounds: tuple[str, str], as_json: bool) -> None:
    from fraudctl.errors import UsageError
    from fraudctl.services.backfill import backfill

    start = parse_time_bound("--backfill START", bounds[0])
    end = parse_time_bound("--backfill END", bounds[1], end_of_day=True)
    if end < start:
        raise UsageError(
            f"--backfill: END {bounds[1]} is before START {bounds[0]}",
            hint="give the earlier time first",
        )
    with err_console.status("rebuilding the online store from offline snapshots…"):
        summary = backfill(backends.offline, backends.features, backends.dedupe, start, end)
    _report(summary.as_dict(), backends, as_json)


def _check_freshness(backends: Wiring, slo_s: float, as_json: bool) -> None:
    from fraudctl.services.freshness import freshness

    settings = backends.settings
    consumer = backends.bus.consumer(settings.consumer_group, [settings.topic_transactions])
    try:
        result = freshness(consumer, backends.dedupe, slo_s)
    finally:
        consumer.close()
    if as_json:
        print_json(result.as_dict())
    else:
        lag = "never written" if result.lag_s is None else f"{result.lag_s:,.1f} s"
        console.print(f"online features trail the stream by {lag} (SLO {slo_s:,.0f} s)")
    if not result.ok:
        said_no()


def _follow(
    materializer: Materializer,
    flush_interval: float,
    metrics_port: int,
    should_stop: Callable[[], bool],
) -> Any:
    from fraudctl.adapters.metrics import MaterializeMetrics

    metrics = MaterializeMetrics()
    if metrics_port:
        metrics.serve(metrics_port)
        err_console.print(f"metrics on http://127.0.0.1:{metrics_port}/metrics")
    materializer.on_online_write = lambda accepted, now: metrics.observe_writes(
        (a.event.event_ts.timestamp() for a in accepted), now
    )
    import threading

    done = threading.Event()

    def refresh_lag() -> None:
        # Off the reading thread: asking the broker for every partition's end takes a
        # round trip each, which would hold up the events waiting behind it.
        while True:
            with contextlib.suppress(Exception):  # a gauge, not the job: try again later
                ends = materializer.consumer.end_offsets(exact=False)
                metrics.set_lag(ends, dict(materializer.read_positions))
            if done.wait(LAG_REFRESH_S):
                return

    threading.Thread(target=refresh_lag, name="consumer-lag", daemon=True).start()

    def progress(summary: Any) -> None:
        metrics.update(summary)
        if err_console.is_terminal:
            err_console.print(
                f"{summary.events_read:,} events, {summary.dead_lettered:,} dead-lettered, "
                f"{summary.batches} flushes",
                end="\r",
            )

    try:
        summary = materializer.run_follow(should_stop, flush_interval, progress)
    finally:
        done.set()
    metrics.update(summary)
    return summary


def features_get(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="A user id, e.g. user-42.")],
    at: Annotated[
        str | None, typer.Option(help="Event time of the request (ISO-8601 UTC); default now.")
    ] = None,
    amount: Annotated[float, typer.Option(help="Amount of the request.")] = 0.0,
    country: Annotated[str, typer.Option(help="Country of the request.")] = "US",
    device: Annotated[str, typer.Option(help="Device of the request.")] = "web",
    as_json: JsonOption = False,
) -> None:
    """The features a request for USER_ID at --at would be scored with (online store)."""
    import time

    from fraudctl.contract import parse_utc_timestamp
    from fraudctl.errors import UsageError
    from fraudctl.features import Txn

    try:
        ts = parse_utc_timestamp(at).timestamp() if at is not None else time.time()
    except ValueError as exc:
        raise UsageError(f"--at {at!r} {exc}") from exc
    window = state_of(ctx).backends.features.read([user_id])[user_id]
    features = window.features(Txn(ts, amount, country, device))
    result = {
        "user_id": user_id,
        "at": ts,
        "features": features,
        "window_events": len(window),
        "newest_event_ts": window.newest,
        "features_age_seconds": ts - window.newest if window.newest is not None else None,
    }
    if as_json:
        print_json(result)
    else:
        console.print(key_values(features, title=f"features of {user_id}"))
