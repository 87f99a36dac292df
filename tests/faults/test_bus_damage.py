"""Damage to the embedded log: byte flips, torn tails and truncation never cost a record
that the damage did not touch, are reported with file and byte, and are never cut away.

The checker is independent of the reader under test: before the damage it records where
every acknowledged record's frame lies (by scanning the intact log), so it knows exactly
which records the damaged bytes touched; every other acknowledged record must be read
exactly once, before and after the next write."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from pathlib import Path

import pytest

from fraudctl.adapters import filelog
from fraudctl.adapters.filelog import FRAME, FileLogBus, Position, scan
from fraudctl.config import load_settings
from tests.conftest import RunCli

TOPIC = "t"


def produce(bus: FileLogBus, values: list[bytes], batch: int = 97) -> None:
    producer = bus.producer(delivery_timeout_s=1)
    for i, value in enumerate(values):
        producer.publish(TOPIC, value, value[-2:])
        if i % batch == 0:
            producer.flush(1)
    producer.flush(1)
    assert producer.stats.acknowledged == len(values)


def frames(directory: Path, topic: str = TOPIC) -> dict[bytes, tuple[Path, int, int]]:
    """value → (segment, first byte, end byte) of its frame, read off the intact log."""
    where = {}
    for position, body in scan(directory, Position(0, 0, 0)):
        record = filelog.decode(topic, 0, position.offset, body)
        path = directory / f"{position.segment:020d}.log"
        where[record.value] = (path, position.byte, position.byte + FRAME.size + len(body))
    return where


def read_all(bus: FileLogBus) -> tuple[list[bytes], list[filelog.Damage]]:
    consumer = bus.consumer("g-" + uuid.uuid4().hex, [TOPIC])
    values: list[bytes] = []
    while batch := consumer.poll(500, 0.01):
        values += [r.value for r in batch]
    return values, consumer.damage()


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filelog, "SEGMENT_BYTES", 30_000)


@pytest.mark.parametrize("seed", range(24))
def test_a_byte_flip_costs_only_the_records_it_touched(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    bus = FileLogBus(tmp_path)
    bus.ensure_topics([TOPIC], 1)
    acked = [f"event-{seed}-{i:05d}-{'x' * rng.randrange(0, 300)}".encode() for i in range(1500)]
    produce(bus, acked)
    directory = tmp_path / TOPIC / "0"
    where = frames(directory)
    segments = sorted(directory.glob("*.log"))
    assert len(segments) > 3
    segment = rng.choice(segments)
    size = segment.stat().st_size
    flipped_at = rng.randrange(0, size - 4)
    data = bytearray(segment.read_bytes())
    for i in range(4):
        data[flipped_at + i] ^= rng.randrange(1, 256)
    segment.write_bytes(bytes(data))
    touched = {
        v
        for v, (path, start, end) in where.items()
        if path == segment and start < flipped_at + 4 and flipped_at < end
    }
    assert touched

    values, damage = read_all(bus)
    counts = Counter(values)
    assert max(counts.values()) == 1
    assert set(values) == set(acked) - touched
    assert len(damage) == 1
    region = damage[0]
    assert region.path == str(segment)
    assert region.byte <= flipped_at
    if region.records is not None:
        assert region.records == len(touched)
    else:  # only the very end of the newest segment can hide how many it held
        assert region.kind == "tail" and segment == segments[-1]

    # The next write never cuts away what follows damage; the touched bytes stay on disk
    # or in quarantine.
    later = [f"later-{seed}-{i}".encode() for i in range(300)]
    produce(bus, later)
    values, _ = read_all(bus)
    assert Counter(values) == Counter((set(acked) - touched) | set(later))
    kept = segment.read_bytes()
    quarantined = b"".join(p.read_bytes() for p in (directory / "quarantine").glob("*.bin"))
    assert bytes(data[flipped_at : flipped_at + 4]) in kept + quarantined


def test_a_torn_tail_is_reported_quarantined_by_the_next_writer_and_nothing_else_moves(
    tmp_path: Path,
) -> None:
    bus = FileLogBus(tmp_path)
    bus.ensure_topics([TOPIC], 1)
    acked = [f"v{i}".encode() for i in range(200)]
    produce(bus, acked)
    directory = tmp_path / TOPIC / "0"
    newest = sorted(directory.glob("*.log"))[-1]
    torn = filelog.encode(b"half", b"k", None, 0, 200)[:11]
    with newest.open("ab") as handle:  # a producer that crashed in the middle of a write
        handle.write(torn)
    values, damage = read_all(bus)
    assert values == acked
    assert [(d.kind, d.byte, d.length) for d in damage] == [
        ("tail", newest.stat().st_size - len(torn), len(torn))
    ]
    produce(bus, [b"after"])
    values, damage = read_all(bus)
    assert values == [*acked, b"after"] and damage == []
    notes = list((directory / "quarantine").glob("*.json"))
    assert len(notes) == 1
    assert (directory / "quarantine" / f"{notes[0].stem}.bin").read_bytes() == torn


def test_a_write_in_progress_is_not_reported_as_damage(tmp_path: Path) -> None:
    bus = FileLogBus(tmp_path)
    bus.ensure_topics([TOPIC], 1)
    produce(bus, [b"a", b"b"])
    directory = tmp_path / TOPIC / "0"
    writer = filelog._PartitionWriter(directory)
    with writer.locked():  # a writer holds the lock and has written half a frame
        with sorted(directory.glob("*.log"))[-1].open("ab") as handle:
            handle.write(filelog.encode(b"c", None, None, 0, 2)[:9])
        values, damage = read_all(bus)
    assert values == [b"a", b"b"] and damage == []


def test_cli_materialize_reports_damage_with_exit_4_and_a_rerun_loses_nothing(
    cli: RunCli,
) -> None:
    made = cli("produce", "--count", "3000", "--rate", "0", "--label-delay", "0", "--json")
    assert made.code == 0, made.err
    home = load_settings().settings.home
    segment = home / "bus" / "transactions" / "0" / f"{0:020d}.log"
    size_before = segment.stat().st_size
    data = bytearray(segment.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4] = bytes(b ^ 0xFF for b in data[middle : middle + 4])
    segment.write_bytes(bytes(data))

    checked = cli("bus", "check", "--json")
    assert checked.code == 4, checked.err
    document = checked.json()
    assert document["damaged_regions"] == 1 and document["error"]["exit_code"] == 4
    region = next(d for p in document["partitions"] for d in p["damage"])
    assert region["path"] == str(segment) and region["records"] in (1, 2)

    first = cli("materialize", "--json")
    assert first.code == 4, first.err
    summary = first.json()
    assert summary["error"]["exit_code"] == 4
    assert "damaged region" in summary["error"]["message"]
    lost = sum(d["records"] for d in summary["bus_damage"])
    assert summary["valid"] == 3000 - lost
    assert str(segment) in first.err

    again = cli("produce", "--count", "300", "--rate", "0", "--label-delay", "0", "--json")
    assert again.code == 0, again.err
    assert segment.stat().st_size >= size_before  # nothing after the damage was cut
    second = cli("materialize", "--json")
    assert second.code == 0, second.err
    assert second.json()["valid"] == 300


def test_cli_truncated_last_bytes_are_reported_not_silent(cli: RunCli) -> None:
    made = cli("produce", "--count", "500", "--rate", "0", "--label-delay", "0", "--json")
    assert made.code == 0, made.err
    home = load_settings().settings.home
    segment = next(
        s for s in sorted((home / "bus" / "transactions").glob("*/*.log")) if s.stat().st_size
    )
    with segment.open("r+b") as handle:
        handle.truncate(segment.stat().st_size - 5)
    result = cli("materialize", "--json")
    assert result.code == 4, result.err
    (region,) = result.json()["bus_damage"]
    assert region["kind"] == "tail" and region["path"] == str(segment)
    assert cli("bus", "check").code == 4
    # The next write keeps the torn bytes in quarantine; the check is clean again.
    assert cli("produce", "--count", "50", "--rate", "0", "--json").code == 0
    clean = cli("bus", "check", "--json")
    assert clean.code == 0, clean.err
    assert clean.json()["quarantined"] >= 1


def test_damage_injected_under_a_live_producer_costs_only_what_it_touched(
    cli: RunCli,
) -> None:
    """A producer keeps writing while bytes it already wrote are flipped, and
    `materialize --follow` reads through the damage: every acknowledged event that the
    damage did not touch ends up offline exactly once."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from fraudctl.adapters.offline import open_offline

    cli("produce", "--count", "10", "--rate", "0", "--json")  # topics, settings home
    settings = load_settings().settings
    env = os.environ.copy()

    def background(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "fraudctl", *args, "--json"], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    producer = background("produce", "--rate", "1500", "--duration", "10", "--label-delay", "0")
    segment = settings.home / "bus" / "transactions" / "0" / f"{0:020d}.log"
    deadline = time.monotonic() + 30
    while not segment.exists() or segment.stat().st_size < 60_000:
        assert time.monotonic() < deadline and producer.poll() is None
        time.sleep(0.1)
    where = frames(segment.parent, "transactions")
    with segment.open("r+b") as handle:  # 4 bytes in the middle of what is written
        handle.seek(30_000)
        flipped = bytes(b ^ 0x5A for b in handle.read(4))
        handle.seek(30_000)
        handle.write(flipped)
    touched = {v for v, (_p, start, end) in where.items() if start < 30_004 and end > 30_000}
    follower = background("materialize", "--follow", "--flush-interval", "1", "--metrics-port", "0")
    out, err = producer.communicate(timeout=120)
    assert producer.returncode == 0, err
    acknowledged = json.loads(out)["acknowledged"]
    bus = FileLogBus(settings.home / "bus")
    ends = bus.consumer("ends", ["transactions"]).end_offsets()
    offsets = settings.home / "bus" / "_groups" / f"{settings.consumer_group}.json"
    deadline = time.monotonic() + 180
    while True:  # the follower has committed everything the producer wrote
        assert follower.poll() is None, follower.communicate()
        assert time.monotonic() < deadline, "the follower did not catch up in 180 s"
        committed = json.loads(offsets.read_text()) if offsets.is_file() else {}
        if all(committed.get(f"{t}/{p}", {}).get("offset", 0) >= e for (t, p), e in ends.items()):
            break
        time.sleep(0.5)
    follower.send_signal(signal.SIGINT)
    out, err = follower.communicate(timeout=120)
    assert follower.returncode == 4, err
    summary = json.loads(out)
    (region,) = summary["bus_damage"]
    assert region["path"] == str(segment) and region["records"] == len(touched)
    table = open_offline(settings).read("events")
    counts = Counter(table.column("event_id").to_pylist())
    assert max(counts.values()) == 1
    assert len(counts) == acknowledged + 10 - len(touched)
