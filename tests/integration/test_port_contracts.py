"""One contract per port, run against every implementation: the real adapters of both
profiles (SQLite, local files, file lease; Redis, S3, a Pushgateway, Evidently) and the
in-memory fakes of tests/fakes.py that the services' unit tests use.  A fake that passes
here behaves as the backend it stands in for, as far as the services can tell."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from fraudctl.adapters.tables import state_frame
from fraudctl.config import RedisConfig, Settings, load_settings
from fraudctl.errors import BackendUnavailable
from fraudctl.features import FEATURE_NAMES, Txn, UserWindow
from fraudctl.ports import (
    DedupeStore,
    DriftReporter,
    FeatureStore,
    Gauge,
    Lock,
    MetricsPusher,
    OfflineStore,
)
from tests.drift_html import assert_report_agrees
from tests.fakes import (
    InMemoryDedupe,
    InMemoryFeatureStore,
    InMemoryLock,
    RecordingPusher,
    SummaryReporter,
    memory_offline,
)
from tests.integration.conftest import REDIS_DBS, private_corner

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def local_settings(home: Path) -> Settings:
    return load_settings(environ={"FRAUDCTL_PROFILE": "local", "FRAUDCTL_HOME": str(home)},
                         cwd=home).settings  # fmt: skip


def stack_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The running native stack, in a corner of its own (bucket, Redis db, home)."""
    stack = request.getfixturevalue("stack")
    monkeypatch = request.getfixturevalue("monkeypatch")
    base_url = stack["FRAUDCTL_REDIS_URL"].rsplit("/", 1)[0]
    private_corner(monkeypatch, tmp_path / "home", f"{base_url}/{next(REDIS_DBS) % 16}")
    return load_settings().settings


# -- DedupeStore ------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis", "memory"])
def dedupe(request: pytest.FixtureRequest, tmp_path: Path) -> DedupeStore:
    from fraudctl.adapters.dedupe import RedisDedupe, SqliteDedupe

    if request.param == "memory":
        return InMemoryDedupe()
    if request.param == "sqlite":
        return SqliteDedupe(tmp_path / "dedupe.db")
    config = stack_settings(request, tmp_path).backends().dedupe_store
    assert isinstance(config, RedisConfig)
    return RedisDedupe(config)


def test_dedupe_keeps_the_first_origin_of_each_id(dedupe: DedupeStore) -> None:
    assert dedupe.origins(["a", "b"]) == {}
    dedupe.record({"a": "tx/0/1", "b": "tx/1/7"})
    dedupe.record({"a": "tx/2/9", "c": "tx/0/2"})  # a replay of a: the first stays
    assert dedupe.origins(["a", "b", "c", "d"]) == {"a": "tx/0/1", "b": "tx/1/7", "c": "tx/0/2"}
    many = {f"e{i}": f"tx/{i % 3}/{i}" for i in range(2500)}
    dedupe.record(many)
    assert dedupe.origins(list(many)) == many


def test_dedupe_marks_only_rise(dedupe: DedupeStore) -> None:
    assert dedupe.get_mark("newest") is None
    dedupe.raise_mark("newest", 100.5)
    dedupe.raise_mark("newest", 50.0)
    assert dedupe.get_mark("newest") == 100.5
    dedupe.raise_mark("newest", 200.25)
    assert dedupe.get_mark("newest") == 200.25 and dedupe.get_mark("other") is None


# -- OfflineStore (with its record log) ------------------------------------------------


@pytest.fixture(params=["localfs", "s3", "memory"])
def offline(request: pytest.FixtureRequest, tmp_path: Path) -> OfflineStore:
    from fraudctl.adapters.offline import open_offline

    if request.param == "memory":
        return memory_offline()
    if request.param == "localfs":
        return open_offline(local_settings(tmp_path / "home"))
    return open_offline(stack_settings(request, tmp_path))


def _rows(ids: list[str], hour: int = 0) -> Any:
    import pyarrow as pa

    return pa.table({"event_id": ids, "event_ts": [T0 + timedelta(hours=hour)] * len(ids)})


