"""Prometheus metrics of fraudctl's long-running commands."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fraudctl.services.materialize import MaterializeSummary

# Buckets that resolve a sub-second p95 and still show minutes of lag.
FRESHNESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 5, 10, 30, 60, 120, 300, 600)


class MaterializeMetrics:
    """Counters follow the run's summary; freshness is observed per event written online."""

    def __init__(self, registry: Any | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry or CollectorRegistry()
        self.events = Counter(
            "fraudctl_materialize_events",
            "Transactions processed, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.labels = Counter(
            "fraudctl_materialize_labels", "Labels processed.", registry=self.registry
        )
        self.lag = Gauge(
            "fraudctl_consumer_lag",
            "Records on the bus not yet read, per partition.",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.freshness = Gauge(
            "fraudctl_feature_freshness_seconds",
            "Wall time of the last online write minus the event time of the newest event "
            "in it: how far the online features trail a live stream.",
            registry=self.registry,
        )
        self.write_delay = Histogram(
            "fraudctl_feature_write_delay_seconds",
            "Per event: online write time minus event time.",
            buckets=FRESHNESS_BUCKETS,
            registry=self.registry,
        )
        self._seen: dict[str, int] = {}

    def update(self, summary: MaterializeSummary) -> None:
        totals = {
            "valid": summary.valid - summary.duplicates_skipped,
            "dead_lettered": summary.dead_lettered,
            "duplicate": summary.duplicates_skipped,
            "labels": summary.labels_read,
        }
        for name, total in totals.items():
            delta = total - self._seen.get(name, 0)
            if delta > 0:
                if name == "labels":
                    self.labels.inc(delta)
                else:
                    self.events.labels(outcome=name).inc(delta)
            self._seen[name] = total

    def observe_writes(self, event_times: Iterable[float], written_at: float) -> None:
        newest = None
        for ts in event_times:
            self.write_delay.observe(max(written_at - ts, 0.0))
            newest = ts if newest is None or ts > newest else newest
        if newest is not None:
            self.freshness.set(max(written_at - newest, 0.0))

    def set_lag(
        self, ends: Mapping[tuple[str, int], int], read: Mapping[tuple[str, int], int]
    ) -> None:
        for (topic, partition), end in ends.items():
            behind = max(end - read.get((topic, partition), 0), 0)
            self.lag.labels(topic=topic, partition=str(partition)).set(behind)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=self.registry)
