"""`fraudctl materialize` and `fraudctl features get`."""

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

if TYPE_CHECKING:
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
    as_json: JsonOption = False,
) -> None:
    """Consume transactions and labels, validate, dead-letter, deduplicate, compute
    features, write the offline and online stores, then commit.

    Batch (default): up to the end seen at the start, then exit. --follow: online writes
    per poll, offline flush and commit every --flush-interval, Prometheus metrics on
    127.0.0.1:--metrics-port, until Ctrl-C. Exit 0 when done, 3 when a backend is
    unavailable (nothing past the last durable write is committed: a rerun completes
    the work).
    """
    from fraudctl.adapters.bus import open_bus, stream_topics
    from fraudctl.adapters.dedupe import open_dedupe
    from fraudctl.adapters.offline import open_offline
    from fraudctl.adapters.online import OnlineState
    from fraudctl.services.materialize import Materializer, MaterializeTopics

    settings = state_of(ctx).settings
    bus = open_bus(settings)
    bus.ensure_topics(stream_topics(settings), settings.topic_partitions)
    if check_freshness:
        _check_freshness(bus, settings, freshness_slo, as_json)
        return
    offline = open_offline(settings)
    with err_console.status("opening the feature store…"):
        online = OnlineState(settings, offline.uri)
    consumer = bus.consumer(
        settings.consumer_group, [settings.topic_transactions, settings.topic_labels]
    )
    dlq = bus.producer(delivery_timeout_s=30)
    topics = MaterializeTopics(
        settings.topic_transactions, settings.topic_labels, settings.topic_dlq
    )
    materializer = Materializer(consumer, dlq, offline, online, open_dedupe(settings), topics)
    try:
        if follow:
            summary = _follow(materializer, flush_interval, metrics_port)
        else:
            with err_console.status("materializing…") as status:
                summary = materializer.run_to_end(
                    max_events,
                    on_progress=lambda s: status.update(
                        f"materializing… {s.events_read:,} events, {s.batches} batches"
                    ),
                )
    finally:
        consumer.close()
        dlq.close()
    result = summary.as_dict() | {
        "offline": offline.uri,
        "online": f"{settings.online_store} ({online.where})",
    }
    if as_json:
        print_json(result)
    else:
        console.print(key_values({k.replace("_", " "): v for k, v in result.items()}))


def _check_freshness(bus: Any, settings: Any, slo_s: float, as_json: bool) -> None:
    from fraudctl.adapters.dedupe import open_dedupe
    from fraudctl.errors import ExitCode
    from fraudctl.services.materialize import freshness

    consumer = bus.consumer(settings.consumer_group, [settings.topic_transactions])
    try:
        result = freshness(consumer, open_dedupe(settings), slo_s)
    finally:
        consumer.close()
    if as_json:
        print_json(result.as_dict())
    else:
        lag = "never written" if result.lag_s is None else f"{result.lag_s:,.1f} s"
        console.print(f"online features trail the stream by {lag} (SLO {slo_s:,.0f} s)")
    if not result.ok:
        raise typer.Exit(ExitCode.REFUSED)


def _follow(materializer: Materializer, flush_interval: float, metrics_port: int) -> Any:
    import time

    from fraudctl.observability import MaterializeMetrics

    metrics = MaterializeMetrics()
    if metrics_port:
        metrics.serve(metrics_port)
        err_console.print(f"metrics on http://127.0.0.1:{metrics_port}/metrics")
    materializer.on_online_write = lambda accepted, now: metrics.observe_writes(
        (a.event.event_ts.timestamp() for a in accepted), now
    )
    last_lag = [0.0]

    def progress(summary: Any) -> None:
        metrics.update(summary)
        if time.monotonic() - last_lag[0] > 10:
            last_lag[0] = time.monotonic()
            metrics.set_lag(
                materializer.consumer.end_offsets(exact=False), materializer.read_positions
            )
        if err_console.is_terminal:
            err_console.print(
                f"{summary.events_read:,} events, {summary.dead_lettered:,} dead-lettered, "
                f"{summary.batches} flushes",
                end="\r",
            )

    with GracefulStop() as stop:
        summary = materializer.run_follow(stop.requested, flush_interval, progress)
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

    from fraudctl.adapters.offline import open_offline
    from fraudctl.adapters.online import OnlineState
    from fraudctl.contract import parse_utc_timestamp
    from fraudctl.errors import UsageError
    from fraudctl.features import Txn

    try:
        ts = parse_utc_timestamp(at).timestamp() if at is not None else time.time()
    except ValueError as exc:
        raise UsageError(f"--at {at!r} {exc}") from exc
    settings = state_of(ctx).settings
    online = OnlineState(settings, open_offline(settings).uri)
    window = online.read([user_id])[user_id]
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
