"""Replay a user's own transaction file onto the bus (`fraudctl produce --from FILE`):
every row an event (and its label, when the row has one) exactly as the generator
publishes them, every row that cannot be one on the dead-letter topic with the file,
the row number and the reason. Constant memory: the file is read twice in chunks (first
its times, for the timeline and the row count; then everything)."""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraudctl.contract import Transaction, judged_at, validate_bytes
from fraudctl.generator import Event, format_ts, label_json, transaction_json
from fraudctl.ports import BusProducer, RowChunk, RowSource, ScoringClient
from fraudctl.replay import BadRow, ColumnMap, RowMapper, Timeline, TimeMode, parse_time
from fraudctl.services.produce import BATCH, PROGRESS_EVERY_S, Clock


@dataclass(frozen=True)
class ReplayPlan:
    columns: ColumnMap
    time: TimeMode
    rate: float  # rows per second, paced by a clock; 0: as fast as possible
    label_delay: float  # seconds after each event its label is published (no label_ts column)
    topic_transactions: str
    topic_labels: str
    topic_dlq: str
    delivery_timeout_s: float
    pseudonym_key: bytes = b""


@dataclass(frozen=True)
class Scan:
    """The first pass: how many rows, and the first and last time among them."""

    rows: int
    first: float | None
    last: float | None


@dataclass
class ReplaySummary:
    file: str = ""
    format: str = ""
    rows_total: int = 0  # from the first pass, broken rows included
    rows: int = 0  # rows read so far
    published: int = 0
    acknowledged: int = 0
    failed: int = 0
    not_acknowledged: int = 0  # events, labels and dead letters not confirmed
    labels_published: int = 0
    labels_acknowledged: int = 0
    labels_failed: int = 0
    labels_pending: int = 0
    unlabelled: int = 0  # valid rows without a label
    fraud_events: int = 0
    dead_lettered: int = 0
    dead_letters_acknowledged: int = 0
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    users_pseudonymised: int = 0  # rows whose user id was hashed
    time: str = "keep"
    file_first_ts: str | None = None  # the file's own times
    file_last_ts: str | None = None
    first_event_ts: str | None = None  # event times as published
    last_event_ts: str | None = None
    elapsed_s: float = 0.0
    producing_s: float = 0.0
    rows_per_s: float = 0.0
    stopped_by: str = "running"
    failures: dict[str, int] = field(default_factory=dict)
    scored: int = 0
    score_failed: int = 0
    score_errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def scan(source: RowSource, columns: ColumnMap) -> Scan:
    """Count the rows and find the first and last parseable event time."""
    column = columns.columns.get("event_ts")
    constant = columns.constants.get("event_ts")
    rows, first, last = 0, None, None
    for chunk in source.chunks([column] if column is not None else []):
        rows += len(chunk.rows) + len(chunk.broken)
        values = chunk.columns[column] if column is not None else [constant] * len(chunk.rows)
        for value in values:
            try:
                t = parse_time(value)
            except BadRow:
                continue
            first = t if first is None or t < first else first
            last = t if last is None or t > last else last
    return Scan(rows, first, last)


def replay(
    source: RowSource,
    producer: BusProducer,
    plan: ReplayPlan,
    *,
    clock: Clock | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[ReplaySummary, str], None] = lambda _s, _m: None,
    scoring: ScoringClient | None = None,
) -> ReplaySummary:
    """Scan, then publish every row; wait for the labels still owed (unless stopped),
    flush, and return what happened."""
    clock = clock or Clock()
    summary = ReplaySummary(file=source.name, format=source.format, time=plan.time.describe())
    on_progress(summary, "reading the file's times")
    found = scan(source, plan.columns)
    summary.rows_total = found.rows
    timeline = Timeline(0.0, 0.0, 1.0)  # no parseable time: every row is a dead letter
    if found.first is not None and found.last is not None:
        summary.file_first_ts, summary.file_last_ts = format_ts(found.first), format_ts(found.last)
        timeline = Timeline.plan(plan.time, found.first, found.last, clock.wall())
    mapper = RowMapper(plan.columns, timeline, plan.pseudonym_key, plan.label_delay)
    run = _Replay(source, producer, plan, clock, should_stop, on_progress, scoring, summary,
                  mapper)  # fmt: skip
    return run.run()


