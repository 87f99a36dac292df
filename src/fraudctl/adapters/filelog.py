"""The embedded event bus: a durable, partitioned, append-only log on the local disk,
with the same contract as Kafka (keyed partitioning, per-partition order, consumer
groups with committed offsets, at-least-once delivery).

Layout under ``root``::

    <topic>/meta.json                     {"partitions": N, "format": 2}
    <topic>/<partition>/<base>.log        segments, named by the offset of their first record
    <topic>/<partition>/.lock             writers hold it (flock) while appending
    <topic>/<partition>/quarantine/       bytes a writer cut off a torn tail (+ a JSON note)
    _groups/<group>.json                  committed offsets (+ the byte position as a hint)
    _groups/<group>.owner                 flocked by the one consumer of the group

A record is framed as ``crc32, length, offset`` then ``timestamp_ms, key_len,
headers_len, key, headers (JSON), value``; the CRC covers the length, the offset and the
body.  Each frame carries its own offset (as Kafka's batches do), so damage never
renumbers what follows it.  Writers append under an exclusive lock and fsync before a
record counts as acknowledged.

Damage is read around, never cut away: a frame that fails its CRC is skipped and the
reader resynchronises on the next valid frame (the damaged length field is tried first,
then every byte), and reports the damaged region with its file, byte position and the
offsets it held (known from the offsets on either side).  Only a *tail* — bytes after the
last valid frame of the newest segment that contain no valid frame — may be removed, by
a writer holding the partition's lock (so no write is in progress), and only after
copying them to ``quarantine/``.  Readers report such a tail once no writer holds the
lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraudctl.errors import BackendUnavailable, UsageError
from fraudctl.ports import Damage, DeliveryStats, Record, TopicPartition

FORMAT = 2
FRAME = struct.Struct("<IIQ")  # crc32(length, offset, body), body length, offset
BODY = struct.Struct("<qHI")  # timestamp_ms, key length, headers length
CRC_FROM = 4  # the CRC covers the frame from the length field on
MAX_BODY = 16 * 1024 * 1024  # a length beyond this is damage, not a record
SEGMENT_BYTES = 64 * 1024 * 1024
FLUSH_RECORDS = 20_000
FLUSH_INTERVAL_S = 0.01
GROUPS_DIR = "_groups"
QUARANTINE_DIR = "quarantine"


def partition_for(key: bytes | None, partitions: int, counter: int) -> int:
    """CRC32 of the key, like librdkafka's default partitioner; keyless round-robin."""
    if key is None:
        return counter % partitions
    return (zlib.crc32(key) & 0xFFFFFFFF) % partitions


def encode(
    value: bytes, key: bytes | None, headers: dict[str, bytes] | None, ts_ms: int, offset: int
) -> bytes:
    key_bytes = key or b""
    header_bytes = (
        json.dumps({k: v.decode("latin-1") for k, v in headers.items()}).encode()
        if headers
        else b""
    )
    body = b"".join(
        (BODY.pack(ts_ms, len(key_bytes), len(header_bytes)), key_bytes, header_bytes, value)
    )
    covered = struct.pack("<IQ", len(body), offset) + body
    return struct.pack("<I", zlib.crc32(covered)) + covered


@dataclass
class Position:
    """Where the next record of a partition starts."""

    offset: int
    segment: int  # base offset of the segment file
    byte: int


@dataclass
class ScanReport:
    """What a scan found besides records: damage it read around, and a tail."""

    damage: list[Damage] = field(default_factory=list)
    tail: Position | None = None  # where bytes that are not a whole valid frame start
    tail_bytes: int = 0
    tail_path: str = ""


def _segments(directory: Path) -> list[int]:
    return sorted(int(p.stem) for p in directory.glob("*.log"))


def _segment_path(directory: Path, base: int) -> Path:
    return directory / f"{base:020d}.log"


def _frame_at(view: mmap.mmap, pos: int, size: int, expected: int) -> tuple[int, int] | None:
    """(body length, offset) of a valid frame at ``pos``, or None."""
    if size - pos < FRAME.size:
        return None
    crc, length, offset = FRAME.unpack_from(view, pos)
    end = pos + FRAME.size + length
    if length > MAX_BODY or end > size or offset < expected:
        return None
    if zlib.crc32(view[pos + CRC_FROM : end]) != crc:
        return None
    return length, offset


