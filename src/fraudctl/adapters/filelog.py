"""The embedded event bus: a durable, partitioned, append-only log on the local disk,
with the same contract as Kafka (keyed partitioning, per-partition order, consumer
groups with committed offsets, at-least-once delivery).

Layout under ``root``::

    <topic>/meta.json                     {"partitions": N}
    <topic>/<partition>/<base>.log        segments, named by the offset of their first record
    <topic>/<partition>/.lock             writers hold it (flock) while appending
    _groups/<group>.json                  committed offsets (+ the byte position as a hint)

A record is framed as ``length, crc32`` then ``timestamp_ms, key_len, headers_len, key,
headers (JSON), value``.  Writers append under an exclusive lock and fsync before a
record counts as acknowledged; readers need no lock: a frame that is incomplete or
fails its CRC marks the end of what is durable (a writer truncates such a torn tail
when it next opens the partition).
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fraudctl.errors import UsageError
from fraudctl.ports import DeliveryStats, Record, TopicPartition

FRAME = struct.Struct("<II")  # body length, crc32(body)
BODY = struct.Struct("<qHI")  # timestamp_ms, key length, headers length
SEGMENT_BYTES = 64 * 1024 * 1024
FLUSH_RECORDS = 20_000
FLUSH_INTERVAL_S = 0.01
GROUPS_DIR = "_groups"


def partition_for(key: bytes | None, partitions: int, counter: int) -> int:
    """CRC32 of the key, like librdkafka's default partitioner; keyless round-robin."""
    if key is None:
        return counter % partitions
    return (zlib.crc32(key) & 0xFFFFFFFF) % partitions


def encode(value: bytes, key: bytes | None, headers: dict[str, bytes] | None, ts_ms: int) -> bytes:
    key_bytes = key or b""
    header_bytes = (
        json.dumps({k: v.decode("latin-1") for k, v in headers.items()}).encode()
        if headers
        else b""
    )
    body = b"".join(
        (BODY.pack(ts_ms, len(key_bytes), len(header_bytes)), key_bytes, header_bytes, value)
    )
    return FRAME.pack(len(body), zlib.crc32(body)) + body


@dataclass
class Position:
    """Where the next record of a partition starts."""

    offset: int
    segment: int  # base offset of the segment file
    byte: int


def _segments(directory: Path) -> list[int]:
    return sorted(int(p.stem) for p in directory.glob("*.log"))


def _segment_path(directory: Path, base: int) -> Path:
    return directory / f"{base:020d}.log"


READ_CHUNK = 1 << 20


def scan(
    directory: Path, start: Position, limit: int | None = None
) -> Iterator[tuple[Position, bytes]]:
    """Yield (position, frame body) of each durable record from ``start`` on, reading in
    chunks; stop at the end of what is durable (an incomplete or corrupt frame)."""
    segments = [s for s in _segments(directory) if s >= start.segment] or [start.segment]
    offset = start.offset
    produced = 0
    for index, base in enumerate(segments):
        path = _segment_path(directory, base)
        if not path.exists():
            return
        byte = start.byte if base == start.segment else 0
        clean_end = True
        with path.open("rb") as handle:
            handle.seek(byte)
            data = b""
            pos = 0
            while True:
                if len(data) - pos < FRAME.size:
                    data = data[pos:] + handle.read(READ_CHUNK)
                    pos = 0
                    if len(data) < FRAME.size:
                        clean_end = not data
                        break
                length, crc = FRAME.unpack_from(data, pos)
                end = pos + FRAME.size + length
                if end > len(data):
                    more = handle.read(max(READ_CHUNK, end - len(data)))
                    if not more or len(data) + len(more) < end:
                        clean_end = False
                        break
                    data = data[pos:] + more
                    end -= pos
                    pos = 0
                body = data[pos + FRAME.size : end]
                if zlib.crc32(body) != crc:
                    clean_end = False
                    break
                yield Position(offset, base, byte), body
                offset += 1
                produced += 1
                byte += end - pos
                pos = end
                if limit is not None and produced >= limit:
                    return
        if not clean_end:
            return  # an incomplete or torn frame: nothing after it is durable yet
        if index + 1 < len(segments) and offset != segments[index + 1]:
            return


