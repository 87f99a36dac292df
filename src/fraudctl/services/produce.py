"""Publish the synthetic stream: paced by a clock, validated by the contract, with
delayed labels and (on demand) deliberately invalid records."""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from fraudctl.contract import Transaction, judged_at
from fraudctl.generator import (
    Event,
    GeneratorOptions,
    TransactionGenerator,
    invalid_json,
    label_json,
    transaction_json,
)
from fraudctl.ports import BusProducer, ScoringClient, ScoringStats
from fraudctl.workers import add_counts, run_workers

BATCH = 2000  # most events handed over between two looks at the clock
PROGRESS_EVERY_S = 0.25
NOMINAL_RATE = 100.0  # event-time spacing of `--rate 0` runs


@dataclass(frozen=True)
class Clock:
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class ProducePlan:
    rate: float
    count: int | None
    duration: float | None
    label_delay: float
    invalid_rate: float
    start: float | None  # event time of the first event (epoch s); None: when the run begins
    topic_transactions: str
    topic_labels: str
    delivery_timeout_s: float
    # Event-time spacing of a `--rate 0` run, events per second (`--span`); None: NOMINAL_RATE.
    event_rate: float | None = None

    def grid_rate(self) -> float:
        """Events per second of event time: the pace, or for `--rate 0` the layout."""
        return self.rate if self.rate > 0 else (self.event_rate or NOMINAL_RATE)


@dataclass
class ProduceSummary:
    generated: int = 0
    published: int = 0
    acknowledged: int = 0
    failed: int = 0  # transactions the bus refused
    not_acknowledged: int = 0  # messages (transactions and labels) not confirmed
    labels_published: int = 0
    labels_acknowledged: int = 0
    labels_failed: int = 0
    labels_pending: int = 0
    invalid_injected: int = 0
    invalid_by_kind: dict[str, int] = field(default_factory=dict)
    rejected_by_contract: int = 0
    fraud_events: int = 0
    elapsed_s: float = 0.0  # the whole run: producing, waiting for labels, flushing
    producing_s: float = 0.0  # until the last event was handed over
    events_per_s: float = 0.0  # published / producing_s
    stopped_by: str = "running"
    failures: dict[str, int] = field(default_factory=dict)
    # --score URL: every valid event also scored by a running server
    scored: int = 0
    score_failed: int = 0
    score_errors: dict[str, int] = field(default_factory=dict)
    score_p50_ms: float | None = None
    score_p95_ms: float | None = None
    score_variants: dict[str, int] = field(default_factory=dict)  # answered, by variant

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_start(
    rate: float, count: int | None, now: float, event_rate: float | None = None
) -> float | None:
    """Paced runs stamp events with the time they are due, from the moment the run
    begins (``None``: start-up time is not counted against the events); `--rate 0` runs
    lay their events on a grid (NOMINAL_RATE, or ``event_rate`` from `--span`) that ends
    now, so none is in the future."""
    if rate > 0 or count is None:
        return None
    return now - count / (event_rate or NOMINAL_RATE)


def produce(
    producer: BusProducer,
    options: GeneratorOptions,
    plan: ProducePlan,
    *,
    clock: Clock | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[ProduceSummary, str], None] = lambda _s, _m: None,
    scoring: ScoringClient | None = None,
) -> ProduceSummary:
    """Run until --count, --duration or ``should_stop``; flush; return what happened.
    With ``scoring``, every valid event is also scored by a running server (and waited
    for before the labels are drained)."""
    run = _Run(producer, options, plan, clock or Clock(), should_stop, on_progress,
               scoring=scoring)  # fmt: skip
    return run.run()


