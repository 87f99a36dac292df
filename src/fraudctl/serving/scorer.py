"""Scoring, independent of the web framework and of Ray: variants from registry aliases,
sticky canary assignment, request-time features from the online store with the one
feature implementation, shadow scoring and the prediction log off the response path,
hot reload when an alias moves, metrics.

One :class:`Scorer` lives in each serving replica (a Ray Serve replica, or the plain
single-process server).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fraudctl.contract import Transaction
from fraudctl.errors import BackendUnavailable
from fraudctl.features import FEATURE_NAMES, Txn, compute_features
from fraudctl.model import LoadedModel
from fraudctl.ports import Backends
from fraudctl.serving.control import LiveStats
from fraudctl.serving.prediction_log import LOG_FLUSH_S, PredictionLog
from fraudctl.serving.variants import ModelSource, Variants, assign_variant

log = logging.getLogger("fraudctl.serve")

RELOAD_S = 10.0  # how often aliases are checked
STATS_S = 1.0  # how often live statistics go to the control plane
CLOSE_TIMEOUT_S = 30.0  # the after-response queue drains (shadow scores) before the last flush


@dataclass
class ControlLink:
    """How a replica reads the canary weight and reports its statistics."""

    state: Callable[[], tuple[float, bool]]  # (weight, stopping), one round trip
    record: Callable[[float, str, LiveStats], None]
    set_weight: Callable[[float, str], dict[str, Any]]
    status: Callable[[float], dict[str, Any]]


class Draining(BackendUnavailable):
    """The server is stopping: this replica has flushed its log and takes no new work."""


def _model_inputs(
    transactions: Sequence[Transaction], windows: dict[str, Any]
) -> list[dict[str, Any]]:
    """Request-time model inputs: the event's fields plus its features from the user's
    online window, by the one feature implementation."""
    rows = []
    for t in transactions:
        txn = Txn(t.event_ts.timestamp(), t.transaction_amount, t.country, t.device, t.event_id)
        rows.append(
            {
                "transaction_amount": t.transaction_amount,
                "country": t.country,
                "device": t.device,
                **compute_features(windows[t.user_id], txn),
            }
        )
    return rows


class Scorer:
    def __init__(
        self,
        backends: Backends,
        control: ControlLink,
        shadow: bool,
        source: ModelSource | None = None,
        replica: str | None = None,
    ) -> None:
        from fraudctl.adapters.metrics import ServeMetrics

        self.backends = backends
        self.control = control
        self.shadow_on = shadow
        self.replica = replica or uuid.uuid4().hex[:8]
        self.source = source or ModelSource(backends.registry, shadow)
        self.metrics = ServeMetrics()
        self.offline = backends.offline
        self.online = backends.features
        self._versions = self.source.versions()  # unreachable registry: exit 3 at start
        self.variants = self.source.load(self._versions)
        self.metrics.versions(self.variants)
        self.weight, _stopping = control.state()
        self.newest_online: float | None = None
        self._live: dict[str, LiveStats] = {}
        self._live_lock = threading.Lock()
        self._after: queue.Queue[tuple[list[dict[str, Any]], list[dict[str, Any]]] | None] = (
            queue.Queue(10_000)
        )
        self.log = PredictionLog(self.offline, self.metrics, self.replica)
        self._stop = threading.Event()
        self.draining = False
        self._closing = threading.Lock()  # orders "queue after the response" and close()
        self._threads = [
            threading.Thread(target=self._after_response, name="shadow-log", daemon=True),
            threading.Thread(target=self._every, args=(RELOAD_S, self.reload), daemon=True),
            threading.Thread(target=self._every, args=(STATS_S, self._sync), daemon=True),
            threading.Thread(target=self._every, args=(LOG_FLUSH_S, self.log.flush), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._sync()

    # -- request path ---------------------------------------------------------------

    def score(self, transactions: Sequence[Transaction], trace: Any) -> list[dict[str, Any]]:
        """Score a batch (1..1000); raises BackendUnavailable when the online store is."""
        if self.draining:
            raise Draining(
                "the server is shutting down", hint="retry: another replica or host answers"
            )
        started = time.perf_counter()
        variants, weight = self.variants, self.weight
        with trace.span("feature_fetch"):
            try:
                windows = self.online.read(sorted({t.user_id for t in transactions}))
            except BackendUnavailable:
                self.metrics.unavailable.inc()
                raise
        fetch_s = time.perf_counter() - started
        rows = _model_inputs(transactions, windows)
        assigned = [
            assign_variant(t.user_id, weight, variants.canary is not None) for t in transactions
        ]
        with trace.span("model"):
            model_started = time.perf_counter()
            scores, served, fell_back = self._evaluate(rows, assigned, variants)
            model_s = time.perf_counter() - model_started
        total_s = time.perf_counter() - started
        age = time.time() - self.newest_online if self.newest_online else None
        responses = []
        for i, t in enumerate(transactions):
            model = served[i]
            responses.append(
                {
                    "event_id": t.event_id,
                    "score": scores[i],
                    "decision": "block" if scores[i] >= model.threshold else "allow",
                    "threshold": model.threshold,
                    "model_name": model.name,
                    "model_version": model.version,
                    "variant": assigned[i],
                    "trace_id": trace.trace_id,
                    "features": {name: rows[i][name] for name in FEATURE_NAMES},
                    "features_age_seconds": age,
                    "fallback": fell_back[i],
                }
            )
            self.metrics.observe(assigned[i], model.version, scores[i], total_s, fetch_s, model_s)
            self._count(assigned[i], requests=1, score=scores[i], latency_ms=total_s * 1000)
        with self._closing:
            closed = self._stop.is_set()
            if not closed:
                try:
                    self._after.put_nowait((responses, rows))
                except queue.Full:
                    self.metrics.log_dropped.inc(len(responses))
        if closed:
            # The after-response thread is gone, but a host may still route a request
            # here while it shuts down (Ray's direct ingress does): log it at once, so
            # every answered request reaches the log.
            self._shadow_and_log(responses, rows)
            self.log.flush()
        return responses

    def _evaluate(
        self, rows: list[dict[str, Any]], assigned: list[str], variants: Variants
    ) -> tuple[list[float], list[LoadedModel], list[bool]]:
        """Scores per row by its variant.  A canary that raises does not fail requests:
        its rows are served by the baseline (``variant`` becomes baseline, ``fallback``
        true) and counted as canary errors."""
        scores: list[float] = [0.0] * len(assigned)
        served: list[LoadedModel] = [variants.baseline] * len(assigned)
        fell_back = [False] * len(assigned)
        for name in ("baseline", "canary"):
            indexes = [i for i, v in enumerate(assigned) if v == name]
            model = variants.baseline if name == "baseline" else variants.canary
            if not indexes or model is None:
                continue
            chosen = [rows[i] for i in indexes]
            try:
                found = model.score_rows(chosen)
            except Exception as exc:
                if name == "baseline":
                    raise
                log.warning("canary %s failed (%s); served by baseline", model.version, exc)
                self._count(name, requests=len(indexes), errors=len(indexes))
                self.metrics.model_errors.labels(variant=name).inc(len(indexes))
                found, model = variants.baseline.score_rows(chosen), variants.baseline
                for i in indexes:
                    assigned[i], fell_back[i] = "baseline", True
            for i, score in zip(indexes, found, strict=True):
                scores[i], served[i] = score, model
        return scores, served, fell_back

    def _count(
        self,
        variant: str,
        requests: int = 0,
        errors: int = 0,
        score: float = 0.0,
        latency_ms: float | None = None,
        shadow: tuple[int, int] | None = None,
    ) -> None:
        with self._live_lock:
            live = self._live.setdefault(variant, LiveStats())
            live.requests += requests
            live.errors += errors
            live.score_sum += score
            if latency_ms is not None:
                live.latencies_ms.append(latency_ms)
            if shadow is not None:
                live.shadow_total += shadow[0]
                live.shadow_agree += shadow[1]

    # -- after the response: shadow and the prediction log --------------------------

    def _after_response(self) -> None:
        while True:
            item = self._after.get()
            if item is None:
                return
            responses, rows = item
            try:
                self._shadow_and_log(responses, rows)
            except Exception:  # never let the background path die
                log.exception("shadow scoring / prediction log failed")

    def _shadow_and_log(self, responses: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
        shadow = self.variants.shadow if self.shadow_on else None
        shadow_scores: list[float | None] = [None] * len(responses)
        if shadow is not None:
            started = time.perf_counter()
            try:
                shadow_scores = list(shadow.score_rows(rows))
            except Exception as exc:
                self.metrics.model_errors.labels(variant="shadow").inc(len(rows))
                log.warning("shadow %s failed: %s", shadow.version, exc)
            else:
                self.metrics.shadow_model_time(time.perf_counter() - started, len(rows))
            for response, shadow_score in zip(responses, shadow_scores, strict=True):
                if shadow_score is None:
                    continue
                agree = (shadow_score >= shadow.threshold) == (response["decision"] == "block")
                self.metrics.shadow(agree, shadow_score - response["score"])
                self._count(response["variant"], shadow=(1, int(agree)))
        now = datetime.now(UTC)
        entries = [
            {
                "event_id": response["event_id"],
                "scored_at": now,
                **row,
                "score": response["score"],
                "decision": response["decision"],
                "variant": response["variant"],
                "model_version": response["model_version"],
                "trace_id": response["trace_id"],
                "shadow_version": shadow.version if shadow is not None else None,
                "shadow_score": shadow_score,
            }
            for response, row, shadow_score in zip(responses, rows, shadow_scores, strict=True)
        ]
        if self.log.append(entries):
            self.log.flush()

    # -- background: reload, statistics, freshness ----------------------------------

    def _every(self, seconds: float, action: Callable[[], None]) -> None:
        while not self._stop.wait(seconds):
            try:
                action()
            except Exception as exc:
                log.warning("%s: %s", getattr(action, "__name__", action), exc)

    def reload(self) -> bool:
        """Serve what the aliases point at now; keep serving the loaded models when the
        registry cannot be reached.  Returns whether the variants changed."""
        try:
            versions = self.source.versions()
        except BackendUnavailable as exc:
            self.metrics.registry_errors.inc()
            log.warning("registry unreachable, serving the loaded models: %s", exc)
            return False
        if versions == self._versions:
            return False
        variants = self.source.load(versions)  # loads before the switch: no gap
        self.variants, self._versions = variants, versions
        self.metrics.versions(variants)
        log.info("serving %s", variants.describe(self.weight, self.shadow_on))
        return True

    def _sync(self) -> None:
        from fraudctl.ports import ONLINE_NEWEST_MARK

        self.weight, stopping = self.control.state()
        if stopping:
            # Ray's direct ingress keeps routing requests to a replica while it drains,
            # until a grace period ends in a kill without ``__del__``: stop answering and
            # flush now, so every answered request is in the log.
            self.draining = True
            self.close()
            return
        self.metrics.canary_weight.set(self.weight if self.variants.canary else 0.0)
        with self._live_lock:
            live, self._live = self._live, {}
        now = time.time()
        for variant, stats in live.items():
            self.control.record(now, variant, stats)
        try:
            self.newest_online = self.backends.dedupe.get_mark(ONLINE_NEWEST_MARK)
        except Exception:
            self.newest_online = None
        if self.newest_online is not None:
            self.metrics.freshness.set(max(now - self.newest_online, 0.0))

    def ready(self) -> tuple[bool, str]:
        if self.variants.baseline is None:
            return False, "no model loaded"
        try:
            self.online.read(["user-0"])
        except BackendUnavailable as exc:
            return False, str(exc)
        return True, "models loaded; online store reachable"

    def close(self) -> None:
        """Stop the background loops, let the after-response thread log what it holds,
        then flush the prediction log.  Safe to call twice."""
        with self._closing:  # no request queues work after this
            if self._stop.is_set():
                return
            self._stop.set()
            self._after.put(None)
        self._threads[0].join(timeout=CLOSE_TIMEOUT_S)
        self.log.flush()
