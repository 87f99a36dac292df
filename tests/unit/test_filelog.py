"""Embedded-bus specifics: durability framing, torn tails, segment rolls, and readers
running while a writer appends."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fraudctl.adapters import filelog
from fraudctl.adapters.filelog import FileLogBus, Position, end_position, scan


def test_torn_tail_is_invisible_to_readers_and_truncated_by_the_next_writer(
    tmp_path: Path,
) -> None:
    bus = FileLogBus(tmp_path)
    bus.ensure_topics(["t"], 1)
    producer = bus.producer(delivery_timeout_s=1)
    for i in range(10):
        producer.publish("t", f"v{i}".encode(), b"k")
    producer.flush(1)
    segment = next((tmp_path / "t" / "0").glob("*.log"))
    good_size = segment.stat().st_size
    with segment.open("ab") as handle:  # a crash in the middle of a write
        handle.write(filelog.encode(b"half", b"k", None, 0, 10)[:7])
    assert len(list(scan(segment.parent, Position(0, 0, 0)))) == 10
    producer.publish("t", b"after", b"k")
    producer.flush(1)
    records = bus.consumer("g", ["t"]).poll(100, 0.1)
    assert [r.value for r in records][-2:] == [b"v9", b"after"]
    assert [r.offset for r in records] == list(range(11))
    assert segment.stat().st_size > good_size


def test_segments_roll_and_reads_continue_across_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filelog, "SEGMENT_BYTES", 2000)
    bus = FileLogBus(tmp_path)
    bus.ensure_topics(["t"], 1)
    producer = bus.producer(delivery_timeout_s=1)
    for i in range(200):
        producer.publish("t", f"value-{i:04d}".encode() * 3, b"k")
        if i % 20 == 0:
            producer.flush(1)
    producer.flush(1)
    assert len(list((tmp_path / "t" / "0").glob("*.log"))) > 3
    consumer = bus.consumer("g", ["t"])
    records = []
    while batch := consumer.poll(37, 0.05):
        records += batch
    assert [r.offset for r in records] == list(range(200))
    assert end_position(tmp_path / "t" / "0").offset == 200
    consumer.commit({("t", 0): 150})
    resumed = bus.consumer("g", ["t"]).poll(1000, 0.05)
    assert [r.offset for r in resumed] == list(range(150, 200))


def test_concurrent_reader_sees_only_whole_records(tmp_path: Path) -> None:
    bus = FileLogBus(tmp_path)
    bus.ensure_topics(["t"], 2)
    total = 20_000
    done = threading.Event()

    def write() -> None:
        producer = bus.producer(delivery_timeout_s=1)
        for i in range(total):
            producer.publish("t", str(i).encode() * 5, str(i % 50).encode())
            producer.poll()
        producer.flush(1)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    consumer = bus.consumer("g", ["t"])
    seen: list[int] = []

    def read(batch: int) -> int:
        records = consumer.poll(batch, 0.05)
        for record in records:
            text = record.value.decode()
            n = int(text[: len(text) // 5])
            assert text == str(n) * 5
            seen.append(n)
        return len(records)

    while not done.is_set():
        read(1000)
    writer.join()
    while read(100_000):
        pass
    assert sorted(seen) == list(range(total))


def test_a_missing_topic_is_a_clear_error(tmp_path: Path) -> None:
    from fraudctl.errors import UsageError

    with pytest.raises(UsageError, match="does not exist"):
        FileLogBus(tmp_path).consumer("g", ["nope"])
