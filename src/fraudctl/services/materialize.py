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

import gc
import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraudctl.adapters import tables as tables_
from fraudctl.adapters.offline import HourPartitions, PlannedFile
from fraudctl.contract import LabelRecord, Transaction, judged_at, validate_bytes
from fraudctl.errors import BackendUnavailable
from fraudctl.features import Txn, UserWindow
from fraudctl.ports import (
    ONLINE_NEWEST_MARK,
    Backends,
    BusConsumer,
    BusProducer,
    DedupeStore,
    FeatureStore,
    OfflineStore,
    Record,
    TopicPartition,
)

POLL_BATCH = 50_000
WINDOW_CACHE_USERS = 500_000
ORIGIN_CACHE_IDS = 2_000_000
FOLLOW_POLL_S = 0.05  # --follow: longest wait for more records before handling those in hand
IDLE_GIVE_UP_S = 30.0  # nothing more arrives although the end said so
CONFIRM_END_S = 0.5  # a last poll past the measured end, in case the broker under-reported it


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
    # Records found past the end the broker reported at the start (it under-reported).
    read_past_reported_end: int = 0
    newest_event_ts: float | None = None
    online_lag_s: float | None = None  # stream's newest event time minus online's newest
    elapsed_s: float = 0.0
    events_per_s: float = 0.0
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    # Damaged regions of the embedded log read around (file, byte, records unreadable).
    bus_damage: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unreadable_records(self) -> int | None:
        """Records lost to damage (None when a damaged tail hides how many)."""
        counts = [d["records"] for d in self.bus_damage]
        return None if None in counts else sum(counts)

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


