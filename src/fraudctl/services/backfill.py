"""`materialize --backfill`: rebuild the online store from the offline snapshots."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from fraudctl.ports import ONLINE_NEWEST_MARK, DedupeStore, FeatureStore, OfflineStore


@dataclass(frozen=True)
class BackfillSummary:
    start: str
    end: str
    snapshots_read: int
    users_restored: int
    newest_event_ts: float | None
    elapsed_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def backfill(
    offline: OfflineStore, online: FeatureStore, dedupe: DedupeStore, start: datetime, end: datetime
) -> BackfillSummary:
    """Rebuild the online store from the offline ``user_state`` snapshots (the recovery
    path after losing Redis): Feast materializes the newest snapshot of every user whose
    state time falls in [start, end]."""
    import pyarrow.compute as pc

    started = time.monotonic()
    table = offline.read("user_state", ["user_id", "state_ts", "newest_ts"])
    snapshots = users = 0
    newest: float | None = None
    if table.num_rows:
        in_range = pc.and_(
            pc.greater_equal(table["state_ts"], start),
            pc.less_equal(table["state_ts"], end),
        )
        chosen = table.filter(in_range)
        snapshots = chosen.num_rows
        users = len(pc.unique(chosen["user_id"]))
        if snapshots:
            newest = float(pc.max(chosen["newest_ts"]).as_py())
    online.backfill(offline.uri, start, end)
    if newest is not None:
        dedupe.raise_mark(ONLINE_NEWEST_MARK, newest)
    return BackfillSummary(
        start.isoformat(),
        end.isoformat(),
        snapshots,
        users,
        newest,
        time.monotonic() - started,
    )
