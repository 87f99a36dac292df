"""Read a whole topic back with a plain confluent-kafka consumer (no fraudctl code)."""

from __future__ import annotations

import time
import uuid
from typing import Any

IDLE_S = 3.0


def read_topic(bootstrap: str, topic: str, timeout_s: float = 90) -> list[Any]:
    """Every message of ``topic`` from the beginning, read until the broker has had
    nothing more to give for IDLE_S seconds (watermarks are not trusted: the stand-in
    broker under-reports them)."""
    consumer = from_the_start(bootstrap, topic)
    try:
        messages: list[Any] = []
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last_new < IDLE_S:
            batch = [m for m in consumer.consume(10_000, 0.5) if m.error() is None]
            if batch:
                messages += batch
                last_new = time.monotonic()
        return messages
    finally:
        consumer.close()


def wait_for_a_message(bootstrap: str, topic: str, timeout_s: float = 60) -> None:
    """Return once ``topic`` holds a message (a producer started in the background has
    begun: its start-up time is not a fixed sleep on a loaded machine)."""
    consumer = from_the_start(bootstrap, topic)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(m.error() is None for m in consumer.consume(1, 0.2)):
                return
        raise AssertionError(f"nothing reached {topic} in {timeout_s:g} s")
    finally:
        consumer.close()


def from_the_start(bootstrap: str, topic: str) -> Any:
    """A consumer of every partition of ``topic`` from offset 0, in no group's way."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reader-" + uuid.uuid4().hex,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    return consumer
