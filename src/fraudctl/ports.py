"""Small ports the services talk to; adapters implement them for each backend."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from fraudctl.config import Settings
    from fraudctl.features import UserWindow
    from fraudctl.model import LoadedModel

TopicPartition = tuple[str, int]

# The freshness mark materialize raises and serving reads: the newest event time
# written to the online store (a mark of the dedupe store; see :class:`Marks`).
ONLINE_NEWEST_MARK = "online_newest_event_ts"


class Marks(Protocol):
    """Monotonic named marks beside the dedupe state (freshness watermarks)."""

    def get_mark(self, name: str) -> float | None: ...

    def raise_mark(self, name: str, value: float) -> None: ...


class DedupeStore(Marks, Protocol):
    """Where each event id was first accepted, and the freshness marks beside it
    (SQLite or Redis: ``adapters/dedupe.py``; in memory: ``tests/fakes.py``)."""

    def origins(self, event_ids: list[str]) -> dict[str, str]:
        """The recorded first origin of each id that has one."""
        ...

    def record(self, first_origins: Mapping[str, str]) -> None:
        """Record origins for ids that have none yet (an existing record wins)."""
        ...


class RecordLog(Protocol):
    """Append-only JSON records under a prefix: the decision log of ``promote``, the
    drift log.  Records are never rewritten, so concurrent writers lose nothing."""

    def add_record(self, prefix: str, record: dict[str, Any]) -> str:
        """Append one record; where it was written."""
        ...

    def records(self, prefix: str, newest: int | None = None) -> list[dict[str, Any]]:
        """The records under ``prefix``, oldest first (only the ``newest`` few if set)."""
        ...


class OfflineStore(RecordLog, Protocol):
    """Parquet tables of events, labels, features, predictions, written in batches that
    replace an earlier attempt of the same batch (local files or S3:
    ``adapters/offline.py``; the in-memory file system in ``tests/fakes.py``)."""

    uri: str

    def table_uri(self, table: str) -> str: ...

    def read(self, table: str, columns: Iterable[str] | None = None, where: Any = None) -> Any:
        """The rows of ``table`` (an Arrow table; empty when there are none) matching the
        Arrow expression ``where``."""
        ...

    def replace_batch(
        self, topic: str, partition: int, first_offset: int, tables: dict[Any, Any]
    ) -> list[str]:
        """Write one batch's files (planned file → Arrow table) for one source partition,
        replacing an earlier attempt of the same batch; the paths written."""
        ...

    def write_snapshot(self, table: str, hour: str, name: str, rows: Any) -> str: ...

    def copy_file(self, local: Any, key: str) -> str: ...

    def forget_batch(self, topic: str, partition: int, first_offset: int) -> None: ...


class FeatureStore(Protocol):
    """The Feast-backed store of user windows (online: SQLite or Redis) and
    point-in-time features (offline): ``adapters/online.py``; in memory:
    ``tests/fakes.py``.  An unreachable store raises ``BackendUnavailable``."""

    where: str

    def read(self, user_ids: list[str]) -> dict[str, UserWindow]:
        """Every requested user's window (an empty window for a user never written)."""
        ...

    def write(self, windows: dict[str, UserWindow]) -> None: ...

    def backfill(self, offline_uri: str, start: datetime, end: datetime) -> None: ...

    def historical_features(self, entity: Any, view: str, names: Sequence[str]) -> Any: ...


class Lock(Protocol):
    """Mutual exclusion for one kind of work (the promotion of a model): a file lease on
    one host, a Redis key across hosts (``adapters/locks.py``).  ``hold`` waits a
    bounded time and raises ``BackendUnavailable`` when the lock stayed taken."""

    def hold(self) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


class MetricsPusher(Protocol):
    """Batch results as Prometheus gauges (a Pushgateway: ``adapters/metrics.py``)."""

    where: str | None  # None: pushing is off

    def push(self, job: str, grouping: Mapping[str, str], gauges: Sequence[Gauge]) -> str | None:
        """Push (replacing the group's previous gauges); None when pushed (or off), else
        what failed — a result never depends on its push."""
        ...


class DriftReporter(Protocol):
    """Writes the human-readable report of a drift result (Evidently:
    ``adapters/drift_psi.py``): ``features`` are the result's per-feature records (their
    bins, edges and counts), ``threshold`` its threshold — the report renders that one
    computation, never a second one of its own."""

    def write_report(
        self,
        reference: Any,
        current: Any,
        path: Path,
        features: Sequence[Mapping[str, Any]],
        threshold: float,
    ) -> None: ...


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


@dataclass
class ModelRun:
    """Everything one training run records, in the registry's neutral terms: the
    registry turns it into a tracked run and a new registered version."""

    model: Any  # a fitted estimator with ``predict_proba``
    trusted_types: list[str]  # what the serialised model may hold beyond the defaults
    example: Any  # a few rows of model inputs (pandas), the model's input example
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]  # run tags: lineage
    metadata: dict[str, Any]  # stored with the model (threshold, inputs, …)
    version_tags: dict[str, str]  # set on the new version (the run id is added)
    figures: dict[str, Any] = field(default_factory=dict)  # artifact path → figure
    documents: dict[str, Any] = field(default_factory=dict)  # artifact path → JSON value
    tables: dict[str, Any] = field(default_factory=dict)  # artifact path → frame (Parquet)
    datasets: dict[str, Any] = field(default_factory=dict)  # context → training rows (pandas)