def test_an_empty_table_reads_as_no_rows(offline: OfflineStore) -> None:
    assert offline.read("events").num_rows == 0
    assert offline.records("decisions") == []


def test_a_rerun_batch_replaces_its_first_attempt(offline: OfflineStore) -> None:
    import pyarrow.dataset as ds

    from fraudctl.adapters.offline import PlannedFile

    noon, one = "date=2026-11-01/hour=12", "date=2026-11-01/hour=13"
    first = {PlannedFile("events", noon, "a.parquet"): _rows(["1", "2"]),
             PlannedFile("events", one, "b.parquet"): _rows(["3"], 1)}  # fmt: skip
    offline.replace_batch("tx", 0, 0, first)
    again = {PlannedFile("events", "date=2026-11-01/hour=12", "c.parquet"): _rows(["1", "2", "3"])}
    offline.replace_batch("tx", 0, 0, again)  # the same batch, cut differently
    offline.replace_batch("tx", 1, 0, {PlannedFile("events", "date=2026-11-01/hour=12",
                                                   "d.parquet"): _rows(["9"])})  # fmt: skip
    ids = sorted(offline.read("events", ["event_id"]).column("event_id").to_pylist())
    assert ids == ["1", "2", "3", "9"]
    late = offline.read("events", ["event_id"], ds.field("event_id") == "9")
    assert late.column("event_id").to_pylist() == ["9"]
    offline.forget_batch("tx", 1, 0)
    assert offline.read("events").num_rows == 4  # forgetting keeps the files: only the manifest
    assert offline.table_uri("events").endswith("/events")


def test_snapshots_and_copied_files_are_kept(offline: OfflineStore, tmp_path: Path) -> None:
    path = offline.write_snapshot("user_state", "date=2026-11-01/hour=12", "s1", _rows(["u"]))
    assert path.endswith("s1.parquet") and offline.read("user_state").num_rows == 1
    local = tmp_path / "report.html"
    local.write_text("<html>report</html>")
    uri = offline.copy_file(local, "drift-reports/report.html")
    assert uri.startswith(offline.uri) and uri.endswith("drift-reports/report.html")


def test_records_are_appended_never_rewritten(offline: OfflineStore) -> None:
    written = [offline.add_record("promotions", {"n": n}) for n in range(5)]
    assert len(set(written)) == 5
    assert [r["n"] for r in offline.records("promotions")] == [0, 1, 2, 3, 4]
    assert [r["n"] for r in offline.records("promotions", newest=2)] == [3, 4]
    threads = [threading.Thread(target=offline.add_record, args=("race", {"t": t}))
               for t in range(8)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r["t"] for r in offline.records("race")) == list(range(8))


