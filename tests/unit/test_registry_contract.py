"""The ModelRegistry port's contract, run against every implementation: MLflow (the
real adapter, on an embedded SQLite store) and the in-memory fake the service tests use."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudctl.model import MODEL_INPUTS, calibrate, make_pipeline, trusted_types
from fraudctl.ports import ModelRegistry, ModelRun
from tests.fakes import InMemoryRegistry
from tests.unit.test_serving import _training_frame

AddVersion = Callable[..., str]
_names = itertools.count()


@pytest.fixture(scope="module")
def model() -> Any:
    frame, labels = _training_frame(900)
    pipeline = make_pipeline("hgb", 0).fit(frame[:600], labels[:600])
    return calibrate(pipeline, frame[600:], labels[600:])


@pytest.fixture(scope="module")
def mlflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry-home")


def mlflow_registry(home: Path) -> ModelRegistry:
    from fraudctl.adapters.registry import Registry
    from fraudctl.config import load_settings

    settings = load_settings(
        environ={"FRAUDCTL_HOME": str(home), "FRAUDCTL_MODEL_NAME": f"m{next(_names)}"},
        cwd=home,
    ).settings
    return Registry(settings)


def model_run(model: Any, threshold: float = 0.5, **run_tags: str) -> ModelRun:
    """What train hands the registry, reduced to what the contract reads back."""
    frame, _labels = _training_frame(5)
    return ModelRun(
        model=model, trusted_types=trusted_types("hgb"), example=frame[list(MODEL_INPUTS)],
        params={"model": "hgb"}, metrics={"roc_auc": 0.9}, tags=dict(run_tags),
        metadata={"threshold": threshold}, version_tags={"threshold": str(threshold)},
        documents={"importances.json": {"amount": 0.1}},
    )  # fmt: skip


@pytest.fixture(params=["mlflow", "memory"])
def backend(request: pytest.FixtureRequest, mlflow_home: Path) -> Iterator[tuple[Any, AddVersion]]:
    registry = InMemoryRegistry() if request.param == "memory" else mlflow_registry(mlflow_home)

    def add(model: Any, threshold: float = 0.5, **run_tags: str) -> str:
        return registry.register(model_run(model, threshold, **run_tags)).version

    yield registry, add


def test_an_empty_registry_has_no_aliases_and_no_versions(backend: Any) -> None:
    registry, _add = backend
    assert registry.aliases(["production", "staging", "candidate"]) == {
        "production": None, "staging": None, "candidate": None}  # fmt: skip
    assert not registry.has_version("1")
    assert registry.model_name and registry.where


def test_versions_are_numbered_and_aliases_move(backend: Any, model: Any) -> None:
    registry, add = backend
    first, second = add(model), add(model)
    assert (first, second) == ("1", "2")
    assert registry.has_version("2") and not registry.has_version("3")
    registry.set_alias("candidate", first)
    assert registry.aliases(["candidate", "staging"]) == {"candidate": "1", "staging": None}
    registry.set_alias("candidate", second)
    registry.set_alias("staging", first)
    assert registry.aliases(["candidate", "staging"]) == {"candidate": "2", "staging": "1"}


def test_version_tags_and_lineage(backend: Any, model: Any) -> None:
    registry, add = backend
    version = add(model, **{"fraudctl.time.first_event": "2026-11-01T00:00:00Z"})
    registry.tag_version(version, {"fraudctl.promote.staging": "refused", "k": "v"})
    registry.tag_version(version, {"k": "w"})
    tags = registry.version_tags(version)
    assert tags["fraudctl.promote.staging"] == "refused" and tags["k"] == "w"
    assert registry.lineage(version)["fraudctl.time.first_event"] == "2026-11-01T00:00:00Z"


def test_a_loaded_version_scores_as_the_registered_model(backend: Any, model: Any) -> None:
    registry, add = backend
    version = add(model, threshold=0.37)
    loaded = registry.load(version, "candidate")
    assert (loaded.version, loaded.alias, loaded.threshold) == (version, "candidate", 0.37)
    frame, _labels = _training_frame(50)
    expected = model.predict_proba(frame[list(MODEL_INPUTS)])[:, 1]
    np.testing.assert_allclose(loaded.scores(frame), expected, rtol=1e-12)
    assert registry.load(version, "staging").alias == "staging"


def test_runs_are_logged_with_their_artifacts(backend: Any, tmp_path: Path) -> None:
    registry, _add = backend
    report = tmp_path / "report.html"
    report.write_text("<html></html>")
    ids = [
        registry.log_run(
            "m-drift",
            f"drift {n}",
            {"source": "events"},
            {"drift_score": 0.1},
            {"fraudctl.drift.status": "ok"},
            {report: "drift"},
        )
        for n in range(2)
    ]
    assert all(ids) and ids[0] != ids[1]


def test_a_registered_run_carries_its_run_id_and_version_tags(backend: Any, model: Any) -> None:
    registry, _add = backend
    registry.check()
    registered = registry.register(model_run(model, 0.42, lineage="x"))
    tags = registry.version_tags(registered.version)
    assert tags["run_id"] == registered.run_id and tags["threshold"] == "0.42"
    assert registry.lineage(registered.version)["lineage"] == "x"
    assert registered.experiment_id
