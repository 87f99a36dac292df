"""Read a whole topic back with a plain confluent-kafka consumer (no fraudctl code); see
when a process has reached the broker."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
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


def wait_until_connected(pid: int, port: int, timeout_s: float = 60) -> None:
    """Return once process ``pid`` holds an established TCP connection to ``port`` on
    loopback (a producer started in the background has reached the broker: its start-up
    time is no fixed sleep on a loaded machine).  Read from /proc (Linux)."""
    wanted = f"{port:04X}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sockets = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2].endswith(f":{wanted}") and fields[3] == "01":  # ESTABLISHED
                sockets.add(f"socket:[{fields[9]}]")
        with contextlib.suppress(FileNotFoundError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in sockets:
                        return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} did not connect to port {port} in {timeout_s:g} s")


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
