"""The event bus on any Kafka-API broker (Redpanda, Kafka, tansu) via confluent-kafka."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, cast

from fraudctl.errors import BackendUnavailable
from fraudctl.ports import Damage, DeliveryStats, Record, TopicPartition

# Consumers are assigned partitions explicitly (no group join); these bound how long
# a broker keeps a silent client's session.
CONSUMER_TIMEOUTS = {"session.timeout.ms": 6000, "max.poll.interval.ms": 30000}
# Kafka's default fetch wait. A conforming broker answers a fetch as soon as a record is
# there (fetch.min.bytes 1), so the wait costs a streaming consumer nothing; the native
# stand-in broker (tansu) returns an empty answer when reading its log takes longer than
# the wait, and that read grows with the log: at 10 ms (this setting before) a follower
# stalled for good at about 24,000 records (docs/event-bus.md).
CONSUMER_FETCH = {"fetch.wait.max.ms": 500}
ADMIN_TIMEOUT_S = 3.0
# An offset commit not acknowledged in this time is an error (the consumer restarts from
# the last acknowledged one), never a wait without end.
COMMIT_TIMEOUT_S = 30.0
# Producer settings shared with bench/produce.py's raw baseline, so the comparison is fair.
PRODUCER_TUNING = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
}


class KafkaBus:
    def __init__(self, bootstrap: str) -> None:
        self.address = bootstrap

    def _admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        # log_level 0: a failure is reported once by us, not as a stream of librdkafka lines.
        return AdminClient(
            {"bootstrap.servers": self.address, "socket.timeout.ms": 3000, "log_level": 0}
        )

    def topics(self) -> set[str]:
        from confluent_kafka import KafkaException

        try:
            return set(self._admin().list_topics(timeout=ADMIN_TIMEOUT_S).topics)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else exc
            why = error.str() if hasattr(error, "str") else str(error)
            raise BackendUnavailable(
                f"Kafka-API broker at {self.address} is unreachable ({why})",
                hint="is the stack up? `fraudctl stack up --native` (or `make services`)",
            ) from exc

    def ensure_topics(self, topics: list[str], partitions: int) -> list[str]:
        """Create the missing topics; return the ones created."""
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        missing = [t for t in topics if t not in self.topics()]
        if not missing:
            return []
        admin = self._admin()  # keep a reference: its futures die with it
        futures = admin.create_topics(
            [NewTopic(t, partitions, 1) for t in missing], operation_timeout=ADMIN_TIMEOUT_S
        )
        for topic, future in futures.items():
            try:
                future.result()
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise BackendUnavailable(
                        f"could not create topic {topic!r} on {self.address}: {exc}",
                        hint="check the broker's log and permissions",
                    ) from exc
        return missing

    def producer(self, *, delivery_timeout_s: float) -> KafkaProducer:
        return KafkaProducer(self.address, delivery_timeout_s)

    def consumer(
        self, group: str, topics: list[str], share: tuple[int, int] = (0, 1)
    ) -> KafkaConsumer:
        return KafkaConsumer(self.address, group, topics, share)


class KafkaProducer:
    """Idempotent, acks=all.

    Only failed deliveries call back into Python (``delivery.report.only.error``): a
    callback per message would cost more than producing it.  A message counts as
    acknowledged once it has left librdkafka's queue without an error report, so the
    per-topic figures are lower bounds while messages are in flight and exact once
    ``flush`` returns with nothing left (every message then has either succeeded or
    reported its error: the flush outlasts ``message.timeout.ms``).
    """

    def __init__(self, bootstrap: str, delivery_timeout_s: float) -> None:
        from confluent_kafka import Producer

        self._stats = DeliveryStats()
        self._published: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._delivery_timeout_s = delivery_timeout_s
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                **PRODUCER_TUNING,
                "message.timeout.ms": int(delivery_timeout_s * 1000),
                "delivery.report.only.error": True,
                "on_delivery": self._on_failure,
                "log_level": 3,
            }
        )
        self._produce = self._producer.produce

    def _on_failure(self, error: Any, message: Any) -> None:
        if error is not None:
            self._failed[str(message.topic())] += 1
            reason = error.name() if hasattr(error, "name") else str(error)
            self._stats.failure(str(message.topic()), reason)

    @property
    def stats(self) -> DeliveryStats:
        in_flight = len(self._producer)
        stats = self._stats
        stats.acknowledged_by_topic = Counter(
            {
                topic: max(count - self._failed[topic] - in_flight, 0)
                for topic, count in self._published.items()
            }
        )
        stats.acknowledged = max(sum(self._published.values()) - stats.failed - in_flight, 0)
        return stats

    def publish(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: dict[str, bytes] | None = None,
    ) -> None:
        wide = cast("dict[str, str | bytes | None] | None", headers)  # bytes values only
        try:
            self._produce(topic, value, key, headers=wide)
        except BufferError:
            self._produce_when_room(topic, value, key, wide)
        self._published[topic] += 1

    def publish_batch(self, topic: str, messages: list[tuple[bytes, bytes | None]]) -> None:
        produce = self._produce
        for value, key in messages:
            try:
                produce(topic, value, key)
            except BufferError:
                self._produce_when_room(topic, value, key, None)
        self._published[topic] += len(messages)

    def _produce_when_room(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: dict[str, str | bytes | None] | None,
    ) -> None:
        # The local queue is full (broker slow or away): serve reports until there is room.
        while True:
            self._producer.poll(0.05)
            try:
                self._produce(topic, value, key, headers=headers)
                return
            except BufferError:
                continue

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout_s: float) -> int:
        # Outlast message.timeout.ms so every message ends acknowledged or reported.
        deadline = time.monotonic() + max(timeout_s, self._delivery_timeout_s + 5)
        while len(self._producer) > 0 and time.monotonic() < deadline:
            self._producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        return len(self._producer)

    def in_flight(self) -> int:
        return len(self._producer)

    def close(self) -> None:
        self._producer.flush(0)


class KafkaConsumer:
    """Reads every partition of its topics, from the group's committed offsets, and
    commits manually (at-least-once).

    Partitions are assigned explicitly rather than through a group join: one process
    owns a group's partitions, starts without waiting for a rebalance, and is not held
    up by a broker's slow JoinGroup (see docs/event-bus.md).  Offsets are still stored
    under the group id, so any Kafka tool sees the group's progress and lag.
    """

    def __init__(
        self, bootstrap: str, group: str, topics: list[str], share: tuple[int, int] = (0, 1)
    ) -> None:
        from confluent_kafka import Consumer

        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "log_level": 3,
                **CONSUMER_TIMEOUTS,
                **CONSUMER_FETCH,
            }
        )
        self._topics = topics
        self._share = share
        self._bootstrap = bootstrap
        self._group = group
        self._commits = _commit_client(bootstrap)
        self._assign_from_committed()

    def _assign_from_committed(self) -> None:
        from confluent_kafka import KafkaException

        try:
            committed = self._consumer.committed(self._partitions(), timeout=10)
        except KafkaException as exc:
            raise BackendUnavailable(
                f"Kafka-API broker at {self._bootstrap} did not return committed offsets ({exc})",
                hint="is the stack up? `fraudctl doctor`",
            ) from exc
        for tp in committed:
            # Offset 0, not OFFSET_BEGINNING: that one asks the broker for the log start,
            # an answer not trusted here (see ``end_offsets``); a log that no longer
            # starts at 0 is handled by ``auto.offset.reset``.
            tp.offset = max(tp.offset, 0)
        self._consumer.assign(committed)

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        messages = self._consumer.consume(max_records, timeout_s)
        out = []
        for message in messages:
            if message.error() is not None:
                continue
            _kind, timestamp = message.timestamp()
            raw_headers = message.headers()
            # A consumer gets header values as bytes (or None for a header without one).
            headers = cast(dict[str, bytes], dict(raw_headers)) if raw_headers else {}
            if None in headers.values():  # a header without a value
                headers = {k: v for k, v in headers.items() if v is not None}
            out.append(
                Record(
                    message.topic() or "",
                    message.partition() or 0,
                    message.offset() or 0,
                    message.key(),
                    message.value() or b"",
                    headers,
                    timestamp,
                )
            )
        return out

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Store the group's offsets, acknowledged by the broker within
        ``COMMIT_TIMEOUT_S``, else :class:`BackendUnavailable` (nothing is lost: the
        records after the last acknowledged commit are read again).

        Through the admin API's AlterConsumerGroupOffsets — the same OffsetCommit request
        a consumer with assigned partitions sends — because ``Consumer.commit(asynchronous
        =False)`` has no timeout and can wait forever (confluent-kafka-python #1801; seen
        here: a materializer stuck in it for minutes on the native broker, consuming
        nothing, reporting nothing)."""
        from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        if not offsets:
            return
        partitions = [KafkaTopicPartition(t, p, o) for (t, p), o in offsets.items()]
        request = ConsumerGroupTopicPartitions(self._group, partitions)
        try:
            futures = self._commits.alter_consumer_group_offsets(
                [request], request_timeout=COMMIT_TIMEOUT_S
            )
            done = next(iter(futures.values())).result(timeout=COMMIT_TIMEOUT_S + 5)
        except (KafkaException, TimeoutError) as exc:
            # A fresh client for the next attempt: librdkafka 2.16 aborts the process
            # (rd_kafka_enq_once_del_source_return) when a client whose request timed
            # out is used again once the broker answers (seen here).
            self._commits = _commit_client(self._bootstrap)
            raise BackendUnavailable(
                f"Kafka-API broker at {self._bootstrap} did not acknowledge the offset "
                f"commit of group {self._group!r} within {COMMIT_TIMEOUT_S:g} s ({exc})",
                hint="the records since the last commit are read again on restart; "
                "is the broker overloaded or down? `fraudctl doctor`",
            ) from exc
        failed = [tp for tp in done.topic_partitions if tp.error is not None]
        if failed:
            raise BackendUnavailable(
                f"Kafka-API broker at {self._bootstrap} refused the offset commit of group "
                f"{self._group!r}: {failed[0].topic}[{failed[0].partition}] {failed[0].error}",
                hint="is another consumer a member of this group? `fraudctl doctor`",
            )

    def _partitions(self) -> list[Any]:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        metadata = self._consumer.list_topics(timeout=5)
        return [
            KafkaTopicPartition(topic, p)
            for topic in self._topics
            for p in metadata.topics[topic].partitions
            if p % self._share[1] == self._share[0]
        ]

    def committed(self) -> dict[TopicPartition, int]:
        return {
            (tp.topic, tp.partition): max(tp.offset, 0)
            for tp in self._consumer.committed(self._partitions(), timeout=10)
        }

    def end_offsets(self, exact: bool = True) -> dict[TopicPartition, int]:
        ends = {}
        for tp in self._partitions():
            _low, high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            ends[(tp.topic, tp.partition)] = high
        return _confirm_ends(self._bootstrap, ends) if exact else ends

    def damage(self) -> list[Damage]:
        return []  # the broker verifies its batches' CRCs itself

    def last_values(self) -> dict[TopicPartition, bytes]:
        ends = self.end_offsets(exact=False)
        return _read_tails(self._bootstrap, ends)[1]

    def close(self) -> None:
        self._consumer.close()


