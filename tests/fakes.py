"""In-memory stand-ins for fraudctl's ports, for unit tests of the services. Each passes
the same contract suite as the real adapter it stands in for (tests/unit/test_*_contract.py)."""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fraudctl.config import Settings
from fraudctl.errors import BackendUnavailable
from fraudctl.features import UserWindow
from fraudctl.model import LoadedModel
from fraudctl.ports import Gauge, ModelRun, Registered, Sample, ScoringStats


@dataclass
class _Version:
    model: Any
    threshold: float
    run_tags: dict[str, str]
    tags: dict[str, str] = field(default_factory=dict)


class InMemoryRegistry:
    """:class:`fraudctl.ports.ModelRegistry` in a dict."""

    def __init__(self, model_name: str = "fraud-detector") -> None:
        self.model_name = model_name
        self.where = "memory"
        self.versions: dict[str, _Version] = {}
        self.alias_map: dict[str, str] = {}
        self.runs: list[dict[str, Any]] = []
        self.loads = 0
        self._next = itertools.count(1)

    # what train does through MLflow
    def add_version(self, model: Any, threshold: float = 0.5, **run_tags: str) -> str:
        version = str(next(self._next))
        self.versions[version] = _Version(model, threshold, dict(run_tags))
        return version

    def check(self) -> None:
        return None

    def register(self, run: ModelRun) -> Registered:
        version = self.add_version(run.model, float(run.metadata.get("threshold", 0.5)), **run.tags)
        run_id = self.log_run(self.model_name, "train", run.params, run.metrics, run.tags, {})
        self.tag_version(version, {**run.version_tags, "run_id": run_id})
        return Registered(run_id, "0", version)

    def aliases(self, names: Iterable[str]) -> dict[str, str | None]:
        return {str(name): self.alias_map.get(str(name)) for name in names}

    def has_version(self, version: str) -> bool:
        return version in self.versions

    def set_alias(self, alias: str, version: str) -> None:
        if version not in self.versions:
            raise KeyError(version)
        self.alias_map[str(alias)] = version

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        self.versions[version].tags.update(tags)

    def version_tags(self, version: str) -> dict[str, str]:
        return dict(self.versions[version].tags)

    def lineage(self, version: str) -> dict[str, str]:
        return dict(self.versions[version].run_tags)

    def load(self, version: str, alias: str) -> LoadedModel:
        self.loads += 1
        found = self.versions[version]
        return LoadedModel(self.model_name, version, str(alias), found.model, found.threshold)

    def log_run(
        self,
        experiment: str,
        name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        artifacts: Mapping[Path, str],
    ) -> str:
        run_id = f"run-{len(self.runs) + 1}"
        self.runs.append({"id": run_id, "experiment": experiment, "name": name,
                          "params": dict(params), "metrics": dict(metrics), "tags": dict(tags),
                          "artifacts": {str(p): d for p, d in artifacts.items()}})  # fmt: skip
        return run_id


class InMemoryDedupe:
    """:class:`fraudctl.ports.DedupeStore` in dicts."""

    def __init__(self) -> None:
        self.first: dict[str, str] = {}
        self.marks: dict[str, float] = {}

    def origins(self, event_ids: list[str]) -> dict[str, str]:
        return {i: self.first[i] for i in event_ids if i in self.first}

    def record(self, first_origins: Mapping[str, str]) -> None:
        for event_id, origin in first_origins.items():
            self.first.setdefault(event_id, origin)

    def get_mark(self, name: str) -> float | None:
        return self.marks.get(name)

    def raise_mark(self, name: str, value: float) -> None:
        self.marks[name] = max(value, self.marks.get(name, value))


def memory_offline() -> Any:
    """The offline store's own code on fsspec's in-memory file system (no disk): a fresh
    root per call, so stores never see each other's tables."""
    import uuid

    import fsspec
    import pyarrow.fs as pafs

    from fraudctl.adapters.offline import ParquetStore

    filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("memory")))
    root = f"/fraudctl-{uuid.uuid4().hex}"
    filesystem.create_dir(root)
    return ParquetStore(filesystem, root, f"memory://{root}", "memory")


