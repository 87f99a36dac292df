"""Small ports the services talk to; adapters implement them for each backend."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from fraudctl.model import LoadedModel

TopicPartition = tuple[str, int]

# The freshness mark materialize raises and serving reads: the newest event time
# written to the online store (a mark of the dedupe store; see :class:`Marks`).
ONLINE_NEWEST_MARK = "online_newest_event_ts"


class Marks(Protocol):
    """Monotonic named marks beside the dedupe state (freshness watermarks)."""

    def get_mark(self, name: str) -> float | None: ...

    def raise_mark(self, name: str, value: float) -> None: ...


class Record(NamedTuple):
    """One message read from the bus."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int


@dataclass
class DeliveryStats:
    """What the bus confirmed; updated as delivery reports arrive."""

    acknowledged: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    acknowledged_by_topic: Counter[str] = field(default_factory=Counter)
    failed_by_topic: Counter[str] = field(default_factory=Counter)

    def success(self, topic: str, n: int = 1) -> None:
        self.acknowledged += n
        self.acknowledged_by_topic[topic] += n

    def failure(self, topic: str, reason: str, n: int = 1) -> None:
        self.failed += n
        self.failed_by_topic[topic] += n
        self.errors[reason] += n


@dataclass(frozen=True)
class Damage:
    """A region of a log segment that holds no valid frame (the embedded bus; a Kafka
    broker checks its own batches and never hands out damage)."""

    path: str
    byte: int  # where the damaged bytes start in the file
    length: int  # how many bytes
    kind: str  # "corrupt": between valid frames · "tail": after the last valid frame
    first_offset: int  # the offset the first unreadable record had
    records: int | None  # records unreadable (None at a tail: not knowable)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        held = "an unknown number of" if self.records is None else str(self.records)
        return (
            f"{self.path} at byte {self.byte}: {self.length} damaged bytes ({self.kind}), "
            f"{held} records from offset {self.first_offset}"
        )


class BusProducer(Protocol):
    @property
    def stats(self) -> DeliveryStats:
        """Deliveries confirmed so far (exact once ``flush`` returned 0)."""

    def publish(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: dict[str, bytes] | None = None,
    ) -> None:
        """Hand one message over; delivery is confirmed later through ``stats``."""

    def publish_batch(self, topic: str, messages: list[tuple[bytes, bytes | None]]) -> None:
        """Hand over many (value, key) messages at once: the hot path of a producer."""

    def poll(self) -> None:
        """Serve delivery reports without blocking."""

    def flush(self, timeout_s: float) -> int:
        """Wait for every message in flight; return how many are still not confirmed."""

    def in_flight(self) -> int: ...

    def close(self) -> None: ...


class BusConsumer(Protocol):
    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """The next records after the consumer's position (at most ``max_records``)."""

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Durably record, per partition, the offset of the next record to read."""

    def committed(self) -> dict[TopicPartition, int]: ...

    def last_values(self) -> dict[TopicPartition, bytes]:
        """The value of the last record of each non-empty partition."""

    def damage(self) -> list[Damage]:
        """Damaged regions of the log read around so far, each once."""

    def end_offsets(self, exact: bool = True) -> dict[TopicPartition, int]:
        """Per partition, the offset the next published record will get.  ``exact=False``
        may trust a broker's cheaper answer (good enough for a lag gauge)."""

    def close(self) -> None: ...


class EventBus(Protocol):
    """A partitioned, keyed, append-only log with consumer groups (Kafka semantics)."""

    address: str

    def ensure_topics(self, topics: list[str], partitions: int) -> list[str]:
        """Create the missing topics; return the ones created."""

    def producer(self, *, delivery_timeout_s: float) -> BusProducer: ...

    def consumer(
        self, group: str, topics: list[str], share: tuple[int, int] = (0, 1)
    ) -> BusConsumer:
        """Reads the partitions of ``topics`` whose number ``p`` has
        ``p % share[1] == share[0]`` (all of them by default), from ``group``'s
        committed offsets: consumers with different shares of one group split the work."""
        ...


class ModelRegistry(Protocol):
    """Registered versions of one model, the aliases that point at them, their tags, and
    tracked runs (MLflow: ``adapters/registry.py``; in memory: ``tests/fakes.py``).
    Every call is one bounded unit of work; an unreachable registry raises
    ``BackendUnavailable`` naming it."""

    @property
    def model_name(self) -> str: ...

    @property
    def where(self) -> str:
        """Where the registry is, for messages (credentials masked)."""
        ...

    def aliases(self, names: Iterable[str]) -> dict[str, str | None]:
        """The version each alias points at (None: no such alias, or no model yet)."""
        ...

    def has_version(self, version: str) -> bool: ...

    def set_alias(self, alias: str, version: str) -> None: ...

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None: ...

    def version_tags(self, version: str) -> dict[str, str]: ...

    def lineage(self, version: str) -> dict[str, str]:
        """The tags of the run that registered ``version`` (training window, data)."""
        ...

    def load(self, version: str, alias: str) -> LoadedModel:
        """The version as a model that scores (cached locally; versions never change)."""
        ...

    def log_run(
        self,
        experiment: str,
        name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        artifacts: Mapping[Path, str],
    ) -> str:
        """One tracked run (``artifacts``: file → directory in the run); its id."""
        ...