def decode(topic: str, partition: int, offset: int, body: bytes) -> Record:
    ts_ms, key_len, headers_len = BODY.unpack_from(body, 0)
    start = BODY.size
    key = body[start : start + key_len] if key_len else None
    start += key_len
    headers = (
        {k: v.encode("latin-1") for k, v in json.loads(body[start : start + headers_len]).items()}
        if headers_len
        else {}
    )
    start += headers_len
    return Record(topic, partition, offset, key, body[start:], headers, ts_ms)


def end_position(directory: Path, hint: Position | None = None) -> Position:
    """The position after the last durable record of a partition."""
    segments = _segments(directory)
    base = segments[-1] if segments else 0
    start = hint if hint is not None and hint.segment == base else Position(base, base, 0)
    last = start
    for position, body in scan(directory, start):
        last = Position(
            position.offset + 1, position.segment, position.byte + FRAME.size + len(body)
        )
    return last


class FileLogBus:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.address = str(root)

    def partitions(self, topic: str) -> int:
        meta = self.root / topic / "meta.json"
        if not meta.is_file():
            raise UsageError(
                f"topic {topic!r} does not exist in the embedded bus at {self.root}",
                hint="produce to it first (`fraudctl produce`)",
            )
        partitions: int = json.loads(meta.read_text())["partitions"]
        return partitions

    def ensure_topics(self, topics: list[str], partitions: int) -> list[str]:
        created = []
        for topic in topics:
            directory = self.root / topic
            meta = directory / "meta.json"
            if meta.is_file():
                continue
            created.append(topic)
            for p in range(partitions):
                (directory / str(p)).mkdir(parents=True, exist_ok=True)
            tmp = directory / "meta.json.tmp"
            tmp.write_text(json.dumps({"partitions": partitions}))
            tmp.replace(meta)
        return created

    def producer(self, *, delivery_timeout_s: float) -> FileLogProducer:
        return FileLogProducer(self)

    def consumer(
        self, group: str, topics: list[str], share: tuple[int, int] = (0, 1)
    ) -> FileLogConsumer:
        return FileLogConsumer(self, group, topics, share)


