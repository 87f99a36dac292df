"""`fraudctl materialize` and `fraudctl features get`."""

from __future__ import annotations

from typing import Annotated

import typer

from fraudctl.cli.common import JsonOption, console, err_console, key_values, print_json, state_of


def materialize(
    ctx: typer.Context,
    max_events: Annotated[
        int | None, typer.Option(min=1, help="Stop after about N transactions (whole polls).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Consume transactions and labels up to the current end, validate, dead-letter,
    deduplicate, compute features, write the offline and online stores, then commit.

    Exit 0 when done, 3 when a backend is unavailable (nothing past the last durable
    write is committed: a rerun completes the work).
    """
    from fraudctl.adapters.bus import open_bus, stream_topics
    from fraudctl.adapters.dedupe import open_dedupe
    from fraudctl.adapters.offline import open_offline
    from fraudctl.adapters.online import OnlineState
    from fraudctl.services.materialize import Materializer, MaterializeTopics

    settings = state_of(ctx).settings
    bus = open_bus(settings)
    bus.ensure_topics(stream_topics(settings), settings.topic_partitions)
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
