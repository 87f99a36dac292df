"""The event bus on any Kafka-API broker (Redpanda, Kafka, tansu) via confluent-kafka."""

from __future__ import annotations

import time
from typing import Any

from fraudctl.errors import BackendUnavailable
from fraudctl.ports import DeliveryStats, Record, TopicPartition

# Group membership against small brokers: librdkafka derives the JoinGroup rebalance
# timeout from max.poll.interval.ms (5 min by default), which some brokers hold in full.
CONSUMER_TIMEOUTS = {"session.timeout.ms": 6000, "max.poll.interval.ms": 30000}


class KafkaBus:
    def __init__(self, bootstrap: str) -> None:
        self.address = bootstrap

    def ensure_topics(self, topics: list[str], partitions: int) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

        admin = AdminClient(
            {"bootstrap.servers": self.address, "socket.timeout.ms": 3000, "log_level": 0}
        )
        try:
            existing = set(admin.list_topics(timeout=5).topics)
        except KafkaException as exc:
            raise self._unavailable(exc) from exc
        missing = [t for t in topics if t not in existing]
        if not missing:
            return
        futures = admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
        for topic, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise BackendUnavailable(
                        f"could not create topic {topic!r} on {self.address}: {exc}"
                    ) from exc

    def _unavailable(self, exc: Exception) -> BackendUnavailable:
        error = exc.args[0] if exc.args else exc
        why = error.str() if hasattr(error, "str") else str(error)
        return BackendUnavailable(
            f"Kafka-API broker at {self.address} is unreachable ({why})",
            hint="is the stack up? `fraudctl stack up --native` (or `make services`)",
        )

    def producer(self, *, delivery_timeout_s: float) -> KafkaProducer:
        return KafkaProducer(self.address, delivery_timeout_s)

    def consumer(self, group: str, topics: list[str]) -> KafkaConsumer:
        return KafkaConsumer(self.address, group, topics)


class KafkaProducer:
    """Idempotent, acks=all; every delivery report is counted."""

    def __init__(self, bootstrap: str, delivery_timeout_s: float) -> None:
        from confluent_kafka import Producer

        self.stats = DeliveryStats()
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "batch.num.messages": 10000,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                "message.timeout.ms": int(delivery_timeout_s * 1000),
                "log_level": 3,
            }
        )
        self._pending = 0

    def _on_delivery(self, error: Any, message: Any) -> None:
        self._pending -= 1
        if error is None:
            self.stats.success(message.topic())
        else:
            self.stats.failure(error.name() if hasattr(error, "name") else str(error))

    def publish(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: dict[str, bytes] | None = None,
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    headers=dict(headers) if headers else None,
                    on_delivery=self._on_delivery,
                )
                self._pending += 1
                return
            except BufferError:
                # The local queue is full (broker slow or away): serve reports and retry.
                self._producer.poll(0.05)

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self._pending > 0 and time.monotonic() < deadline:
            self._producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        return max(self._pending, 0)

    def in_flight(self) -> int:
        return self._pending

    def close(self) -> None:
        self._producer.flush(0)


class KafkaConsumer:
    """Consumer-group member with manual commits (at-least-once)."""

    def __init__(self, bootstrap: str, group: str, topics: list[str]) -> None:
        from confluent_kafka import Consumer

        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "log_level": 3,
                **CONSUMER_TIMEOUTS,
            }
        )
        self._topics = topics
        self._bootstrap = bootstrap
        self._consumer.subscribe(topics)

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        messages = self._consumer.consume(max_records, timeout_s)
        out = []
        for message in messages:
            if message.error() is not None:
                continue
            _kind, timestamp = message.timestamp()
            raw_headers = message.headers() or []
            pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
            headers = {str(k): v for k, v in pairs if isinstance(v, bytes)}
            out.append(
                Record(
                    str(message.topic()),
                    int(message.partition() or 0),
                    int(message.offset() or 0),
                    message.key(),
                    message.value() or b"",
                    headers,
                    timestamp,
                )
            )
        return out

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        if offsets:
            self._consumer.commit(
                offsets=[KafkaTopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )

    def _partitions(self) -> list[Any]:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        metadata = self._consumer.list_topics(timeout=5)
        return [
            KafkaTopicPartition(topic, p)
            for topic in self._topics
            for p in metadata.topics[topic].partitions
        ]

    def committed(self) -> dict[TopicPartition, int]:
        return {
            (tp.topic, tp.partition): max(tp.offset, 0)
            for tp in self._consumer.committed(self._partitions(), timeout=10)
        }

    def end_offsets(self) -> dict[TopicPartition, int]:
        ends = {}
        for tp in self._partitions():
            _low, high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            ends[(tp.topic, tp.partition)] = high
        return _confirm_ends(self._bootstrap, ends)

    def close(self) -> None:
        self._consumer.close()


def _confirm_ends(bootstrap: str, ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Read the last record batch of each partition to confirm its end offset.

    Some Kafka-API brokers (the tansu stand-in among them) answer ListOffsets with the
    base offset of the last *batch* plus one, not the offset after its last record.
    Reading from ``high - 1`` returns that whole batch; on a conforming broker it is a
    single record and the end stays ``high``.
    """
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    wanted = {tp: high for tp, high in ends.items() if high > 0}
    if not wanted:
        return dict(ends)
    probe = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "fraudctl-end-probe",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    confirmed = dict(ends)
    try:
        probe.assign([KafkaTopicPartition(t, p, high - 1) for (t, p), high in wanted.items()])
        seen: set[TopicPartition] = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            messages = probe.consume(10_000, 0.3)
            for message in messages:
                if message.error() is None:
                    tp = (str(message.topic()), int(message.partition() or 0))
                    seen.add(tp)
                    confirmed[tp] = max(confirmed[tp], int(message.offset() or 0) + 1)
            if not messages and seen >= set(wanted):
                break
    finally:
        probe.close()
    return confirmed