@dataclass(frozen=True)
class Registered:
    run_id: str
    experiment_id: str
    version: str


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

    def check(self) -> None:
        """Raise ``BackendUnavailable`` when the registry cannot be reached."""
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

    def register(self, run: ModelRun) -> Registered:
        """Track ``run`` and register its model as a new version (no alias moves)."""
        ...


@dataclass
class ScoringStats:
    """What a scoring client saw: requests answered and failed, their latency, and which
    variant (baseline, canary) answered each."""

    answered: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency_ms: list[float] = field(default_factory=list)  # of the answered requests
    variants: Counter[str] = field(default_factory=Counter)  # of the answered requests


class ScoringClient(Protocol):
    """Calls a running ``fraudctl serve`` for every event, as a payment system would
    (HTTP: ``adapters/serve_client.py``; recording: ``tests/fakes.py``).  ``submit``
    returns at once while fewer than the client's concurrency bound are queued, and
    waits otherwise (backpressure, never an unbounded queue)."""

    url: str

    def submit(self, transaction: bytes) -> None:
        """Score one transaction (its JSON) in the background."""
        ...

    def close(self, timeout_s: float) -> ScoringStats:
        """Wait up to ``timeout_s`` for what is in flight; what was seen (requests still
        unanswered at the deadline count as failed, reason ``timeout``)."""
        ...


@dataclass(frozen=True)
class Sample:
    """One sample of a Prometheus text endpoint (a histogram's buckets are samples too:
    ``NAME_bucket`` with its ``le`` label)."""

    name: str
    labels: Mapping[str, str]
    value: float


class MetricsScraper(Protocol):
    """A Prometheus endpoint, read as Prometheus would (``adapters/metrics.py``): what
    ``fraudctl run``'s live view shows of its children."""

    def scrape(self, url: str) -> list[Sample]:
        """Every sample the endpoint serves now; :class:`BackendUnavailable` when it
        does not answer."""
        ...


class ServingControl(Protocol):
    """A running ``fraudctl serve``, as the canary commands and ``promote`` see it
    (HTTP: ``adapters/serve_client.py``)."""

    url: str

    def status(self, window_s: float) -> dict[str, Any]:
        """The canary status: variants' live figures over the last ``window_s``."""
        ...

    def set_canary(self, weight: float, reason: str) -> dict[str, Any]: ...


class Child(Protocol):
    """A started child process, in a process group of its own."""

    pid: int

    def poll(self) -> int | None:
        """Its exit code once it has exited (negative: the signal that ended it)."""
        ...

    def signal(self, signum: int) -> None:
        """Send ``signum`` to its process group (nothing when it has exited)."""
        ...

    def wait(self, timeout_s: float) -> int | None:
        """Its exit code, waiting up to ``timeout_s``; None if it is still running."""
        ...


class Spawner(Protocol):
    """Starts child processes (the OS: ``adapters/processes.py``; scripted:
    ``tests/fakes.py``), each writing stderr to ``log`` and stdout to ``stdout`` (both
    appended; stdout to ``log`` too when ``stdout`` is None)."""

    def spawn(
        self, argv: Sequence[str], log: Path, env: Mapping[str, str], stdout: Path | None = None
    ) -> Child: ...


@dataclass(frozen=True)
class BrokenRow:
    """A row of a source file its reader could not make into values (not JSON, the
    wrong number of fields): where it is and what it held."""

    row: int  # 1-based: the data row (CSV without its header, Parquet) or the line (JSONL)
    raw: bytes
    reason: str


@dataclass(frozen=True)
class RowChunk:
    """Consecutive rows of a source file, by column, with the row number of each."""

    rows: list[int]
    columns: dict[str, list[Any]]
    broken: list[BrokenRow] = field(default_factory=list)


class RowSource(Protocol):
    """A file of transactions read in chunks, in constant memory (``adapters/source_files``)."""

    @property
    def name(self) -> str:
        """The file's name as DLQ records and summaries give it."""

    @property
    def format(self) -> str:
        """csv | jsonl | parquet."""

    def columns(self) -> list[str]:
        """The file's columns (JSONL: the keys of its first object)."""

    def chunks(self, columns: list[str]) -> Iterable[RowChunk]:
        """Every row, ``columns`` only (a missing value is None), in file order."""


class Backends(Protocol):
    """Every port of the active settings, built once, on first use
    (``fraudctl.bootstrap.Wiring``; in memory: ``tests.fakes.FakeBackends``).  Services
    receive this (or single ports) and never build an adapter themselves."""

    @property
    def settings(self) -> Settings: ...

    @property
    def bus(self) -> EventBus: ...

    @property
    def offline(self) -> OfflineStore: ...

    @property
    def features(self) -> FeatureStore: ...

    @property
    def dedupe(self) -> DedupeStore: ...

    @property
    def registry(self) -> ModelRegistry: ...

    @property
    def promotion_lock(self) -> Lock: ...

    @property
    def pusher(self) -> MetricsPusher: ...

    @property
    def drift_reporter(self) -> DriftReporter: ...

    @property
    def scraper(self) -> MetricsScraper: ...

    def server(self, url: str) -> ServingControl: ...
