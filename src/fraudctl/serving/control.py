"""The serving control plane: the canary weight (with its history) and per-variant live
statistics, shared by every replica.

Under Ray Serve one instance lives in a named actor that all replicas talk to; the plain
single-process server (the benchmark's baseline) holds one in-process.  Replicas push
per-second aggregates; ``status`` answers over a trailing window.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

HISTORY_S = 3600.0
LATENCY_SAMPLES = 50_000  # per variant, newest kept


@dataclass
class LiveStats:
    """One variant's aggregates over a stretch of time: what a replica collects between
    pushes, what the control plane keeps per push, and what a window sums up to."""

    requests: int = 0
    errors: int = 0
    score_sum: float = 0.0
    shadow_total: int = 0
    shadow_agree: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, other: LiveStats) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.score_sum += other.score_sum
        self.shadow_total += other.shadow_total
        self.shadow_agree += other.shadow_agree
        self.latencies_ms += other.latencies_ms


class Control:
    def __init__(self, weight: float = 0.0) -> None:
        self.weight = weight
        self.changes: list[dict[str, Any]] = [
            {"at": time.time(), "weight": weight, "reason": "serve started"}
        ]
        self._buckets: deque[tuple[float, str, LiveStats]] = deque()
        self.stopping = False

    # -- stopping -------------------------------------------------------------------

    def stop(self) -> None:
        """The server is stopping: replicas flush their logs and answer 503 from now on."""
        self.stopping = True

    def state(self) -> tuple[float, bool]:
        """What a replica reads each second, in one call: the weight, and whether the
        server is stopping."""
        return self.weight, self.stopping

    # -- weight ---------------------------------------------------------------------

    def get_weight(self) -> float:
        return self.weight

    def set_weight(self, weight: float, reason: str) -> dict[str, Any]:
        change = {"at": time.time(), "weight": weight, "previous": self.weight, "reason": reason}
        self.weight = weight
        self.changes.append(change)
        return change

    def history(self) -> list[dict[str, Any]]:
        return list(self.changes)

    # -- statistics -----------------------------------------------------------------

    def record(self, at: float, variant: str, stats: LiveStats) -> None:
        self._buckets.append((at, variant, stats))
        horizon = time.time() - HISTORY_S
        while self._buckets and self._buckets[0][0] < horizon:
            self._buckets.popleft()

    def status(self, window_s: float) -> dict[str, Any]:
        since = time.time() - window_s
        merged: dict[str, LiveStats] = {}
        for at, variant, stats in self._buckets:
            if at >= since:
                merged.setdefault(variant, LiveStats()).add(stats)
        variants = {name: _summary(bucket) for name, bucket in merged.items()}
        return {
            "window_s": window_s,
            "canary_weight": self.weight,
            "variants": variants,
            "changes": self.changes[-10:],
        }


def _summary(bucket: LiveStats) -> dict[str, Any]:
    import numpy as np

    latencies = np.asarray(bucket.latencies_ms[-LATENCY_SAMPLES:]) if bucket.latencies_ms else None
    return {
        "requests": bucket.requests,
        "errors": bucket.errors,
        "error_rate": bucket.errors / bucket.requests if bucket.requests else 0.0,
        "p50_ms": float(np.percentile(latencies, 50)) if latencies is not None else None,
        "p95_ms": float(np.percentile(latencies, 95)) if latencies is not None else None,
        "mean_score": bucket.score_sum / bucket.requests if bucket.requests else None,
        "shadow_agreement": bucket.shadow_agree / bucket.shadow_total
        if bucket.shadow_total
        else None,
    }