class _Run:
    def __init__(
        self,
        producer: BusProducer,
        options: GeneratorOptions,
        plan: ProducePlan,
        clock: Clock,
        should_stop: Callable[[], bool],
        on_progress: Callable[[ProduceSummary, str], None],
        shard: tuple[int, int] = (0, 1),
        grid_rate: float | None = None,
        scoring: ScoringClient | None = None,
    ) -> None:
        self.producer = producer
        self.scoring = scoring
        self.plan = plan
        self.clock = clock
        self.should_stop = should_stop
        self.on_progress = on_progress
        # The event-time grid of the whole stream; a shard takes every n-th slot of it.
        rate = grid_rate or plan.grid_rate()
        index, count = shard
        start = plan.start if plan.start is not None else clock.wall()
        self.generator = TransactionGenerator(
            options, start + index / rate, rate / count, shard=shard
        )
        # Invalid-record choices come from their own stream so that --invalid-rate does
        # not change which valid events the seed produces.
        self.invalid_rng = random.Random(f"{options.seed}/invalid/{index}/{count}")
        self.summary = ProduceSummary()
        self.pending_labels: deque[Event] = deque()
        self.context: dict[str, Any] = {}
        self.interrupted = False
        self.producing_s = 0.0

    def emit(self, n: int) -> None:
        """Generate, validate and hand over ``n`` events (the hot loop: locals only)."""
        summary, plan, publish_batch = self.summary, self.plan, self.producer.publish_batch
        validate, context = Transaction.model_validate_json, self.context
        context.update(judged_at(datetime.fromtimestamp(self.clock.wall(), UTC)))  # per batch
        topic, invalid_rate = plan.topic_transactions, plan.invalid_rate
        owe_label = self.pending_labels.append
        score = self.scoring.submit if self.scoring is not None else None
        outgoing: list[tuple[bytes, bytes | None]] = []
        send = outgoing.append
        fraud = 0
        for event in self.generator.batch(n):
            key = event.user_id.encode()
            if invalid_rate and self.invalid_rng.random() < invalid_rate:
                raw, kind = invalid_json(event, self.invalid_rng, self.clock.wall())
                send((raw, key))
                summary.invalid_injected += 1
                summary.invalid_by_kind[kind] = summary.invalid_by_kind.get(kind, 0) + 1
                continue
            raw = transaction_json(event)
            try:
                validate(raw, context=context)
            except ValueError:
                summary.rejected_by_contract += 1
                continue
            send((raw, key))
            fraud += event.label
            owe_label(event)
            if score is not None:
                score(raw)
        publish_batch(topic, outgoing)
        summary.generated += n
        summary.published += len(outgoing)
        summary.fraud_events += fraud

    def publish_due_labels(self, now_wall: float) -> None:
        pending, delay = self.pending_labels, self.plan.label_delay
        due: list[tuple[bytes, bytes | None]] = []
        while pending and pending[0].event_ts + delay <= now_wall:
            event = pending.popleft()
            due.append((label_json(event, event.event_ts + delay), event.user_id.encode()))
        if due:
            self.producer.publish_batch(self.plan.topic_labels, due)
            self.summary.labels_published += len(due)

    def stop_reason(self, emitted: int, elapsed: float) -> str | None:
        if self.should_stop():
            self.interrupted = True
            return "interrupt"
        if self.plan.count is not None and emitted >= self.plan.count:
            return "count"
        plan = self.plan
        if plan.duration is not None and elapsed >= plan.duration:
            if plan.rate > 0 and emitted < math.ceil(plan.duration * plan.rate):
                return None  # hand over what fell due before the deadline, then stop
            return "duration"
        return None

    def due(self, emitted: int, elapsed: float) -> int:
        """How many events should have been handed over by now (paced by the clock)."""
        plan = self.plan
        if plan.rate > 0:
            due = math.floor(elapsed * plan.rate) + 1
            if plan.duration is not None:
                due = min(due, math.ceil(plan.duration * plan.rate))
        else:
            due = emitted + BATCH
        return due if plan.count is None else min(due, plan.count)

    def run(self) -> ProduceSummary:
        clock, plan, summary = self.clock, self.plan, self.summary
        t0 = last_progress = clock.monotonic()
        emitted = 0
        while True:
            now = clock.monotonic()
            elapsed = now - t0
            reason = self.stop_reason(emitted, elapsed)
            if reason is not None:
                summary.stopped_by = reason
                break
            due = self.due(emitted, elapsed)
            batch = min(max(due - emitted, 0), BATCH)
            self.emit(batch)
            emitted += batch
            self.publish_due_labels(clock.wall())
            self.producer.poll()
            if now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                self.report("producing", elapsed)
            if plan.rate > 0 and emitted >= due:
                next_due = t0 + emitted / plan.rate
                clock.sleep(min(max(next_due - clock.monotonic(), 0.0), 0.05))
        self.producing_s = clock.monotonic() - t0
        if self.scoring is not None:
            self.on_progress(summary, "waiting for the scoring requests in flight")
            self.scored(self.scoring.close(plan.delivery_timeout_s))
        self.drain_labels(t0)
        summary.labels_pending = len(self.pending_labels)
        self.on_progress(summary, "flushing")
        remaining = self.producer.flush(plan.delivery_timeout_s)
        self.report(None, clock.monotonic() - t0)
        summary.not_acknowledged = remaining + self.producer.stats.failed
        return summary

    def scored(self, stats: ScoringStats) -> None:
        import numpy as np

        summary = self.summary
        summary.scored, summary.score_failed = stats.answered, stats.failed
        summary.score_errors = dict(stats.errors)
        summary.score_variants = dict(stats.variants)
        if stats.latency_ms:
            p50, p95 = np.percentile(stats.latency_ms, [50, 95])
            summary.score_p50_ms, summary.score_p95_ms = float(p50), float(p95)

    def drain_labels(self, t0: float) -> None:
        """Delayed truth still owed: wait for it unless the user interrupted."""
        while self.pending_labels and not self.interrupted:
            if self.should_stop():
                self.interrupted = True
                return
            now_wall = self.clock.wall()
            self.publish_due_labels(now_wall)
            self.producer.poll()
            if self.pending_labels:
                wait = self.pending_labels[0].event_ts + self.plan.label_delay - now_wall
                self.report(
                    f"waiting {max(wait, 0):.0f} s for delayed labels", self.clock.monotonic() - t0
                )
                self.clock.sleep(min(max(wait, 0.0), 0.25))

    def report(self, message: str | None, elapsed: float) -> None:
        summary, stats = self.summary, self.producer.stats
        summary.acknowledged = stats.acknowledged_by_topic[self.plan.topic_transactions]
        summary.labels_acknowledged = stats.acknowledged_by_topic[self.plan.topic_labels]
        summary.failed = stats.failed_by_topic[self.plan.topic_transactions]
        summary.labels_failed = stats.failed_by_topic[self.plan.topic_labels]
        summary.failures = dict(stats.errors)
        summary.elapsed_s = elapsed
        summary.producing_s = self.producing_s or elapsed
        summary.events_per_s = (
            summary.published / summary.producing_s if summary.producing_s > 0 else 0.0
        )
        if message is not None:
            self.on_progress(summary, message)