class _Replay:
    def __init__(
        self,
        source: RowSource,
        producer: BusProducer,
        plan: ReplayPlan,
        clock: Clock,
        should_stop: Callable[[], bool],
        on_progress: Callable[[ReplaySummary, str], None],
        scoring: ScoringClient | None,
        summary: ReplaySummary,
        mapper: RowMapper,
    ) -> None:
        self.source, self.producer, self.plan, self.clock = source, producer, plan, clock
        self.should_stop, self.on_progress, self.scoring = should_stop, on_progress, scoring
        self.summary, self.mapper = summary, mapper
        self.outgoing: list[tuple[bytes, bytes | None]] = []
        self.labels: list[tuple[float, int, bytes, bytes]] = []  # (due, seq, value, key): a heap
        self.interrupted = False
        self.t0 = clock.monotonic()
        self.last_progress = self.t0
        self.producing_s = 0.0
        self.valid = 0

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> ReplaySummary:
        summary, plan = self.summary, self.plan
        for chunk in self.source.chunks(plan.columns.source_columns()):
            self.take(chunk)
            if self.interrupted:
                break
        summary.stopped_by = "interrupt" if self.interrupted else "end of file"
        self.hand_over()
        self.producing_s = self.clock.monotonic() - self.t0
        if self.scoring is not None:
            self.on_progress(summary, "waiting for the scoring requests in flight")
            stats = self.scoring.close(plan.delivery_timeout_s)
            summary.scored, summary.score_failed = stats.answered, stats.failed
            summary.score_errors = dict(stats.errors)
        self.drain_labels()
        summary.labels_pending = len(self.labels)
        self.on_progress(summary, "flushing")
        remaining = self.producer.flush(plan.delivery_timeout_s)
        self.report(None)
        summary.not_acknowledged = remaining + self.producer.stats.failed
        return summary

    def take(self, chunk: RowChunk) -> None:
        """Dead-letter the chunk's broken rows, then map, validate, pace and gather each
        row (the hot loop)."""
        summary = self.summary
        context = judged_at(datetime.fromtimestamp(self.clock.wall(), UTC))
        for broken in chunk.broken:
            self.dead_letter(broken.row, broken.raw, broken.reason)
        summary.rows += len(chunk.broken)
        names = list(chunk.columns)
        columns = [chunk.columns[name] for name in names]
        for i, row in enumerate(chunk.rows):
            summary.rows += 1
            values = {name: column[i] for name, column in zip(names, columns, strict=True)}
            accepted = self.accept(row, values, context)
            if accepted is None:
                continue
            event, raw, due = accepted
            self.wait_for_turn(event.event_ts)
            if self.interrupted:
                return
            self.gather(event, raw, due)
        self.hand_over()

    def accept(
        self, row: int, values: dict[str, Any], context: dict[str, Any]
    ) -> tuple[Event, bytes, float | None] | None:
        """The row's event, its wire form and its label's due time; or ``None`` once it
        is dead-lettered."""
        try:
            event, due = self.mapper.event(row, values)
        except BadRow as exc:
            self.dead_letter(row, _raw(values), str(exc))
            return None
        raw = transaction_json(event)
        try:
            Transaction.model_validate_json(raw, context=context)
        except ValueError:
            verdict = validate_bytes(raw, now=context["latest"])
            reason = "; ".join(str(v) for v in verdict.violations) or "(record): invalid"
            self.dead_letter(row, _raw(values), reason)
            return None
        return event, raw, due

    def gather(self, event: Event, raw: bytes, due: float | None) -> None:
        summary = self.summary
        key = event.user_id.encode()
        self.outgoing.append((raw, key))
        self.valid += 1
        summary.users_pseudonymised += self.mapper.last_hashed
        if summary.first_event_ts is None:
            summary.first_event_ts = event.event_ts_text
        summary.last_event_ts = event.event_ts_text
        if due is None:
            summary.unlabelled += 1
        else:
            summary.fraud_events += event.label
            heapq.heappush(self.labels, (due, self.valid, label_json(event, due), key))
        if self.scoring is not None:
            self.scoring.submit(raw)
        if len(self.outgoing) >= BATCH:
            self.hand_over()

    def wait_for_turn(self, event_ts: float) -> None:
        """Pace: a compressed timeline publishes each event when its time comes; --rate
        publishes the n-th valid row at n / rate seconds."""
        plan, clock = self.plan, self.clock
        while True:
            if self.should_stop():
                self.interrupted = True
                return
            if plan.time.kind == "compress":
                wait = event_ts - clock.wall()
            elif plan.rate > 0:
                wait = self.t0 + self.valid / plan.rate - clock.monotonic()
            else:
                wait = 0.0
            if wait <= 0:
                return
            self.hand_over()
            clock.sleep(min(wait, 0.05))

    def hand_over(self) -> None:
        """Publish the events gathered, then every label that has fallen due (a label
        never goes out before its event)."""
        if self.outgoing:
            self.producer.publish_batch(self.plan.topic_transactions, self.outgoing)
            self.summary.published += len(self.outgoing)
            self.outgoing = []
        self.publish_due_labels(self.clock.wall())
        self.producer.poll()
        now = self.clock.monotonic()
        if now - self.last_progress >= PROGRESS_EVERY_S:
            self.last_progress = now
            self.report("replaying")

    def publish_due_labels(self, now_wall: float) -> None:
        labels, due = self.labels, list[tuple[bytes, bytes | None]]()
        while labels and labels[0][0] <= now_wall:
            _due, _seq, value, key = heapq.heappop(labels)
            due.append((value, key))
        if due:
            self.producer.publish_batch(self.plan.topic_labels, due)
            self.summary.labels_published += len(due)

    def drain_labels(self) -> None:
        while self.labels and not self.interrupted:
            if self.should_stop():
                self.interrupted = True
                self.summary.stopped_by = "interrupt"
                return
            now_wall = self.clock.wall()
            self.publish_due_labels(now_wall)
            self.producer.poll()
            if self.labels:
                wait = self.labels[0][0] - now_wall
                self.report(f"waiting {max(wait, 0):.0f} s for delayed labels")
                self.clock.sleep(min(max(wait, 0.0), 0.25))

    def dead_letter(self, row: int, raw: bytes, reason: str) -> None:
        summary = self.summary
        summary.dead_lettered += 1
        kind = reason.split(":", 1)[0]
        summary.dlq_reasons[kind] = summary.dlq_reasons.get(kind, 0) + 1
        self.producer.publish(
            self.plan.topic_dlq,
            raw,
            None,
            {
                "reason": reason.encode(),
                "origin.file": self.source.name.encode(),
                "origin.format": self.source.format.encode(),
                "origin.row": str(row).encode(),
            },
        )

    def report(self, message: str | None) -> None:
        summary, stats, plan = self.summary, self.producer.stats, self.plan
        summary.acknowledged = stats.acknowledged_by_topic[plan.topic_transactions]
        summary.labels_acknowledged = stats.acknowledged_by_topic[plan.topic_labels]
        summary.dead_letters_acknowledged = stats.acknowledged_by_topic[plan.topic_dlq]
        summary.failed = stats.failed_by_topic[plan.topic_transactions]
        summary.labels_failed = stats.failed_by_topic[plan.topic_labels]
        summary.failures = dict(stats.errors)
        summary.elapsed_s = self.clock.monotonic() - self.t0
        summary.producing_s = self.producing_s or summary.elapsed_s
        summary.rows_per_s = summary.rows / summary.producing_s if summary.producing_s else 0.0
        if message is not None:
            self.on_progress(summary, message)


def _raw(values: dict[str, Any]) -> bytes:
    """A bad row as it was read (the mapped columns), for the dead-letter record."""
    return json.dumps(values, default=str, ensure_ascii=False).encode()
