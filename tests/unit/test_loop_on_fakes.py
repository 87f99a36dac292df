"""The services of the loop — materialize, train, drift, promote — on the in-memory fakes
of tests/fakes.py: no broker, no Redis, no S3, no MLflow.  The events come from the
embedded file-log bus (itself service-free), written by `fraudctl produce`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fraudctl.cli.main import main
from fraudctl.config import Settings, environ, load_settings
from fraudctl.errors import Refused
from fraudctl.ports import ONLINE_NEWEST_MARK
from fraudctl.services.drift import DRIFT_JOB, DriftOptions, WindowSpec, latest, run_drift
from fraudctl.services.materialize import open_materializer
from fraudctl.services.promote import PromoteOptions, history, promote
from fraudctl.services.train import TrainOptions, train_once
from tests.fakes import FakeBackends, InMemoryDedupe, InMemoryFeatureStore, RecordingPusher

EVENTS = 2500


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeBackends, dict[str, Any]]]:
    home = tmp_path_factory.mktemp("loop-on-fakes")
    env = {"FRAUDCTL_PROFILE": "local", "FRAUDCTL_HOME": str(home)}
    with environ(env):
        assert main(["produce", "--rate", "0", "--count", str(EVENTS), "--label-delay", "0"]) == 0
    settings = load_settings(environ=env, cwd=home).settings
    backends = FakeBackends(settings)
    materializer = open_materializer(backends)
    try:
        summary = materializer.run_to_end()
    finally:
        materializer.close()
    trained = train_once(backends.offline, backends.features, backends.registry,
                         TrainOptions(), lambda _m: None)  # fmt: skip
    yield backends, {"materialized": summary.as_dict(), "trained": trained}


def test_materialize_writes_every_event_to_the_fake_stores(loop: Any) -> None:
    backends, done = loop
    summary = done["materialized"]
    assert summary["valid"] == EVENTS and summary["labels_read"] == EVENTS
    assert backends.offline.read("events").num_rows == EVENTS
    assert backends.offline.read("features").num_rows == EVENTS
    assert len(backends.dedupe.first) == EVENTS
    assert backends.dedupe.get_mark(ONLINE_NEWEST_MARK) == summary["newest_event_ts"]
    users = sorted(backends.features.windows)
    assert users and all(len(backends.features.read([u])[u]) > 0 for u in users[:20])


def test_a_second_run_reads_nothing_new_and_writes_nothing_twice(loop: Any) -> None:
    backends, _done = loop
    materializer = open_materializer(backends)
    try:
        again = materializer.run_to_end()
    finally:
        materializer.close()
    assert again.events_read == 0
    assert backends.offline.read("events").num_rows == EVENTS


def test_train_registers_a_candidate_with_its_lineage(loop: Any) -> None:
    backends, done = loop
    trained = done["trained"]
    registry = backends.registry
    assert registry.aliases(["candidate"]) == {"candidate": trained.version}
    assert trained.metrics["roc_auc"] > 0.8 and trained.rows["labeled"] == EVENTS
    tags = registry.version_tags(trained.version)
    assert tags["run_id"] == trained.run_id and float(tags["threshold"]) == trained.threshold
    lineage = registry.lineage(trained.version)
    assert lineage["fraudctl.rows.labeled"] == str(EVENTS)
    assert {"fraudctl.time.first_event", "fraudctl.time.last_event"} <= set(lineage)
    run = registry.runs[-1]
    assert run["params"]["model"] == "hgb" and "roc_auc" in run["metrics"]


def _drift(backends: FakeBackends, tmp_path: Path, min_rows: int = 500) -> Any:
    now = datetime.now(UTC)
    options = DriftOptions(
        reference=WindowSpec("training"),
        current=WindowSpec("range", now - timedelta(days=2), now),
        source="events", threshold=0.3, min_rows=min_rows, report=tmp_path / "drift.html",
    )  # fmt: skip
    return run_drift(backends, options)


def test_drift_reports_pushes_and_records_through_its_ports(loop: Any, tmp_path: Path) -> None:
    backends, _done = loop
    result = _drift(backends, tmp_path)
    assert result.status == "ok" and result.drift_score is not None
    report = json.loads((tmp_path / "drift.html").read_text())  # the fake reporter's summary
    assert report["reference_rows"] == report["current_rows"] == EVENTS
    (key, gauges), = backends.pusher.groups.items()  # fmt: skip
    assert key == (DRIFT_JOB, (("model", backends.registry.model_name),))
    names = {g.name for g in gauges}
    assert {"fraudctl_drift_psi", "fraudctl_drift_score", "fraudctl_drift_status"} <= names
    assert result.pushed_to == "memory" and latest(backends.offline)["run_id"] == result.run_id


def test_a_failed_push_is_reported_and_the_verdict_stands(loop: Any, tmp_path: Path) -> None:
    backends, _done = loop
    failing = FakeBackends(backends.settings, registry=backends.registry, offline=backends.offline,
                           features=backends.features,
                           pusher=RecordingPusher(fail="Pushgateway down"))  # fmt: skip
    result = _drift(failing, tmp_path)
    assert result.status == "ok" and result.push_error == "Pushgateway down"
    assert result.pushed_to is None


def test_too_few_rows_is_insufficient_data_and_writes_no_report(loop: Any, tmp_path: Path) -> None:
    backends, _done = loop
    result = _drift(backends, tmp_path, min_rows=EVENTS + 1)
    assert result.status == "insufficient_data" and result.drift_score is None
    assert not (tmp_path / "drift.html").exists()


def test_staging_promotion_runs_the_auc_and_drift_gates_on_the_fakes(
    loop: Any, tmp_path: Path
) -> None:
    backends, done = loop
    version = done["trained"].version
    _drift(backends, tmp_path)  # a fresh ok drift result
    decision = promote(backends, PromoteOptions(to="staging"))
    assert decision.outcome == "promoted", decision.reason
    assert [g.name for g in decision.gates] == ["auc", "drift"]
    assert backends.registry.aliases(["staging"]) == {"staging": version}
    assert backends.promotion_lock.held >= 1
    assert history(backends.offline, backends.registry.model_name)[-1]["version"] == version
    with pytest.raises(Refused, match="already is 'staging'"):
        promote(backends, PromoteOptions(to="staging", version=version))


def test_a_drift_result_at_the_threshold_refuses_staging(settings_home: Settings) -> None:
    backends = FakeBackends(settings_home)
    version = backends.registry.add_version(object())
    backends.registry.set_alias("candidate", version)
    worst = [{"feature": "amount", "psi": 0.3}]
    backends.offline.add_record("drift-log", {"status": "drift", "drift_score": 0.3,
                                              "features": worst})  # fmt: skip
    decision = promote(backends, PromoteOptions(to="staging", dry_run=True))
    drift = next(g for g in decision.gates if g.name == "drift")
    assert not drift.passed and "≥ 0.3" in drift.detail and decision.outcome == "refused"
    assert backends.registry.aliases(["staging"]) == {"staging": None}


@pytest.fixture
def settings_home(tmp_path: Path) -> Settings:
    return load_settings(environ={"FRAUDCTL_HOME": str(tmp_path)}, cwd=tmp_path).settings


def test_freshness_compares_the_stream_with_the_online_mark(loop: Any) -> None:
    from fraudctl.services.freshness import freshness

    backends, done = loop
    settings = backends.settings
    consumer = backends.bus.consumer(settings.consumer_group, [settings.topic_transactions])
    try:
        result = freshness(consumer, backends.dedupe, slo_s=60)
        behind = freshness(consumer, InMemoryDedupe(), slo_s=60)  # nothing written online
    finally:
        consumer.close()
    assert result.ok and result.lag_s == 0.0
    assert result.online_newest_event_ts == done["materialized"]["newest_event_ts"]
    assert not behind.ok and behind.lag_s is None


def test_backfill_restores_the_online_windows_from_the_snapshots(loop: Any) -> None:
    from fraudctl.services.backfill import backfill

    backends, _done = loop
    before = dict(backends.features.windows)
    rebuilt, marks = InMemoryFeatureStore(backends.offline), InMemoryDedupe()
    start, end = datetime.now(UTC) - timedelta(days=30), datetime.now(UTC)
    summary = backfill(backends.offline, rebuilt, marks, start, end)
    assert summary.users_restored == len(before) and summary.snapshots_read >= len(before)
    assert rebuilt.windows == before
    assert marks.get_mark(ONLINE_NEWEST_MARK) == summary.newest_event_ts