# -- FeatureStore ----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis", "memory"])
def features(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[FeatureStore, OfflineStore]:
    from fraudctl.adapters.offline import open_offline
    from fraudctl.adapters.online import OnlineState

    if request.param == "memory":
        store = memory_offline()
        return InMemoryFeatureStore(store), store
    settings = (local_settings(tmp_path / "home") if request.param == "sqlite"
                else stack_settings(request, tmp_path))  # fmt: skip
    store = open_offline(settings)
    return OnlineState(settings, store.uri), store


def _window(user: str, times: list[float]) -> UserWindow:
    return UserWindow.of(Txn(t, 10.0 + i, "US", "web", f"{user}-{i}") for i, t in enumerate(times))


def test_a_user_never_written_has_an_empty_window(features: Any) -> None:
    store, _offline = features
    found = store.read(["user-404"])
    assert list(found) == ["user-404"] and len(found["user-404"]) == 0 and store.where


def test_windows_read_back_as_written_and_a_later_write_wins(features: Any) -> None:
    store, _offline = features
    now = time.time()
    windows = {f"user-{i}": _window(f"user-{i}", [now - 30, now - 10 + i]) for i in range(300)}
    store.write(windows)
    found = store.read(list(windows))
    assert {u: w.to_json() for u, w in found.items()} == {
        u: w.to_json() for u, w in windows.items()
    }
    store.write({"user-1": _window("user-1", [now - 5])})
    assert [e.ts for e in store.read(["user-1"])["user-1"]] == [now - 5]


def test_backfill_loads_the_newest_snapshot_of_each_user_in_range(features: Any) -> None:
    import pyarrow as pa

    store, offline = features
    now = time.time()
    old, new = _window("user-7", [now - 600]), _window("user-7", [now - 600, now - 60])
    for name, windows in (("s-old", {"user-7": old}), ("s-new", {"user-7": new})):
        table = pa.Table.from_pandas(state_frame(windows), preserve_index=False)
        offline.write_snapshot("user_state", "date=2026-11-01/hour=12", name, table)
        time.sleep(0.01)  # created_ts breaks the tie of equal state times: the later wins
    store.backfill(offline.uri, datetime.fromtimestamp(now - 3600, UTC), datetime.now(UTC))
    assert store.read(["user-7"])["user-7"].to_json() == new.to_json()


def test_point_in_time_features_are_the_newest_at_or_before_each_row(features: Any) -> None:
    import pyarrow as pa

    from fraudctl.adapters.feast_repo import EVENT_FEATURES_VIEW

    store, offline = features
    rows = {"event_id": ["e1", "e2"], "user_id": ["u", "u"],
            **{name: [1.0, 2.0] for name in FEATURE_NAMES},
            "event_timestamp": [T0, T0 + timedelta(minutes=5)]}  # fmt: skip
    offline.write_snapshot("features", "date=2026-11-01/hour=12", "f1", pa.table(rows))
    entity = pd.DataFrame({"event_id": ["e1", "e2", "e3"],
                           "event_timestamp": [T0 + timedelta(seconds=1), T0 + timedelta(minutes=6),
                                               T0]})  # fmt: skip
    found = store.historical_features(entity, EVENT_FEATURES_VIEW, FEATURE_NAMES)
    by_id = found.set_index("event_id")
    assert by_id.loc["e1", FEATURE_NAMES[0]] == 1.0 and by_id.loc["e2", FEATURE_NAMES[0]] == 2.0
    assert np.isnan(by_id.loc["e3", FEATURE_NAMES[0]])  # no features for an unknown event
    assert set(FEATURE_NAMES) <= set(found.columns) and len(found) == 3


# -- Lock -------------------------------------------------------------------------------


@pytest.fixture(params=["file", "redis", "memory"])
def lock_pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Lock, Lock]:
    """Two handles on one lock, as two processes (or hosts) would hold them."""
    from fraudctl.adapters.locks import FileLock, RedisLock
    from fraudctl.adapters.probes import redis_client

    if request.param == "memory":
        shared = InMemoryLock(timeout_s=0.5)
        return shared, shared
    if request.param == "file":
        path = tmp_path / "promote.lock"
        return FileLock(path, "promote"), FileLock(path, "promote")
    settings = stack_settings(request, tmp_path)
    key = f"fraudctl:test-lock:{uuid.uuid4().hex}"
    return (RedisLock(redis_client(settings), key, timeout_s=0.5),
            RedisLock(redis_client(settings), key, timeout_s=0.5))  # fmt: skip


def test_one_holder_at_a_time_and_the_other_waits(lock_pair: tuple[Lock, Lock]) -> None:
    first, second = lock_pair
    order: list[str] = []
    held = threading.Event()

    def hold_first() -> None:
        with first.hold():
            held.set()
            order.append("first in")
            time.sleep(0.2)
            order.append("first out")

    thread = threading.Thread(target=hold_first)
    thread.start()
    held.wait(5)
    with second.hold():
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]


def test_a_released_lock_is_free_again_even_after_an_error(lock_pair: tuple[Lock, Lock]) -> None:
    first, second = lock_pair
    with pytest.raises(RuntimeError), first.hold():
        raise RuntimeError("the promotion failed")
    with second.hold():
        pass


# -- MetricsPusher -----------------------------------------------------------------------


