"""Prometheus metrics of fraudctl's long-running commands."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from fraudctl.ports import Gauge as PortGauge
from fraudctl.ports import Sample as PortSample


class RunCounts(Protocol):
    """What the metrics follow of a materialize run (its summary)."""

    @property
    def valid(self) -> int: ...
    @property
    def dead_lettered(self) -> int: ...
    @property
    def duplicates_skipped(self) -> int: ...
    @property
    def labels_read(self) -> int: ...


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

    def update(self, summary: RunCounts) -> None:
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


# Request latency buckets: resolve a p95 of a few milliseconds and still the 200 ms SLO.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5,
)  # fmt: skip
SCORE_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
DELTA_BUCKETS = (-0.5, -0.2, -0.1, -0.05, -0.01, 0.0, 0.01, 0.05, 0.1, 0.2, 0.5)


class ServeMetrics:
    """What a scoring replica exports on /metrics."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "fraudctl_requests",
            "Scored events, by variant, HTTP status and model version.",
            ["variant", "status", "model_version"],
            registry=r,
        )
        self.latency = Histogram(
            "fraudctl_request_latency_seconds",
            "End-to-end scoring time of a request (features + model), by variant.",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fetch = Histogram(
            "fraudctl_feature_fetch_seconds",
            "Online-store read of a request, by variant.",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model = Histogram(
            "fraudctl_model_seconds",
            "Model evaluation of a request, by variant.",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.scores = Histogram(
            "fraudctl_score", "Scores served, by variant.", ["variant"], buckets=SCORE_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.shadow_agreement = Counter(
            "fraudctl_shadow_decisions",
            "Shadow decisions against the served decision (agree=true|false).",
            ["agree"],
            registry=r,
        )
        self.shadow_delta = Histogram(
            "fraudctl_shadow_score_delta",
            "Shadow score minus served score.",
            buckets=DELTA_BUCKETS,
            registry=r,
        )
        self.model_errors = Counter(
            "fraudctl_model_errors",
            "Rows a variant's model failed to score (a canary's are then served by the "
            "baseline; a shadow's are only counted).",
            ["variant"],
            registry=r,
        )
        self.responses = Counter(
            "fraudctl_http_responses",
            "Responses of the scoring routes, by route and HTTP status code.",
            ["handler", "code"],
            registry=r,
        )
        self.ready = Gauge(
            "fraudctl_ready", "1 when /ready would answer 200, read at scrape time.", registry=r
        )
        self.canary_weight = Gauge(
            "fraudctl_canary_weight_percent", "Share of users sent to the canary.", registry=r
        )
        self.freshness = Gauge(
            "fraudctl_feature_freshness_seconds",
            "Now minus the event time of the newest event in the online store.",
            registry=r,
        )
        self.model_version = Gauge(
            "fraudctl_model_version_info",
            "1 for the version each variant serves.",
            ["variant", "alias", "model_version"],
            registry=r,
        )
        self.unavailable = Counter(
            "fraudctl_online_store_unavailable",
            "Requests answered 503 because the online store could not be read.",
            registry=r,
        )
        self.registry_errors = Counter(
            "fraudctl_registry_errors", "Alias checks that could not reach the registry.",
            registry=r,
        )  # fmt: skip
        self.logged = Counter(
            "fraudctl_predictions_logged", "Rows appended to the prediction log.", registry=r
        )
        self.log_dropped = Counter(
            "fraudctl_predictions_dropped",
            "Rows never logged: the background queue was full, or the store refused "
            "writes for longer than the rows a replica holds.",
            registry=r,
        )
        self.log_errors = Counter(
            "fraudctl_prediction_log_write_errors",
            "Prediction-log flushes the offline store refused (the rows are kept).",
            registry=r,
        )
        self.log_held = Gauge(
            "fraudctl_prediction_log_held_rows",
            "Rows scored and not yet in the prediction log.",
            registry=r,
        )
        self._version_labels: list[tuple[str, str, str]] = []
        # Every variant's series exists from the start, so ratios and alerts over them
        # are defined (0) before the first error rather than absent.
        for variant in ("baseline", "canary", "shadow"):
            self.model_errors.labels(variant=variant)
            self.model.labels(variant=variant)

    def observe(
        self, variant: str, version: str, score: float, total_s: float, fetch_s: float,
        model_s: float,
    ) -> None:  # fmt: skip
        self.requests.labels(variant=variant, status="200", model_version=version).inc()
        self.latency.labels(variant=variant).observe(total_s)
        self.fetch.labels(variant=variant).observe(fetch_s)
        self.model.labels(variant=variant).observe(model_s)
        self.scores.labels(variant=variant).observe(score)

    def shadow_model_time(self, seconds: float, rows: int) -> None:
        """The shadow scores a whole response batch at once: each row saw that time."""
        child = self.model.labels(variant="shadow")
        for _ in range(rows):
            child.observe(seconds)

    def shadow(self, agree: bool, delta: float) -> None:
        self.shadow_agreement.labels(agree=str(agree).lower()).inc()
        self.shadow_delta.observe(delta)

    def versions(self, variants: Any) -> None:
        for labels in self._version_labels:
            self.model_version.remove(*labels)
        self._version_labels = []
        for variant in ("baseline", "canary", "shadow"):
            model = getattr(variants, variant)
            if model is not None:
                labels = (variant, model.alias, model.version)
                self.model_version.labels(*labels).set(1)
                self._version_labels.append(labels)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Pushgateway:
    """:class:`fraudctl.ports.MetricsPusher` on a Prometheus Pushgateway (``url`` None:
    pushing is off and every push succeeds without a request)."""

    def __init__(self, url: str | None, timeout_s: float = 5) -> None:
        self.where, self.timeout_s = url, timeout_s

    def push(
        self, job: str, grouping: Mapping[str, str], gauges: Sequence[PortGauge]
    ) -> str | None:
        if self.where is None:
            return None
        from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

        registry = CollectorRegistry()
        made: dict[str, Any] = {}
        for gauge in gauges:
            metric = made.get(gauge.name)
            if metric is None:
                metric = made[gauge.name] = Gauge(
                    gauge.name, gauge.help, list(gauge.labels), registry=registry
                )
            (metric.labels(**gauge.labels) if gauge.labels else metric).set(gauge.value)
        try:
            push_to_gateway(
                self.where, job=job, registry=registry, grouping_key=dict(grouping),
                timeout=self.timeout_s,
            )  # fmt: skip
        except OSError as exc:
            return f"Pushgateway {self.where}: {exc}"
        return None


class PrometheusScraper:
    """:class:`fraudctl.ports.MetricsScraper`: an endpoint's text, parsed by
    prometheus_client's own parser."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        self.timeout_s = timeout_s

    def scrape(self, url: str) -> list[PortSample]:
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        from fraudctl.errors import BackendUnavailable

        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                text = response.read().decode("utf-8")
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(
                f"the metrics at {url} do not answer ({exc})",
                hint="is the process that serves them running?",
            ) from exc
        return [PortSample(sample.name, dict(sample.labels), float(sample.value))
                for family in text_string_to_metric_families(text)
                for sample in family.samples]  # fmt: skip


class GaugeBoard:
    """Gauges served on ``/metrics`` that each :meth:`show` replaces as a whole (the
    results of a ``--follow`` loop: the same names and labels as the pushed ones).  A
    custom collector: a scrape sees the newest set, never a mix of two runs."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        self._gauges: tuple[PortGauge, ...] = ()
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def show(self, gauges: Sequence[PortGauge]) -> None:
        self._gauges = tuple(gauges)

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        families: dict[str, Any] = {}
        for gauge in self._gauges:
            family = families.get(gauge.name)
            if family is None:
                family = families[gauge.name] = GaugeMetricFamily(
                    gauge.name, gauge.help, labels=sorted(gauge.labels)
                )
            family.add_metric([gauge.labels[k] for k in sorted(gauge.labels)], gauge.value)
        return list(families.values())

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=self.registry)