@contextmanager
def fewer_collections(threshold: int = 50_000) -> Iterator[None]:
    """Run an allocation-heavy loop with the cyclic garbage collector mostly out of the
    way: what exists already (imported libraries, Feast's registry) is frozen out of its
    scans, and a collection starts after ``threshold`` allocations instead of 700.  The
    loop's records, models and rows are freed by reference counting as usual; measured,
    this took a third of the materializer's CPU time."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


class Materializer:
    def __init__(
        self,
        consumer: BusConsumer,
        dlq: BusProducer,
        offline: OfflineStore,
        online: FeatureStore,
        dedupe: DedupeStore,
        topics: MaterializeTopics,
        clock: Callable[[], float] = time.time,
        batch_size: int = POLL_BATCH,
    ) -> None:
        self.consumer = consumer
        self.batch_size = batch_size
        self.dlq = dlq
        self.offline = offline
        self.online = online
        self.dedupe = dedupe
        self.topics = topics
        self.clock = clock
        self.summary = MaterializeSummary()
        self.pending = _Pending()
        self.read_positions: dict[TopicPartition, int] = {}
        self._hours = HourPartitions()
        # Windows this process wrote, so later batches need not read them back: one
        # process owns the group's partitions, so nobody else changes them meanwhile.
        self._windows: dict[str, UserWindow] = {}
        # First origins of the events this process accepted (also those not yet flushed).
        self._origins: dict[str, str] = {}
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix="materialize-flush")
        self._in_flight: Future[None] | None = None
        # Called with each batch of events just written online and the wall time then.
        self.on_online_write: Callable[[list[_Accepted], float], None] = lambda _a, _t: None

    # -- the batch run ------------------------------------------------------------------

    def run_to_end(
        self,
        max_events: int | None = None,
        on_progress: Callable[[MaterializeSummary], None] = lambda _s: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> MaterializeSummary:
        """Consume from the committed offsets up to the end seen at the start (or until
        ``should_stop``, after the batch in hand is committed)."""
        with fewer_collections():
            return self._run_to_end(max_events, on_progress, should_stop)

    def _run_to_end(
        self,
        max_events: int | None,
        on_progress: Callable[[MaterializeSummary], None],
        should_stop: Callable[[], bool],
    ) -> MaterializeSummary:
        started = time.monotonic()
        # Confirming the end takes the broker a few round trips: read meanwhile.
        with ThreadPoolExecutor(1, thread_name_prefix="materialize-ends") as probe:
            measuring = probe.submit(self.consumer.end_offsets)
            self.read_positions.update(self.consumer.committed())
            self._read_until(measuring, max_events, on_progress, should_stop, started)
        self.flush()
        self.note_damage()
        self.summary.elapsed_s = time.monotonic() - started
        if self.summary.elapsed_s > 0:
            self.summary.events_per_s = self.summary.events_read / self.summary.elapsed_s
        return self.summary

    def _read_until(
        self,
        measuring: Future[dict[TopicPartition, int]],
        max_events: int | None,
        on_progress: Callable[[MaterializeSummary], None],
        should_stop: Callable[[], bool],
        started: float,
    ) -> None:
        """Read and hand over batches until every partition reaches the end measured at
        the start (known once ``measuring`` is done), ``max_events`` or a stop."""
        positions = self.read_positions  # kept up to date by ``ingest``
        idle_since: float | None = None
        started_ms = time.time() * 1000
        while True:
            ends = measuring.result() if measuring.done() else None
            if ends is not None and all(positions.get(tp, 0) >= e for tp, e in ends.items()):
                # The measured end is confirmed by the consumer itself: one more poll must
                # bring nothing that was already on the bus when the run started.
                late = self.consumer.poll(self.batch_size, CONFIRM_END_S)
                if late:
                    self.ingest(late)
                    self.submit_flush()
                    self.summary.read_past_reported_end += len(late)
                if not any(r.timestamp_ms <= started_ms for r in late):
                    break
                continue
            if max_events is not None and self.summary.events_read >= max_events:
                break
            if should_stop():
                break
            want = self.batch_size
            if max_events is not None:
                want = min(want, max_events - self.summary.events_read)
            records = self.consumer.poll(want, 1.0)
            if not records:
                if ends is None:
                    continue
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
                        f"{self.summary.events_read} events were read; what was processed "
                        "is committed",
                        hint="check the broker (`fraudctl doctor`), then rerun to continue",
                    )
                continue
            idle_since = None
            self.ingest(records)
            self.submit_flush()
            self.summary.elapsed_s = time.monotonic() - started
            on_progress(self.summary)

    def note_damage(self) -> None:
        """Copy the damage the consumer read around into the summary."""
        self.summary.bus_damage = [d.as_dict() for d in self.consumer.damage()]

    def ingest(self, records: list[Record]) -> None:
        """Validate, dead-letter, deduplicate, compute features and write the users'
        windows online right away; keep the rest for ``flush``."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        pending = self.pending
        pending.records += records
        self.read_positions.update(_next_offsets(records))
        accepted, labels = self._validate(records, now)
        accepted = self._deduplicate(accepted)
        wanted = {a.event.user_id for a in accepted} - pending.windows.keys()
        known = {u: self._windows[u] for u in wanted if u in self._windows}
        pending.windows.update(known)
        pending.windows.update(self.online.read(sorted(wanted - known.keys())))
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

    def submit_flush(self) -> None:
        """Hand what was ingested to the flusher thread, which makes it durable (offline,
        dead letters, dedupe) and then commits its offsets, while this thread goes on
        reading.  One flush is in flight at most, so commits stay in order and a crash
        loses only uncommitted work, which is read again."""
        pending = self.pending
        if not pending.records:
            return
        self._wait_for_flush()
        touched = {a.event.user_id: pending.windows[a.event.user_id] for a in pending.accepted}
        snapshot = tables_.state_frame(touched) if touched else None
        if len(self._windows) + len(pending.windows) > WINDOW_CACHE_USERS:
            self._windows.clear()
        self._windows.update(pending.windows)
        if len(self._origins) > ORIGIN_CACHE_IDS:  # all but this batch's are in the store
            self._origins = {a.event.event_id: a.origin for a in pending.accepted}
        self.pending = _Pending()
        self._in_flight = self._flusher.submit(self._make_durable, pending, snapshot)

    def flush(self) -> None:
        """Make everything ingested durable and committed before returning."""
        self.submit_flush()
        self._wait_for_flush()

    def _wait_for_flush(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.result()  # raises what the flusher raised

    def _make_durable(self, pending: _Pending, snapshot: Any) -> None:
        self._write_offline(pending.accepted, pending.feature_rows, pending.labels, snapshot)
        remaining = self.dlq.flush(30)
        if remaining:
            raise BackendUnavailable(f"{remaining} dead letters were not acknowledged")
        self.dedupe.record({a.event.event_id: a.origin for a in pending.accepted})
        self.consumer.commit(_next_offsets(pending.records))
        for (topic, partition), first in _first_offsets(pending.records).items():
            self.offline.forget_batch(topic, partition, first)
        self.summary.batches += 1

    def run_follow(
        self,
        should_stop: Callable[[], bool],
        flush_interval_s: float = 5.0,
        on_progress: Callable[[MaterializeSummary], None] = lambda _s: None,
    ) -> MaterializeSummary:
        """Keep consuming: online writes per poll, durable flush + commit per interval."""
        with fewer_collections():
            return self._run_follow(should_stop, flush_interval_s, on_progress)

    def _run_follow(
        self,
        should_stop: Callable[[], bool],
        flush_interval_s: float,
        on_progress: Callable[[MaterializeSummary], None],
    ) -> MaterializeSummary:
        started = last_flush = time.monotonic()
        self.read_positions.update(self.consumer.committed())
        while not should_stop():
            records = self.consumer.poll(self.batch_size, FOLLOW_POLL_S)
            if records:
                self.ingest(records)
                on_progress(self.summary)
            now = time.monotonic()
            if self.pending.records and (
                now - last_flush >= flush_interval_s or len(self.pending.records) >= self.batch_size
            ):
                self.submit_flush()
                last_flush = now
                self.note_damage()
                self.summary.elapsed_s = now - started
                on_progress(self.summary)
        self.flush()
        self.note_damage()
        self.summary.elapsed_s = time.monotonic() - started
        return self.summary

    def close(self) -> None:
        self._flusher.shutdown(wait=True)
        self.consumer.close()
        self.dlq.close()

    # -- steps ------------------------------------------------------------------------

    def _validate(
        self, records: list[Record], now: datetime
    ) -> tuple[list[_Accepted], list[tuple[Record, LabelRecord]]]:
        """Judge every record through the contract (the hot loop: locals only).  A valid
        transaction is parsed once by pydantic; only a refused one is judged again by
        ``validate_bytes``, for reasons that name the first thing wrong."""
        accepted: list[_Accepted] = []
        labels: list[tuple[Record, LabelRecord]] = []
        labels_topic = self.topics.labels
        parse_event = Transaction.model_validate_json
        parse_label = LabelRecord.model_validate_json
        context = judged_at(now)
        keep, keep_label = accepted.append, labels.append
        events = 0
        for record in records:
            if record.topic == labels_topic:
                try:
                    keep_label((record, parse_label(record.value)))
                except ValueError as exc:
                    self._dead_letter(record, f"label: {exc}".splitlines()[0])
                continue
            events += 1
            try:
                event = parse_event(record.value, context=context)
            except ValueError:
                verdict = validate_bytes(record.value, now=now)
                if verdict.record is None:
                    self._dead_letter(record, "; ".join(str(v) for v in verdict.violations))
                    continue
                event = verdict.record
            keep(_Accepted(record, event, f"{record.topic}/{record.partition}/{record.offset}"))
        summary = self.summary
        summary.events_read += events
        summary.labels_read += len(records) - events
        summary.valid += len(accepted)
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
        first = self._origins
        stored = self.dedupe.origins(
            [a.event.event_id for a in accepted if a.event.event_id not in first]
        )
        kept: list[_Accepted] = []
        for item in accepted:
            event_id = item.event.event_id
            known = first.get(event_id) or stored.get(event_id)
            if known is not None and known != item.origin:
                self.summary.duplicates_skipped += 1
                continue
            first[event_id] = item.origin
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
            window = windows.get(event.user_id)
            if window is None:
                window = windows[event.user_id] = UserWindow()
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
        snapshot: Any,
    ) -> None:
        # Rows grouped by source partition, then by (table, event hour): one file each.
        firsts = _first_offsets([a.record for a in accepted] + [r for r, _ in labels])
        events: dict[TopicPartition, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for index, item in enumerate(accepted):
            tp = (item.record.topic, item.record.partition)
            events[tp][self._hours.of(feature_rows[index]["event_ts"])].append(index)
        by_label: dict[TopicPartition, dict[str, list[int]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for index, (record, label) in enumerate(labels):
            tp = (record.topic, record.partition)
            by_label[tp][self._hours.of(label.event_ts.timestamp())].append(index)

        written = 0
        for tp in events.keys() | by_label.keys():
            name = f"p{tp[1]}-{firsts[tp]:012d}.parquet"
            tables: dict[PlannedFile, Any] = {}
            for hour, indexes in events.get(tp, {}).items():
                rows = [accepted[i] for i in indexes]
                tables[PlannedFile("events", hour, name)] = tables_.events_table(
                    [a.event for a in rows], [a.record for a in rows]
                )
                tables[PlannedFile("features", hour, name)] = tables_.features_table(
                    [feature_rows[i] for i in indexes], [a.event for a in rows]
                )
                written += len(indexes)
            for hour, indexes in by_label.get(tp, {}).items():
                tables[PlannedFile("labels", hour, name)] = tables_.labels_table(
                    [labels[i][1] for i in indexes]
                )
            self.offline.replace_batch(tp[0], tp[1], firsts[tp], tables)
        self.summary.rows_written_offline += written
        if labels:
            label_ids = [label.event_id for _record, label in labels]
            seen = self._origins
            stored = self.dedupe.origins([i for i in label_ids if i not in seen])
            self.summary.labels_joined += sum(1 for i in label_ids if i in seen or i in stored)

        if snapshot is not None:
            import pyarrow as pa

            name = hashlib.sha256(
                ",".join(f"{t}/{p}/{o}" for (t, p), o in sorted(firsts.items())).encode()
            ).hexdigest()[:16]
            hour = self._hours.of(float(snapshot["newest_ts"].max()))
            table = pa.Table.from_pandas(snapshot, preserve_index=False)
            self.offline.write_snapshot("user_state", hour, name, table)


def open_materializer(
    backends: Backends, share: tuple[int, int] = (0, 1), batch_size: int = POLL_BATCH
) -> Materializer:
    """A materializer on the backends' bus and stores, reading ``share`` of the
    partitions (see ``EventBus.consumer``)."""
    settings = backends.settings
    consumer = backends.bus.consumer(
        settings.consumer_group, [settings.topic_transactions, settings.topic_labels], share
    )
    topics = MaterializeTopics(
        settings.topic_transactions, settings.topic_labels, settings.topic_dlq
    )
    dlq = backends.bus.producer(delivery_timeout_s=30)
    return Materializer(
        consumer, dlq, backends.offline, backends.features, backends.dedupe, topics,
        batch_size=batch_size,
    )  # fmt: skip


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
