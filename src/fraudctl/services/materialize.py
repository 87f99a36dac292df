"""Stream → feature store: validate, dead-letter, deduplicate, compute features, write
offline and online, and only then commit the consumed offsets.

Each poll is one batch, processed in this order:

1. validate every record through the contract core; what fails (including bytes that
   are not JSON) goes to the DLQ with its reason and origin, and is counted;
2. drop duplicates: an event id first accepted at another origin (a replay);
3. compute each accepted event's features from its user's window (the one feature
   implementation) and add the event to the window;
4. write offline (events, labels, features, user_state snapshots: Parquet by event hour)
   and online (the users' windows through Feast), flush the DLQ;
5. record first origins for deduplication, then commit the offsets.

A crash anywhere before 5 leaves the offsets uncommitted: the batch is delivered again,
and because windows ignore events they already hold, dedupe compares origins, and
offline files of a batch replace the earlier attempt (see ``adapters.offline``), the
stores end up as if the batch had been processed once.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraudctl.adapters.dedupe import DedupeStore
from fraudctl.adapters.offline import ParquetStore, PlannedFile, hour_partition
from fraudctl.adapters.online import OnlineState, state_frame
from fraudctl.contract import LabelRecord, Transaction, validate_bytes
from fraudctl.errors import BackendUnavailable
from fraudctl.features import Txn, UserWindow
from fraudctl.ports import BusConsumer, BusProducer, Record, TopicPartition

POLL_BATCH = 20_000
ONLINE_NEWEST_MARK = "online_newest_event_ts"
FRESHNESS_SLO_S = 120.0
IDLE_GIVE_UP_S = 30.0  # nothing more arrives although the end said so


@dataclass(frozen=True)
class MaterializeTopics:
    transactions: str
    labels: str
    dlq: str


@dataclass
class MaterializeSummary:
    events_read: int = 0
    valid: int = 0
    dead_lettered: int = 0
    duplicates_skipped: int = 0
    labels_read: int = 0
    labels_joined: int = 0
    rows_written_offline: int = 0
    users_updated_online: int = 0
    batches: int = 0
    newest_event_ts: float | None = None
    online_lag_s: float | None = None  # stream's newest event time minus online's newest
    elapsed_s: float = 0.0
    events_per_s: float = 0.0
    dlq_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Accepted:
    record: Record
    event: Transaction
    origin: str


@dataclass
class _Pending:
    """What has been ingested (and written online) but is not yet durable offline."""

    records: list[Record] = field(default_factory=list)
    accepted: list[_Accepted] = field(default_factory=list)
    feature_rows: list[dict[str, Any]] = field(default_factory=list)
    labels: list[tuple[Record, LabelRecord]] = field(default_factory=list)
    windows: dict[str, UserWindow] = field(default_factory=dict)


def origin_of(record: Record) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


class Materializer:
    def __init__(
        self,
        consumer: BusConsumer,
        dlq: BusProducer,
        offline: ParquetStore,
        online: OnlineState,
        dedupe: DedupeStore,
        topics: MaterializeTopics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.consumer = consumer
        self.dlq = dlq
        self.offline = offline
        self.online = online
        self.dedupe = dedupe
        self.topics = topics
        self.clock = clock
        self.summary = MaterializeSummary()
        self.pending = _Pending()
        self.read_positions: dict[TopicPartition, int] = {}
        # Called with each batch of events just written online and the wall time then.
        self.on_online_write: Callable[[list[_Accepted], float], None] = lambda _a, _t: None

    # -- the batch run ------------------------------------------------------------------

    def run_to_end(
        self,
        max_events: int | None = None,
        on_progress: Callable[[MaterializeSummary], None] = lambda _s: None,
    ) -> MaterializeSummary:
        """Consume from the committed offsets up to the end seen at the start."""
        started = time.monotonic()
        ends = self.consumer.end_offsets()
        positions = self.consumer.committed()
        idle_since: float | None = None
        while not all(positions.get(tp, 0) >= end for tp, end in ends.items()):
            if max_events is not None and self.summary.events_read >= max_events:
                break
            want = POLL_BATCH
            if max_events is not None:
                want = min(want, max_events - self.summary.events_read)
            records = self.consumer.poll(want, 1.0)
            if not records:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > IDLE_GIVE_UP_S:
                    # What was processed is committed; saying "done" would hide the rest.
                    short = {
                        f"{t}[{p}]": f"{positions.get((t, p), 0)}/{end}"
                        for (t, p), end in ends.items()
                        if positions.get((t, p), 0) < end
                    }
                    raise BackendUnavailable(
                        f"the bus delivered nothing for {IDLE_GIVE_UP_S:.0f} s short of the "
                        f"end it reported (position/end: {short}); "
                        f"{self.summary.events_read} events were processed and committed",
                        hint="check the broker (`fraudctl doctor`), then rerun to continue",
                    )
                continue
            idle_since = None
            committed = self.process(records)
            positions.update(committed)
            self.summary.elapsed_s = time.monotonic() - started
            on_progress(self.summary)
        self.summary.elapsed_s = time.monotonic() - started
        if self.summary.elapsed_s > 0:
            self.summary.events_per_s = self.summary.events_read / self.summary.elapsed_s
        return self.summary

    def process(self, records: list[Record]) -> dict[TopicPartition, int]:
        """Process one polled batch end to end; return the offsets committed."""
        self.ingest(records)
        return self.flush()

    def ingest(self, records: list[Record]) -> None:
        """Validate, dead-letter, deduplicate, compute features and write the users'
        windows online right away; keep the rest for ``flush``."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        pending = self.pending
        pending.records += records
        self.read_positions.update(_next_offsets(records))
        accepted, labels = self._validate(records, now)
        accepted = self._deduplicate(accepted)
        users = sorted({a.event.user_id for a in accepted} - pending.windows.keys())
        pending.windows.update(self.online.read(users))
        rows = self._features(accepted, pending.windows)
        touched = {a.event.user_id: pending.windows[a.event.user_id] for a in accepted}
        self.online.write(touched)
        self.summary.users_updated_online += len(touched)
        pending.accepted += accepted
        pending.feature_rows += rows
        pending.labels += labels
        if accepted:
            newest = max(a.event.event_ts.timestamp() for a in accepted)
            self.dedupe.raise_mark(ONLINE_NEWEST_MARK, newest)
            summary = self.summary
            summary.newest_event_ts = max(summary.newest_event_ts or newest, newest)
            summary.online_lag_s = 0.0
            self.on_online_write(accepted, self.clock())

    def flush(self) -> dict[TopicPartition, int]:
        """Make everything ingested durable (offline, dead letters, dedupe), then commit."""
        pending = self.pending
        if not pending.records:
            return {}
        self._write_offline(pending.accepted, pending.feature_rows, pending.labels, pending.windows)
        remaining = self.dlq.flush(30)
        if remaining:
            raise BackendUnavailable(f"{remaining} dead letters were not acknowledged")
        self.dedupe.record({a.event.event_id: a.origin for a in pending.accepted})
        offsets = _next_offsets(pending.records)
        self.consumer.commit(offsets)
        for (topic, partition), first in _first_offsets(pending.records).items():
            self.offline.forget_batch(topic, partition, first)
        self.summary.batches += 1
        self.pending = _Pending()
        return offsets

    def run_follow(
        self,
        should_stop: Callable[[], bool],
        flush_interval_s: float = 5.0,
        on_progress: Callable[[MaterializeSummary], None] = lambda _s: None,
    ) -> MaterializeSummary:
        """Keep consuming: online writes per poll, durable flush + commit per interval."""
        started = last_flush = time.monotonic()
        self.read_positions.update(self.consumer.committed())
        while not should_stop():
            records = self.consumer.poll(POLL_BATCH, 0.1)
            if records:
                self.ingest(records)
                on_progress(self.summary)
            now = time.monotonic()
            if self.pending.records and (
                now - last_flush >= flush_interval_s or len(self.pending.records) >= POLL_BATCH
            ):
                self.flush()
                last_flush = now
                self.summary.elapsed_s = now - started
                on_progress(self.summary)
        self.flush()
        self.summary.elapsed_s = time.monotonic() - started
        return self.summary

    # -- steps ------------------------------------------------------------------------

    def _validate(
        self, records: list[Record], now: datetime
    ) -> tuple[list[_Accepted], list[tuple[Record, LabelRecord]]]:
        summary = self.summary
        accepted: list[_Accepted] = []
        labels: list[tuple[Record, LabelRecord]] = []
        for record in records:
            if record.topic == self.topics.labels:
                summary.labels_read += 1
                try:
                    labels.append((record, LabelRecord.model_validate_json(record.value)))
                except ValueError as exc:
                    self._dead_letter(record, f"label: {exc}".splitlines()[0])
                continue
            summary.events_read += 1
            verdict = validate_bytes(record.value, clock=lambda: now)
            if verdict.record is None:
                self._dead_letter(record, "; ".join(str(v) for v in verdict.violations))
                continue
            summary.valid += 1
            accepted.append(_Accepted(record, verdict.record, origin_of(record)))
        return accepted, labels

    def _dead_letter(self, record: Record, reason: str) -> None:
        self.summary.dead_lettered += 1
        kind = reason.split(":", 1)[0]
        self.summary.dlq_reasons[kind] = self.summary.dlq_reasons.get(kind, 0) + 1
        self.dlq.publish(
            self.topics.dlq,
            record.value,
            record.key,
            {
                "reason": reason.encode(),
                "origin.topic": record.topic.encode(),
                "origin.partition": str(record.partition).encode(),
                "origin.offset": str(record.offset).encode(),
            },
        )

    def _deduplicate(self, accepted: list[_Accepted]) -> list[_Accepted]:
        first = {a.event.event_id: a.origin for a in self.pending.accepted}
        first.update(self.dedupe.origins([a.event.event_id for a in accepted]))
        kept: list[_Accepted] = []
        for item in accepted:
            known = first.get(item.event.event_id)
            if known is not None and known != item.origin:
                self.summary.duplicates_skipped += 1
                continue
            first[item.event.event_id] = item.origin
            kept.append(item)
        return kept

    def _features(
        self, accepted: list[_Accepted], windows: dict[str, UserWindow]
    ) -> list[dict[str, Any]]:
        rows = []
        for item in accepted:
            event = item.event
            ts = event.event_ts.timestamp()
            txn = Txn(ts, event.transaction_amount, event.country, event.device, event.event_id)
            window = windows.setdefault(event.user_id, UserWindow())
            rows.append(
                {"event_id": event.event_id, "user_id": event.user_id, "event_ts": ts}
                | window.features(txn)
            )
            window.add(txn)
        return rows

    def _write_offline(
        self,
        accepted: list[_Accepted],
        feature_rows: list[dict[str, Any]],
        labels: list[tuple[Record, LabelRecord]],
        windows: dict[str, UserWindow],
    ) -> None:
        import pyarrow as pa

        # Group rows by (source partition, table, event hour).
        grouped: dict[tuple[str, int], dict[PlannedFile, list[dict[str, Any]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        firsts = _first_offsets([a.record for a in accepted] + [r for r, _ in labels])
        for item, features in zip(accepted, feature_rows, strict=True):
            record, event = item.record, item.event
            tp = (record.topic, record.partition)
            hour = hour_partition(features["event_ts"])
            name = f"p{record.partition}-{firsts[tp]:012d}.parquet"
            grouped[tp][PlannedFile("events", hour, name)].append(
                event.model_dump(mode="python", exclude={"label"})
                | {"origin_partition": record.partition, "origin_offset": record.offset}
            )
            grouped[tp][PlannedFile("features", hour, name)].append(
                {k: v for k, v in features.items() if k != "event_ts"}
                | {"event_timestamp": event.event_ts}
            )
        for record, label in labels:
            tp = (record.topic, record.partition)
            hour = hour_partition(label.event_ts.timestamp())
            name = f"p{record.partition}-{firsts[tp]:012d}.parquet"
            grouped[tp][PlannedFile("labels", hour, name)].append(label.model_dump(mode="python"))

        written = 0
        for (topic, partition), files in grouped.items():
            tables = {planned: pa.Table.from_pylist(rows) for planned, rows in files.items()}
            self.offline.replace_batch(topic, partition, firsts[(topic, partition)], tables)
            written += sum(len(rows) for p, rows in files.items() if p.table == "events")
        self.summary.rows_written_offline += written
        if labels:
            label_ids = [label.event_id for _record, label in labels]
            known = self.dedupe.origins(label_ids).keys() | {a.event.event_id for a in accepted}
            self.summary.labels_joined += sum(1 for i in label_ids if i in known)

        if accepted:
            touched = {a.event.user_id: windows[a.event.user_id] for a in accepted}
            frame = state_frame(touched)
            snapshot = hashlib.sha256(
                ",".join(f"{t}/{p}/{o}" for (t, p), o in sorted(firsts.items())).encode()
            ).hexdigest()[:16]
            newest = max(w.newest or 0.0 for w in touched.values())
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self.offline.write_snapshot("user_state", hour_partition(newest), snapshot, table)


def _first_offsets(records: list[Record]) -> dict[TopicPartition, int]:
    firsts: dict[TopicPartition, int] = {}
    for record in records:
        tp = (record.topic, record.partition)
        if tp not in firsts or record.offset < firsts[tp]:
            firsts[tp] = record.offset
    return firsts


def _next_offsets(records: list[Record]) -> dict[TopicPartition, int]:
    nexts: dict[TopicPartition, int] = {}
    for record in records:
        tp = (record.topic, record.partition)
        nexts[tp] = max(nexts.get(tp, 0), record.offset + 1)
    return nexts


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