class InMemoryFeatureStore:
    """:class:`fraudctl.ports.FeatureStore`: windows in a dict; the offline side (backfill,
    point-in-time features) read from ``offline`` with pandas' as-of join, the join Feast
    makes (newest row at or before the entity's time, within the view's TTL)."""

    def __init__(self, offline: Any) -> None:
        self.offline = offline
        self.where = "memory"
        self.windows: dict[str, str] = {}

    def read(self, user_ids: list[str]) -> dict[str, UserWindow]:
        return {user: UserWindow.from_json(self.windows.get(user)) for user in user_ids}

    def write(self, windows: dict[str, UserWindow]) -> None:
        for user, window in windows.items():
            self.windows[user] = window.to_json()

    def backfill(self, offline_uri: str, start: datetime, end: datetime) -> None:
        from fraudctl.adapters.feast_repo import USER_STATE_VIEW, VIEW_SOURCES

        source = VIEW_SOURCES[USER_STATE_VIEW]
        frame = self.offline.read(source.table).to_pandas()
        if not len(frame):
            return
        inside = frame[(frame[source.timestamp] >= start) & (frame[source.timestamp] <= end)]
        newest = (
            inside.sort_values([source.timestamp, "created_ts"]).groupby(source.join_key).last()
        )
        for user, row in newest.iterrows():
            self.windows[str(user)] = str(row["window"])

    def historical_features(self, entity: Any, view: str, names: Sequence[str]) -> Any:
        import pandas as pd

        from fraudctl.adapters.feast_repo import VIEW_SOURCES

        source = VIEW_SOURCES[view]
        rows = self.offline.read(source.table).to_pandas()
        left = entity.rename(columns={"event_timestamp": "_at"}).sort_values("_at")
        if not len(rows):
            return left.rename(columns={"_at": "event_timestamp"}).assign(
                **{name: float("nan") for name in names}
            )
        right = rows[[source.join_key, source.timestamp, *names]].rename(
            columns={source.timestamp: "_at"}
        )
        right["_at"] = pd.to_datetime(right["_at"], utc=True).astype("datetime64[ns, UTC]")
        left["_at"] = pd.to_datetime(left["_at"], utc=True).astype("datetime64[ns, UTC]")
        joined = pd.merge_asof(
            left, right.sort_values("_at"), on="_at", by=source.join_key,
            direction="backward", tolerance=pd.Timedelta(source.ttl),
        )  # fmt: skip
        return joined.rename(columns={"_at": "event_timestamp"})


class InMemoryLock:
    """:class:`fraudctl.ports.Lock` as a thread lock with the same bounded wait."""

    def __init__(self, timeout_s: float = 30.0) -> None:
        self._lock = threading.Lock()
        self.timeout_s = timeout_s
        self.held = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        if not self._lock.acquire(timeout=self.timeout_s):
            raise BackendUnavailable("the lock memory stayed taken")
        self.held += 1
        try:
            yield
        finally:
            self._lock.release()


class RecordingPusher:
    """:class:`fraudctl.ports.MetricsPusher` that keeps the latest gauges of each group
    (a Pushgateway replaces a group's gauges on every push)."""

    def __init__(self, where: str | None = "memory", fail: str | None = None) -> None:
        self.where, self.fail = where, fail
        self.groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[Gauge]] = {}

    def push(self, job: str, grouping: Mapping[str, str], gauges: Sequence[Gauge]) -> str | None:
        if self.where is None:
            return None
        if self.fail:
            return self.fail
        self.groups[(job, tuple(sorted(grouping.items())))] = list(gauges)
        return None


class SummaryReporter:
    """:class:`fraudctl.ports.DriftReporter` writing a JSON summary instead of Evidently's
    HTML: the features with their PSI, the threshold and each window's row count."""

    def write_report(self, reference: Any, current: Any, path: Path,
                     features: Sequence[Mapping[str, Any]], threshold: float) -> None:  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"features": {f["feature"]: f["psi"] for f in features},
                                    "threshold": threshold, "reference_rows": len(reference),
                                    "current_rows": len(current)}))  # fmt: skip


@dataclass
class FakeScraper:
    """:class:`fraudctl.ports.MetricsScraper` serving what a test put at each URL (a
    list, or a callable for figures that move); any other URL does not answer."""

    endpoints: dict[str, Any] = field(default_factory=dict)

    def scrape(self, url: str) -> list[Sample]:
        found = self.endpoints.get(url)
        if found is None:
            raise BackendUnavailable(f"the metrics at {url} do not answer (nothing there)")
        return list(found() if callable(found) else found)


@dataclass
class FakeServer:
    """:class:`fraudctl.ports.ServingControl` answering a fixed status; records changes."""

    url: str = "http://fake"
    answer: Callable[[], dict[str, Any]] = dict
    changes: list[tuple[float, str]] = field(default_factory=list)

    def status(self, window_s: float) -> dict[str, Any]:
        return self.answer()

    def set_canary(self, weight: float, reason: str) -> dict[str, Any]:
        self.changes.append((weight, reason))
        return {"weight": weight}