def _resync(view: mmap.mmap, pos: int, size: int, expected: int) -> int | None:
    """The position of the next valid frame after damage at ``pos``, or None."""
    if size - pos >= FRAME.size:  # a damaged body under an intact length: one frame on
        length: int = FRAME.unpack_from(view, pos)[1]
        after: int = pos + FRAME.size + length
        if length <= MAX_BODY and after < size and _frame_at(view, after, size, expected):
            return after
    for candidate in range(pos + 1, size - FRAME.size + 1):
        if _frame_at(view, candidate, size, expected) is not None:
            return candidate
    return None


def scan(
    directory: Path,
    start: Position,
    limit: int | None = None,
    report: ScanReport | None = None,
) -> Iterator[tuple[Position, bytes]]:
    """Yield (position, frame body) of each valid record from ``start`` on, reading
    around damage (recorded in ``report``); stop at the end, or at a tail of bytes that
    are not a whole valid frame (a write in progress, or a torn write)."""
    segments = [s for s in _segments(directory) if s >= start.segment] or [start.segment]
    expected = start.offset
    produced = 0
    for index, base in enumerate(segments):
        path = _segment_path(directory, base)
        if not path.exists():
            return
        newest = index + 1 == len(segments)
        pos = start.byte if base == start.segment else 0
        expected = max(expected, base)
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size <= pos:
                continue
            with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as view:
                while pos < size:
                    frame = _frame_at(view, pos, size, expected)
                    if frame is None:
                        resumed = _resync(view, pos, size, expected)
                        if resumed is None and newest:
                            if report is not None:
                                report.tail = Position(expected, base, pos)
                                report.tail_bytes = size - pos
                                report.tail_path = str(path)
                            return
                        if resumed is None:  # the rest of a sealed segment
                            lost_to = segments[index + 1]
                            length = size - pos
                        else:
                            lost_to = int(FRAME.unpack_from(view, resumed)[2])
                            length = resumed - pos
                        if report is not None:
                            report.damage.append(
                                Damage(
                                    str(path), pos, length, "corrupt", expected, lost_to - expected
                                )
                            )
                        if resumed is None:
                            break
                        pos, expected = resumed, lost_to
                        continue
                    length, offset = frame
                    end = pos + FRAME.size + length
                    yield Position(offset, base, pos), view[pos + FRAME.size : end]
                    expected = offset + 1
                    pos = end
                    produced += 1
                    if limit is not None and produced >= limit:
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


def _after(position: Position, body: bytes) -> Position:
    return Position(position.offset + 1, position.segment, position.byte + FRAME.size + len(body))


def end_position(
    directory: Path, hint: Position | None = None, report: ScanReport | None = None
) -> Position:
    """Where the next record of a partition goes: after the last valid record, or where
    a tail starts (``report.tail``)."""
    segments = _segments(directory)
    base = segments[-1] if segments else 0
    start = hint if hint is not None and hint.segment == base else Position(base, base, 0)
    report = report if report is not None else ScanReport()
    last = start
    for position, body in scan(directory, start, report=report):
        last = _after(position, body)
    return report.tail if report.tail is not None else last


@contextmanager
def _no_writer(directory: Path) -> Iterator[bool]:
    """Hold the partition's lock shared if no writer holds it (True), else yield False.
    A reader that never wrote needs no write access: no lock file means no writer."""
    try:
        fd = os.open(directory / ".lock", os.O_RDONLY)
    except FileNotFoundError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def settled_tail(directory: Path, start: Position) -> Damage | None:
    """A tail that no write in progress explains: scanned again under the partition's
    lock, it is still there."""
    with _no_writer(directory) as idle:
        if not idle:
            return None
        report = ScanReport()
        for _ in scan(directory, start, report=report):
            pass
        if report.tail is None:
            return None
        return Damage(
            report.tail_path, report.tail.byte, report.tail_bytes, "tail", report.tail.offset, None
        )


