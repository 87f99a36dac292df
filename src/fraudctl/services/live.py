"""What `fraudctl run`'s live view shows of the running platform, from what its children
already expose: the stream and feature freshness from two scrapes of the materializer's
Prometheus endpoint, scoring per variant from the server's live status. Pure functions
over plain values; :class:`Observer` reads the ports at most once per interval."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fraudctl.errors import BackendUnavailable
from fraudctl.ports import MetricsScraper, Sample, ServingControl

EVENTS = "fraudctl_materialize_events_total"
WRITE_DELAY = "fraudctl_feature_write_delay_seconds_bucket"
SERVING_WINDOW_S = 60.0


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a histogram given as cumulative ``(le, count)`` pairs, as
    PromQL's ``histogram_quantile`` computes it (linear within the bucket; the highest
    finite bound when it falls in the ``+Inf`` bucket); None with no observation."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            inside = count - lower_count
            share = (rank - lower_count) / inside if inside > 0 else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def _valid_events(samples: list[Sample]) -> float:
    return sum(s.value for s in samples if s.name == EVENTS and s.labels.get("outcome") == "valid")


def _delays(samples: list[Sample]) -> dict[float, float]:
    return {float(s.labels["le"]): s.value for s in samples if s.name == WRITE_DELAY}


def stream_figures(before: list[Sample], after: list[Sample], seconds: float) -> dict[str, Any]:
    """Between two scrapes ``seconds`` apart: events materialized per second and the p95
    of their write delay (event time → online write: the features' freshness)."""
    if seconds <= 0:
        return {"events_per_s": None, "freshness_p95_s": None}
    events = max(0.0, _valid_events(after) - _valid_events(before))
    earlier = _delays(before)
    delta = [(le, count - earlier.get(le, 0.0)) for le, count in _delays(after).items()]
    return {
        "events_per_s": events / seconds,
        "freshness_p95_s": bucket_quantile(0.95, delta) if events else None,
    }


def serving_figures(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per variant over the status window: requests per second, p95 and error rate."""
    window = float(status.get("window_s") or SERVING_WINDOW_S)
    return {
        name: {
            "per_s": (stats.get("requests") or 0) / window,
            "p95_ms": stats.get("p95_ms"),
            "error_rate": stats.get("error_rate"),
        }
        for name, stats in sorted((status.get("variants") or {}).items())
    }


@dataclass
class Observer:
    """Reads the materializer's metrics and the server's status every ``every_s``."""

    scraper: MetricsScraper
    metrics_url: str | None
    server: ServingControl
    every_s: float
    clock: Callable[[], float]
    figures: dict[str, Any] = field(default_factory=dict)
    _last: tuple[float, list[Sample]] | None = None
    _at: float | None = None

    def observe(self, serving: bool) -> None:
        now = self.clock()
        if self._at is not None and now - self._at < self.every_s:
            return
        self._at = now
        if self.metrics_url is not None:
            try:
                samples = self.scraper.scrape(self.metrics_url)
            except BackendUnavailable:
                self._last = None
            else:
                if self._last is not None:
                    at, before = self._last
                    self.figures["stream"] = stream_figures(before, samples, now - at)
                self._last = (now, samples)
        if serving:
            try:
                self.figures["serving"] = serving_figures(self.server.status(SERVING_WINDOW_S))
            except BackendUnavailable:
                self.figures.pop("serving", None)
