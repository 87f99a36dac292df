"""A replica's prediction log: every scored request as a row of the offline
``predictions`` table (Parquet by hour, one file per replica per flush)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fraudctl.errors import BackendUnavailable

log = logging.getLogger("fraudctl.serve")

LOG_FLUSH_S = 5.0  # a Parquet file at most this often per replica
LOG_FLUSH_ROWS = 20_000  # ... or as soon as this many rows are waiting
# Rows a replica holds while the offline store refuses writes (disk full, S3 down): about
# 40 minutes at 100 requests/s, a few hundred MB; beyond it the oldest are dropped, counted.
LOG_MAX_HELD_ROWS = 250_000


class PredictionLog:
    """Rows appended by the request path, written by :meth:`flush` (the background
    thread every ``LOG_FLUSH_S``, a full buffer, the last flush on close). A write the
    store refuses keeps its rows for the next flush, up to ``LOG_MAX_HELD_ROWS``."""

    def __init__(self, offline: Any, metrics: Any, replica: str) -> None:
        self.offline = offline
        self.metrics = metrics
        self.replica = replica
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, rows: list[dict[str, Any]]) -> bool:
        """Queue ``rows``; True when enough are waiting that a flush should follow."""
        with self._lock:
            self._rows.extend(rows)
            return len(self._rows) >= LOG_FLUSH_ROWS

    def flush(self) -> None:
        """Append what was scored to the offline ``predictions`` table."""
        from fraudctl.adapters.offline import hour_partition
        from fraudctl.adapters.tables import predictions_table

        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return
        table = predictions_table(rows)
        name = f"{self.replica}-{time.time_ns()}"
        try:
            self.offline.write_snapshot("predictions", hour_partition(time.time()), name, table)
            self.metrics.logged.inc(len(rows))
        except BackendUnavailable as exc:
            self.metrics.log_errors.inc()
            with self._lock:
                self._rows[:0] = rows
                held = len(self._rows)
                over = held - LOG_MAX_HELD_ROWS
                if over > 0:
                    del self._rows[:over]
            if over > 0:
                self.metrics.log_dropped.inc(over)
                log.error("prediction log: %s; dropped the oldest %d rows", exc, over)
            log.warning("prediction log: %s; keeping %d rows for the next flush", exc, held)
        with self._lock:
            self.metrics.log_held.set(len(self._rows))