@dataclass
class PartitionCheck:
    topic: str
    partition: int
    records: int = 0
    damage: list[Damage] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "records": self.records,
            "damage": [d.as_dict() for d in self.damage],
            "quarantined": self.quarantined,
        }


def check(root: Path) -> list[PartitionCheck]:
    """Verify every frame of every segment of every topic under ``root``."""
    results = []
    for meta in sorted(root.glob("*/meta.json")):
        topic = meta.parent.name
        partitions = _read_meta(meta)
        for p in range(partitions):
            directory = meta.parent / str(p)
            result = PartitionCheck(topic, p)
            report = ScanReport()
            last = Position(0, 0, 0)
            for position, body in scan(directory, Position(0, 0, 0), report=report):
                result.records += 1
                last = _after(position, body)
            result.damage = list(report.damage)
            if report.tail is not None:
                tail = settled_tail(directory, report.tail or last)
                if tail is not None:
                    result.damage.append(tail)
            for note in sorted((directory / QUARANTINE_DIR).glob("*.json")):
                result.quarantined.append(json.loads(note.read_text()))
            results.append(result)
    return results


def _read_meta(meta: Path) -> int:
    data = json.loads(meta.read_text())
    if data.get("format") != FORMAT:
        raise UsageError(
            f"the embedded bus topic at {meta.parent} was written by an earlier fraudctl "
            f"(log format {data.get('format', 1)}, this one reads {FORMAT})",
            hint=f"move it away (`mv {meta.parent} {meta.parent}.old`) and produce again",
        )
    partitions: int = data["partitions"]
    return partitions


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
        return _read_meta(meta)

    def ensure_topics(self, topics: list[str], partitions: int) -> list[str]:
        created = []
        for topic in topics:
            directory = self.root / topic
            meta = directory / "meta.json"
            if meta.is_file():
                _read_meta(meta)
                continue
            created.append(topic)
            for p in range(partitions):
                (directory / str(p)).mkdir(parents=True, exist_ok=True)
            tmp = directory / "meta.json.tmp"
            tmp.write_text(json.dumps({"partitions": partitions, "format": FORMAT}))
            tmp.replace(meta)
        return created

    def producer(self, *, delivery_timeout_s: float) -> FileLogProducer:
        return FileLogProducer(self)

    def consumer(
        self, group: str, topics: list[str], share: tuple[int, int] = (0, 1)
    ) -> FileLogConsumer:
        return FileLogConsumer(self, group, topics, share)


Pending = tuple[bytes, bytes | None, dict[str, bytes] | None, int]  # value, key, headers, ts