class _PartitionWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.end: Position | None = None

    @contextmanager
    def locked(self) -> Iterator[Position]:
        with (self.directory / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                # Another process may have appended since we last held the lock.
                end = end_position(self.directory, self.end)
                self._truncate_torn_tail(end)
                self.end = end
                yield end
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _truncate_torn_tail(self, end: Position) -> None:
        path = _segment_path(self.directory, end.segment)
        if path.exists() and path.stat().st_size > end.byte:
            with path.open("r+b") as handle:
                handle.truncate(end.byte)

    def append(self, frames: list[bytes]) -> None:
        with self.locked() as durable_end:
            end = durable_end
            if end.byte >= SEGMENT_BYTES:  # roll: a new segment named by its first offset
                end = Position(end.offset, end.offset, 0)
            data = b"".join(frames)
            fd = os.open(
                _segment_path(self.directory, end.segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND
            )
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self.end = Position(end.offset + len(frames), end.segment, end.byte + len(data))


class FileLogProducer:
    """Buffers per partition; a batch is acknowledged once it is written and fsynced."""

    def __init__(self, bus: FileLogBus) -> None:
        self.bus = bus
        self._stats = DeliveryStats()
        self._writers: dict[TopicPartition, _PartitionWriter] = {}
        self._buffers: dict[TopicPartition, list[bytes]] = {}
        self._partitions: dict[str, int] = {}
        self._buffered = 0
        self._counter = 0
        self._last_flush = time.monotonic()

    @property
    def stats(self) -> DeliveryStats:
        return self._stats

    def publish(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: dict[str, bytes] | None = None,
    ) -> None:
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = self.bus.partitions(topic)
        self._counter += 1
        tp = (topic, partition_for(key, partitions, self._counter))
        frame = encode(value, key, headers, int(time.time() * 1000))
        buffer = self._buffers.get(tp)
        if buffer is None:
            buffer = self._buffers[tp] = []
        buffer.append(frame)
        self._buffered += 1
        if self._buffered >= FLUSH_RECORDS:
            self._write()

    def publish_batch(self, topic: str, messages: list[tuple[bytes, bytes | None]]) -> None:
        for value, key in messages:
            self.publish(topic, value, key)

    def poll(self) -> None:
        if self._buffered and time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
            self._write()

    def _write(self) -> None:
        for tp, frames in self._buffers.items():
            if not frames:
                continue
            writer = self._writers.get(tp)
            if writer is None:
                writer = self._writers[tp] = _PartitionWriter(self.bus.root / tp[0] / str(tp[1]))
            try:
                writer.append(frames)
                self._stats.success(tp[0], len(frames))
            except OSError as exc:
                self._stats.failure(f"write failed: {exc.strerror}", len(frames))
            frames.clear()
        self._buffered = 0
        self._last_flush = time.monotonic()

    def flush(self, timeout_s: float) -> int:
        self._write()
        return 0

    def in_flight(self) -> int:
        return self._buffered

    def close(self) -> None:
        self._write()


class FileLogConsumer:
    def __init__(
        self, bus: FileLogBus, group: str, topics: list[str], share: tuple[int, int] = (0, 1)
    ) -> None:
        self.bus = bus
        self.group = group
        self.topics = topics
        self._offsets_path = bus.root / GROUPS_DIR / f"{group}.json"
        self._positions: dict[TopicPartition, Position] = {}
        committed = self._load()
        for topic in topics:
            for p in range(bus.partitions(topic)):
                if p % share[1] != share[0]:
                    continue
                hint = committed.get(f"{topic}/{p}")
                self._positions[(topic, p)] = (
                    self._seek((topic, p), hint["offset"], hint)
                    if hint is not None
                    else Position(0, 0, 0)
                )
        self._cursor = 0

    def _dir(self, tp: TopicPartition) -> Path:
        return self.bus.root / tp[0] / str(tp[1])

    def _load(self) -> dict[str, dict[str, int]]:
        if not self._offsets_path.is_file():
            return {}
        data: dict[str, dict[str, int]] = json.loads(self._offsets_path.read_text())
        return data

    def _seek(self, tp: TopicPartition, offset: int, hint: dict[str, int] | None) -> Position:
        if hint is not None and "segment" in hint:
            return Position(offset, hint["segment"], hint["byte"])
        position = Position(0, 0, 0)
        for found, body in scan(self._dir(tp), position, limit=offset):
            position = Position(
                found.offset + 1, found.segment, found.byte + FRAME.size + len(body)
            )
        return end_position(self._dir(tp)) if position.offset < offset else position

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        while True:
            out = self._read(max_records)
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _read(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        partitions = list(self._positions)
        # Round-robin over partitions so no partition starves the others.
        for i in range(len(partitions)):
            tp = partitions[(self._cursor + i) % len(partitions)]
            want = max_records - len(out)
            if want <= 0:
                break
            start = self._positions[tp]
            for position, body in scan(self._dir(tp), start, limit=want):
                out.append(decode(tp[0], tp[1], position.offset, body))
                self._positions[tp] = Position(
                    position.offset + 1,
                    position.segment,
                    position.byte + FRAME.size + len(body),
                )
        self._cursor += 1
        return out

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self._offsets_path.parent.mkdir(parents=True, exist_ok=True)
        # Consumers of one group with different shares commit to the same file.
        with self._offsets_path.with_suffix(".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._load()
            for tp, offset in offsets.items():
                position = self._positions.get(tp)
                entry = {"offset": offset}
                if position is not None and position.offset == offset:
                    entry |= {"segment": position.segment, "byte": position.byte}
                data[f"{tp[0]}/{tp[1]}"] = entry
            tmp = self._offsets_path.with_suffix(f".{os.getpid()}.tmp")
            with tmp.open("w") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(self._offsets_path)

    def committed(self) -> dict[TopicPartition, int]:
        data = self._load()
        return {tp: data.get(f"{tp[0]}/{tp[1]}", {"offset": 0})["offset"] for tp in self._positions}

    def end_offsets(self, exact: bool = True) -> dict[TopicPartition, int]:
        return {tp: end_position(self._dir(tp)).offset for tp in self._positions}

    def last_values(self) -> dict[TopicPartition, bytes]:
        last: dict[TopicPartition, bytes] = {}
        for tp in self._positions:
            segments = _segments(self._dir(tp))
            if not segments:
                continue
            tail = None
            for _position, body in scan(self._dir(tp), Position(segments[-1], segments[-1], 0)):
                tail = body
            if tail is not None:
                last[tp] = decode(tp[0], tp[1], 0, tail).value
        return last

    def close(self) -> None:
        return None