@dataclass
class FakeBackends:
    """:class:`fraudctl.ports.Backends` of fakes: every store in memory (the bus is the
    embedded file log under the settings' home: it needs no service either)."""

    settings: Settings
    registry: InMemoryRegistry = field(default_factory=InMemoryRegistry)
    offline: Any = field(default_factory=memory_offline)
    dedupe: InMemoryDedupe = field(default_factory=InMemoryDedupe)
    promotion_lock: InMemoryLock = field(default_factory=InMemoryLock)
    pusher: RecordingPusher = field(default_factory=RecordingPusher)
    drift_reporter: SummaryReporter = field(default_factory=SummaryReporter)
    serving: FakeServer = field(default_factory=FakeServer)
    scraper: FakeScraper = field(default_factory=FakeScraper)
    features: Any = None

    def __post_init__(self) -> None:
        if self.features is None:
            self.features = InMemoryFeatureStore(self.offline)

    @property
    def bus(self) -> Any:
        from fraudctl.adapters.filelog import FileLogBus

        return FileLogBus(self.settings.home / "bus")

    def server(self, url: str) -> FakeServer:
        self.serving.url = url
        return self.serving


class RecordingScoring:
    """:class:`fraudctl.ports.ScoringClient` that keeps what it was given and answers
    everything (or fails with ``fail``)."""

    def __init__(self, url: str = "memory", fail: str | None = None) -> None:
        self.url, self.fail = url, fail
        self.submitted: list[bytes] = []
        self.closed = False

    def submit(self, transaction: bytes) -> None:
        assert not self.closed, "submit after close"
        self.submitted.append(transaction)

    def close(self, timeout_s: float) -> ScoringStats:
        self.closed = True
        n = len(self.submitted)
        if self.fail:
            return ScoringStats(0, n, Counter({self.fail: n}) if n else Counter())
        return ScoringStats(n, 0, Counter(), [1.0] * n, Counter({"baseline": n} if n else {}))


class FakeClock:
    """A monotonic clock that only moves when slept on (at least 10 ms a sleep)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.01)


class ScriptedChild:
    """:class:`fraudctl.ports.Child` acting out its argv's last word (the words of
    ``tests/child.py``, which the real processes run): ``exit:N`` exits with N at once,
    ``run`` runs until a signal ends it, ``ignore-term`` survives SIGTERM."""

    def __init__(self, pid: int, behaviour: str, log: Path, stdout: Path | None) -> None:
        self.pid, self._behaviour = pid, behaviour
        self._code: int | None = None
        self.busy_until: Callable[[], bool] | None = None  # a job still running while true
        if behaviour.startswith("exit:"):
            self._code = int(behaviour.removeprefix("exit:"))
        with (stdout or log).open("a") as out:
            out.write(f"{behaviour}\n")
        log.touch()

    def poll(self) -> int | None:
        if self.busy_until is not None and self.busy_until():
            return None
        return self._code

    def signal(self, signum: int) -> None:
        import signal

        if self._code is not None:
            return
        if signum == signal.SIGKILL or self._behaviour != "ignore-term":
            self._code = -signum

    def wait(self, timeout_s: float) -> int | None:
        return self._code


class ScriptedSpawner:
    """:class:`fraudctl.ports.Spawner` of :class:`ScriptedChild`; keeps what it started.
    With ``respond``, a command ending in ``--json`` is a job: ``respond(argv)`` gives its
    exit code and the JSON document it prints; any other command runs until signalled."""

    def __init__(
        self,
        respond: Callable[[list[str]], tuple[int, dict[str, Any]]] | None = None,
        job_seconds: tuple[FakeClock, float] | None = None,
    ) -> None:
        """``job_seconds``: each job takes that long on that clock (else it is done at
        once)."""
        self.respond = respond
        self.job_seconds = job_seconds
        self.started: list[ScriptedChild] = []
        self.argvs: list[list[str]] = []
        self.envs: list[dict[str, str]] = []
        self._pids = itertools.count(1000)

    def spawn(
        self, argv: Sequence[str], log: Path, env: Mapping[str, str], stdout: Path | None = None
    ) -> ScriptedChild:
        log.parent.mkdir(parents=True, exist_ok=True)
        behaviour, words = argv[-1], stdout  # where the child writes its behaviour word
        if self.respond is not None and argv[-1] == "--json":  # a job: its document
            code, document = self.respond(list(argv))
            behaviour, words = f"exit:{code}", None
            (stdout or log).write_text(json.dumps(document) + "\n")
        elif self.respond is not None:  # a long-running child
            behaviour = "run"
        child = ScriptedChild(next(self._pids), behaviour, log, words)
        if self.job_seconds is not None and behaviour.startswith("exit:"):
            clock, seconds = self.job_seconds
            done_at = clock() + seconds
            child.busy_until = lambda: clock() < done_at
        self.started.append(child)
        self.argvs.append(list(argv))
        self.envs.append(dict(env))
        return child