class _PartitionWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.end: Position | None = None
        # Tails this writer moved to quarantine (their notes), for the producer's stats.
        self.quarantined: list[dict[str, Any]] = []

    @contextmanager
    def locked(self) -> Iterator[Position]:
        with (self.directory / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                # Another process may have appended since we last held the lock.
                report = ScanReport()
                end = end_position(self.directory, self.end, report)
                if report.tail is not None:
                    self._quarantine_tail(report)
                self.end = end
                yield end
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _quarantine_tail(self, report: ScanReport) -> None:
        """Under the lock no write is in progress, so the tail is a torn write (or damage
        at the very end): keep its bytes in quarantine, then cut them off."""
        assert report.tail is not None
        path = Path(report.tail_path)
        with path.open("r+b") as handle:
            handle.seek(report.tail.byte)
            data = handle.read()
            folder = self.directory / QUARANTINE_DIR
            folder.mkdir(exist_ok=True)
            stem = f"{path.stem}-{report.tail.byte:012d}-{time.time_ns()}"
            (folder / f"{stem}.bin").write_bytes(data)
            note = {
                "segment": str(path),
                "byte": report.tail.byte,
                "bytes": len(data),
                "next_offset": report.tail.offset,
                "quarantined_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "file": str(folder / f"{stem}.bin"),
            }
            (folder / f"{stem}.json").write_text(json.dumps(note))
            _fsync_dir(folder)
            handle.truncate(report.tail.byte)
            os.fsync(handle.fileno())
        self.quarantined.append(note)

    def append(self, pending: list[Pending]) -> None:
        with self.locked() as durable_end:
            end = durable_end
            if end.byte >= SEGMENT_BYTES:  # roll: a new segment named by its first offset
                end = Position(end.offset, end.offset, 0)
            data = b"".join(
                encode(value, key, headers, ts_ms, end.offset + i)
                for i, (value, key, headers, ts_ms) in enumerate(pending)
            )
            fd = os.open(
                _segment_path(self.directory, end.segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND
            )
            try:
                # A write may take fewer bytes than given (a disk filling up): what was
                # not written is not acknowledged, so write until done or an error.
                left = memoryview(data)
                while left:
                    left = left[os.write(fd, left) :]
                os.fsync(fd)
            except OSError:
                # None of this batch is acknowledged, so none of it may be read either:
                # cut back what it wrote (under the lock, past every acknowledged byte).
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, end.byte)
                raise
            finally:
                os.close(fd)
            self.end = Position(end.offset + len(pending), end.segment, end.byte + len(data))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileLogProducer:
    """Buffers per partition; a batch is acknowledged once it is written and fsynced."""

    def __init__(self, bus: FileLogBus) -> None:
        self.bus = bus
        self._stats = DeliveryStats()
        self._writers: dict[TopicPartition, _PartitionWriter] = {}
        self._buffers: dict[TopicPartition, list[Pending]] = {}
        self._partitions: dict[str, int] = {}
        self._buffered = 0
        self._counter = 0
        self._last_flush = time.monotonic()

    @property
    def stats(self) -> DeliveryStats:
        return self._stats

    @property
    def quarantined(self) -> list[dict[str, Any]]:
        """Torn tails this producer's writers moved to quarantine before appending."""
        return [note for writer in self._writers.values() for note in writer.quarantined]

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
        buffer = self._buffers.get(tp)
        if buffer is None:
            buffer = self._buffers[tp] = []
        buffer.append((value, key, headers, int(time.time() * 1000)))
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
        for tp, pending in self._buffers.items():
            if not pending:
                continue
            writer = self._writers.get(tp)
            if writer is None:
                writer = self._writers[tp] = _PartitionWriter(self.bus.root / tp[0] / str(tp[1]))
            try:
                writer.append(pending)
                self._stats.success(tp[0], len(pending))
            except OSError as exc:
                # Nothing of a failed batch counts: a partial write is a tail the next
                # append quarantines, and none of it was acknowledged.
                writer.end = None
                self._stats.failure(tp[0], f"write failed: {exc.strerror}", len(pending))
            pending.clear()
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
        self._damage: dict[tuple[str, int], Damage] = {}
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
        try:
            data: dict[str, dict[str, int]] = json.loads(self._offsets_path.read_text())
            if not all(isinstance(v.get("offset"), int) for v in data.values()):
                raise ValueError("an entry without an integer offset")
        except (ValueError, AttributeError) as exc:
            raise BackendUnavailable(
                f"the committed offsets of group {self.group!r} in {self._offsets_path} "
                f"are not readable ({exc})",
                hint="restore the file, or delete it to read the bus again from the start "
                "(dedupe keeps the stores exact)",
            ) from exc
        return data

    def _seek(self, tp: TopicPartition, offset: int, hint: dict[str, int] | None) -> Position:
        if hint is not None and "segment" in hint:
            return Position(offset, hint["segment"], hint["byte"])
        for found, _body in scan(self._dir(tp), Position(0, 0, 0)):
            if found.offset >= offset:
                return found
        return end_position(self._dir(tp))

    def damage(self) -> list[Damage]:
        """Damaged regions this consumer read around (each once)."""
        return list(self._damage.values())

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
            report = ScanReport()
            for position, body in scan(self._dir(tp), start, limit=want, report=report):
                out.append(decode(tp[0], tp[1], position.offset, body))
                self._positions[tp] = _after(position, body)
            for damage in report.damage:
                self._damage.setdefault((damage.path, damage.byte), damage)
            if report.tail is not None:
                self._positions[tp] = report.tail  # past damage read around before it
                key = (report.tail_path, report.tail.byte)
                if key not in self._damage:
                    tail = settled_tail(self._dir(tp), report.tail)
                    if tail is not None:
                        self._damage[key] = tail
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