def produce_in_workers(
    open_producer: Callable[[], BusProducer],
    options: GeneratorOptions,
    plan: ProducePlan,
    workers: int,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[ProduceSummary, str], None] = lambda _s, _m: None,
    open_scoring: Callable[[], ScoringClient] | None = None,
) -> ProduceSummary:
    """The same run split over ``workers`` processes, each with its own producer and the
    events of its own share of the users (so every user's events keep their order).

    Each worker paces ``rate / workers`` on the shared event-time grid; the summary adds
    theirs up.  Ctrl-C reaches the parent only, which asks every worker to stop and flush.
    """
    if workers == 1:
        scoring = open_scoring() if open_scoring is not None else None
        return produce(open_producer(), options, plan, should_stop=should_stop,
                       on_progress=on_progress, scoring=scoring)  # fmt: skip
    grid_rate = plan.grid_rate()
    finals = run_workers(
        _worker,
        [(workers, open_producer, options, plan, grid_rate, open_scoring) for _ in range(workers)],
        should_stop=should_stop,
        on_report=lambda latest: on_progress(
            merge_summaries([ProduceSummary(**d) for d in latest.values()]), "producing"
        ),
    )
    return merge_summaries([ProduceSummary(**d) for d in finals.values()])


def _worker(
    index: int,
    count: int,
    open_producer: Callable[[], BusProducer],
    options: GeneratorOptions,
    plan: ProducePlan,
    grid_rate: float,
    open_scoring: Callable[[], ScoringClient] | None,
    *,
    stop: Any,
    report: Callable[[str, Any], None],
) -> None:
    share = None
    if plan.count is not None:
        share = plan.count // count + (1 if index < plan.count % count else 0)
    worker_plan = replace(plan, rate=plan.rate / count, count=share)
    producer = open_producer()
    summary = _Run(
        producer,
        options,
        worker_plan,
        Clock(),
        stop.is_set,
        lambda s, _m: report("progress", s.as_dict()),
        shard=(index, count),
        grid_rate=grid_rate,
        scoring=open_scoring() if open_scoring is not None else None,
    ).run()
    producer.close()
    report("final", summary.as_dict())


COUNTS = (
    "generated",
    "published",
    "acknowledged",
    "failed",
    "not_acknowledged",
    "labels_published",
    "labels_acknowledged",
    "labels_failed",
    "labels_pending",
    "invalid_injected",
    "rejected_by_contract",
    "fraud_events",
    "scored",
    "score_failed",
)


def merge_summaries(parts: list[ProduceSummary]) -> ProduceSummary:
    merged = ProduceSummary()
    for part in parts:
        add_counts(merged, part, COUNTS,
                   ("invalid_by_kind", "failures", "score_errors", "score_variants"))  # fmt: skip
        # Percentiles do not add up: the slowest worker's.
        for name in ("score_p50_ms", "score_p95_ms"):
            value = getattr(part, name)
            if value is not None:
                setattr(merged, name, max(getattr(merged, name) or 0.0, value))
        merged.elapsed_s = max(merged.elapsed_s, part.elapsed_s)
        merged.producing_s = max(merged.producing_s, part.producing_s)
    reasons = {part.stopped_by for part in parts}
    merged.stopped_by = "interrupt" if "interrupt" in reasons else sorted(reasons)[0]
    merged.events_per_s = merged.published / merged.producing_s if merged.producing_s else 0.0
    return merged