def _commit_client(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})


TAIL_PROBE_TIMEOUT_S = 30.0


def _confirm_ends(bootstrap: str, ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    return _read_tails(bootstrap, ends)[0]


def _read_tails(
    bootstrap: str, ends: dict[TopicPartition, int]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, bytes]]:
    """Read the last record batch of each partition: its true end offset, and the value
    of its last record.

    Some Kafka-API brokers (the tansu stand-in among them) answer ListOffsets with the
    base offset of the last *batch* plus one, not the offset after its last record.
    Reading from ``high - 1`` returns that whole batch; on a conforming broker it is a
    single record and the end stays ``high``.
    """
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    wanted = {tp for tp, high in ends.items() if high > 0}
    last: dict[TopicPartition, bytes] = {}
    if not ends:
        return {}, last
    probe = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "fraudctl-end-probe",
            "enable.auto.commit": False,
            "log_level": 3,
            **CONSUMER_FETCH,
        }
    )
    confirmed = dict(ends)
    try:
        # A partition the broker called empty is read from its start too, in case that
        # answer was stale.
        probe.assign([KafkaTopicPartition(t, p, max(high - 1, 0)) for (t, p), high in ends.items()])
        # Read on until every non-empty partition has answered and then a round brings
        # nothing new: a stale answer can trail the end by more than one batch.  On a
        # live stream new records keep coming; what was seen by the deadline will do.
        seen: set[TopicPartition] = set()
        quiet_rounds = 0
        deadline = time.monotonic() + TAIL_PROBE_TIMEOUT_S
        while quiet_rounds < 2:
            if time.monotonic() > deadline:
                if seen >= wanted:
                    break
                # An unconfirmed end may be short of the real one by a whole batch: a run
                # that trusted it would stop early and report success.
                missing = sorted(wanted - seen)
                raise BackendUnavailable(
                    f"Kafka-API broker at {bootstrap} did not return the last records of "
                    f"{', '.join(f'{t}[{p}]' for t, p in missing)} within "
                    f"{TAIL_PROBE_TIMEOUT_S:.0f} s, so the end of the stream is unknown",
                    hint="is the broker overloaded or down? `fraudctl doctor`, then rerun",
                )
            grew = False
            for message in probe.consume(10_000, 0.3):
                if message.error() is None:
                    tp = (str(message.topic()), int(message.partition() or 0))
                    seen.add(tp)
                    after = int(message.offset() or 0) + 1
                    if after >= confirmed[tp]:
                        grew = grew or after > confirmed[tp]
                        confirmed[tp] = after
                        last[tp] = message.value() or b""
            quiet_rounds = quiet_rounds + 1 if seen >= wanted and not grew else 0
    finally:
        probe.close()
    return confirmed, last