@pytest.fixture(params=["pushgateway", "memory"])
def pusher(request: pytest.FixtureRequest) -> tuple[MetricsPusher, Any]:
    """A pusher and a way to read back what a scrape would see (name, labels) → value."""
    from fraudctl.adapters.metrics import Pushgateway

    if request.param == "memory":
        fake = RecordingPusher()

        def seen_memory() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            return {(g.name, tuple(sorted(g.labels.items()))): g.value
                    for gauges in fake.groups.values() for g in gauges}  # fmt: skip

        return fake, seen_memory
    url = request.getfixturevalue("pushgateway")

    def seen() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{url}/metrics", timeout=5).text
        return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items()
                                      if k not in ("job", "instance", "model")))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples if s.name.startswith("contract_")}  # fmt: skip

    return Pushgateway(url), seen


def test_a_push_replaces_the_groups_gauges(pusher: tuple[MetricsPusher, Any]) -> None:
    push, seen = pusher
    first = [Gauge("contract_psi", "PSI.", 0.1, {"feature": "a"}),
             Gauge("contract_psi", "PSI.", 0.2, {"feature": "b"}),
             Gauge("contract_score", "S.", 3)]  # fmt: skip
    assert push.push("contract_job", {"model": "m"}, first) is None
    found = seen()
    assert found[("contract_psi", (("feature", "a"),))] == 0.1
    assert found[("contract_psi", (("feature", "b"),))] == 0.2
    assert found[("contract_score", ())] == 3
    assert push.push("contract_job", {"model": "m"}, [Gauge("contract_score", "S.", 4)]) is None
    found = seen()
    assert found[("contract_score", ())] == 4 and ("contract_psi", (("feature", "a"),)) not in found


def test_an_unreachable_or_disabled_pushgateway() -> None:
    from fraudctl.adapters.metrics import Pushgateway

    error = Pushgateway("http://127.0.0.1:9", timeout_s=1).push("j", {}, [Gauge("x", "x", 1)])
    assert error is not None and "127.0.0.1:9" in error
    assert Pushgateway(None).push("j", {}, [Gauge("x", "x", 1)]) is None
    assert RecordingPusher(where=None).push("j", {}, [Gauge("x", "x", 1)]) is None


# -- DriftReporter ---------------------------------------------------------------------


@pytest.fixture(params=["evidently", "memory"])
def reporter(request: pytest.FixtureRequest) -> DriftReporter:
    from fraudctl.adapters.drift_psi import EvidentlyReporter

    return SummaryReporter() if request.param == "memory" else EvidentlyReporter()


def test_a_report_of_the_result_is_written_where_asked(
    reporter: DriftReporter, tmp_path: Path
) -> None:
    from fraudctl.adapters.drift_psi import feature_drift

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.lognormal(3, 1, 1200),
                          "country": rng.choice(["US", "DE"], 1200)})  # fmt: skip
    reference, current = frame[:600], frame[600:]
    features = [
        feature_drift(name, reference[name].to_numpy(), current[name].to_numpy(),
                      categorical=name == "country", threshold=0.3).as_dict()
        for name in ("amount", "country")
    ]  # fmt: skip
    path = tmp_path / "nested" / "drift.html"
    reporter.write_report(reference, current, path, features, 0.3)
    assert path.is_file() and path.stat().st_size > 0
    text = path.read_text()
    if isinstance(reporter, SummaryReporter):
        assert json.loads(text)["features"] == {f["feature"]: f["psi"] for f in features}
    else:
        status = "drift" if max(f["psi"] for f in features) >= 0.3 else "ok"
        assert_report_agrees(text, {"features": features, "threshold": 0.3, "status": status})


def test_backend_unavailable_is_what_an_outage_raises() -> None:
    """The ports promise BackendUnavailable (exit 3) for an unreachable backend."""
    from fraudctl.adapters.locks import RedisLock

    class Down:
        def set(self, *_a: Any, **_k: Any) -> bool:
            return False

    with (
        pytest.raises(BackendUnavailable, match="stayed taken"),
        RedisLock(Down(), "k", 0.1).hold(),
    ):
        pass
