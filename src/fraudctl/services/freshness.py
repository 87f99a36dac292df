"""`materialize --check-freshness`: how far the online features trail the stream."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fraudctl.contract import validate_bytes
from fraudctl.ports import ONLINE_NEWEST_MARK, BusConsumer, DedupeStore

FRESHNESS_SLO_S = 120.0


@dataclass(frozen=True)
class Freshness:
    stream_newest_event_ts: float | None
    online_newest_event_ts: float | None
    lag_s: float | None
    slo_s: float

    @property
    def ok(self) -> bool:
        return self.lag_s is not None and self.lag_s <= self.slo_s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"status": "ok" if self.ok else "breach"}


def freshness(
    consumer: BusConsumer, dedupe: DedupeStore, slo_s: float = FRESHNESS_SLO_S
) -> Freshness:
    """How far the online features trail the stream, from the events' own timestamps:
    the newest event time on the transactions topic minus the newest written online."""
    newest_stream = None
    for value in consumer.last_values().values():
        verdict = validate_bytes(value)
        if verdict.record is not None:
            ts = verdict.record.event_ts.timestamp()
            newest_stream = ts if newest_stream is None else max(newest_stream, ts)
    newest_online = dedupe.get_mark(ONLINE_NEWEST_MARK)
    if newest_stream is None:
        lag = 0.0
    elif newest_online is None:
        lag = None
    else:
        lag = max(newest_stream - newest_online, 0.0)
    return Freshness(newest_stream, newest_online, lag, slo_s)
