"""One contract for every event bus: the embedded file log and a real Kafka-API broker
must behave the same (keyed partitioning and order, consumer groups, committed offsets,
at-least-once redelivery of what was not committed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudctl.adapters.filelog import FileLogBus
from fraudctl.adapters.kafka_bus import KafkaBus
from fraudctl.ports import BusConsumer, EventBus, Record

PARTITIONS = 3


@pytest.fixture(params=["filelog", "kafka"])
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventBus]:
    if request.param == "filelog":
        yield FileLogBus(tmp_path / "bus")
    else:
        stack = request.getfixturevalue("stack")
        yield KafkaBus(stack["FRAUDCTL_KAFKA_BOOTSTRAP"])


@pytest.fixture
def topic(bus: EventBus) -> str:
    name = "contract-" + uuid.uuid4().hex[:10]
    bus.ensure_topics([name], PARTITIONS)
    bus.ensure_topics([name], PARTITIONS)  # idempotent
    return name


def publish(bus: EventBus, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    producer = bus.producer(delivery_timeout_s=30)
    for key, value in items:
        producer.publish(topic, value, key, {"origin": b"test"})
    assert producer.flush(30) == 0
    assert producer.stats.acknowledged == len(items)
    assert producer.stats.acknowledged_by_topic[topic] == len(items)
    producer.close()


def drain_with(consumer: BusConsumer, expected: int) -> list[Record]:
    records: list[Record] = []
    for _ in range(120):
        records += consumer.poll(500, 0.5)
        if len(records) >= expected:
            break
    return records


def drain(bus: EventBus, group: str, topic: str, expected: int) -> list[Record]:
    consumer = bus.consumer(group, [topic])
    try:
        return drain_with(consumer, expected)
    finally:
        consumer.close()


def test_keyed_records_keep_their_order_in_one_partition(bus: EventBus, topic: str) -> None:
    items = [(f"user-{i % 7}".encode(), f"{i}".encode()) for i in range(700)]
    publish(bus, topic, items)
    records = drain(bus, "g-" + uuid.uuid4().hex, topic, len(items))
    assert len(records) == len(items)
    by_key: dict[bytes, list[int]] = {}
    partition_of: dict[bytes, set[int]] = {}
    for record in records:
        assert record.key is not None
        by_key.setdefault(record.key, []).append(int(record.value))
        partition_of.setdefault(record.key, set()).add(record.partition)
        assert record.headers.get("origin") == b"test"
    assert all(len(parts) == 1 for parts in partition_of.values())
    assert all(values == sorted(values) for values in by_key.values())
    assert sorted(v for values in by_key.values() for v in values) == list(range(700))


def test_committed_offsets_survive_a_restart_and_the_rest_is_redelivered(
    bus: EventBus, topic: str
) -> None:
    publish(bus, topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(300)])
    group = "g-" + uuid.uuid4().hex
    consumer = bus.consumer(group, [topic])
    first = drain_with(consumer, 300)
    assert len(first) == 300

    # Commit only up to the middle of each partition: the rest must come again.
    ends: dict[tuple[str, int], int] = {}
    for record in first:
        tp = (record.topic, record.partition)
        ends[tp] = max(ends.get(tp, 0), record.offset + 1)
    halves = {tp: end // 2 for tp, end in ends.items()}
    consumer.commit(halves)
    assert {tp: o for tp, o in consumer.committed().items() if tp in halves} == halves
    assert {tp: o for tp, o in consumer.end_offsets().items() if tp in ends} == ends
    consumer.close()

    again = drain(bus, group, topic, sum(ends[tp] - halves[tp] for tp in ends))
    expected = {
        (r.partition, r.offset) for r in first if r.offset >= halves[(r.topic, r.partition)]
    }
    assert {(r.partition, r.offset) for r in again} == expected

    other_group = drain(bus, "g-" + uuid.uuid4().hex, topic, 300)
    assert len(other_group) == 300  # groups are independent
