"""Batch materialization fanned out over worker processes: each owns every n-th
partition of both topics (a user's events and labels share a partition: they are keyed
by user, so each user's window has one writer); their summaries are merged into one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fraudctl.config import Settings
from fraudctl.ports import Backends
from fraudctl.services.materialize import POLL_BATCH, MaterializeSummary, open_materializer
from fraudctl.workers import add_counts, run_workers

Wire = Callable[[Settings], Backends]


def materialize_in_workers(
    wire: Wire,
    settings: Settings,
    workers: int,
    max_events: int | None = None,
    *,
    batch_size: int = POLL_BATCH,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[MaterializeSummary], None] = lambda _s: None,
) -> MaterializeSummary:
    """Batch materialization split over ``workers`` processes, each owning every
    ``workers``-th partition of both topics.  A user's events and labels share a
    partition (they are keyed by user), so each user's window has one writer.  Each
    worker builds its own backends with ``wire`` (a module-level function: it is sent to
    the worker process by reference)."""
    per_worker = None if max_events is None else max(1, max_events // workers)
    finals = run_workers(
        _materialize_worker,
        [(workers, wire, settings, per_worker, batch_size) for _ in range(workers)],
        should_stop=should_stop,
        on_report=lambda latest: on_progress(
            merge_summaries([MaterializeSummary(**d) for d in latest.values()])
        ),
    )
    return merge_summaries([MaterializeSummary(**d) for d in finals.values()])


def _materialize_worker(
    index: int,
    count: int,
    wire: Wire,
    settings: Settings,
    max_events: int | None,
    batch_size: int,
    *,
    stop: Any,
    report: Callable[[str, Any], None],
) -> None:
    materializer = open_materializer(wire(settings), (index, count), batch_size)
    try:
        summary = materializer.run_to_end(
            max_events, lambda s: report("progress", s.as_dict()), stop.is_set
        )
    finally:
        materializer.close()
    report("final", summary.as_dict())


_SUMMED = (
    "events_read",
    "valid",
    "dead_lettered",
    "duplicates_skipped",
    "labels_read",
    "labels_joined",
    "rows_written_offline",
    "users_updated_online",
    "batches",
    "read_past_reported_end",
)


def merge_summaries(parts: list[MaterializeSummary]) -> MaterializeSummary:
    merged = MaterializeSummary()
    for part in parts:
        add_counts(merged, part, _SUMMED, ("dlq_reasons",))
        merged.bus_damage += part.bus_damage
        if part.newest_event_ts is not None:
            merged.newest_event_ts = max(merged.newest_event_ts or 0.0, part.newest_event_ts)
        if part.online_lag_s is not None:
            merged.online_lag_s = max(merged.online_lag_s or 0.0, part.online_lag_s)
        merged.elapsed_s = max(merged.elapsed_s, part.elapsed_s)
    if merged.elapsed_s > 0:
        merged.events_per_s = merged.events_read / merged.elapsed_s
    return merged
