"""A new home's embedded MLflow store starts as a copy of an empty store made once per
MLflow version (adapters.registry.seed_embedded_store), not by MLflow's migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fraudctl.adapters.registry import Registry, seed_embedded_store
from fraudctl.config import load_settings


def registry_in(home: Path) -> Registry:
    return Registry(load_settings(environ={"FRAUDCTL_HOME": str(home)}, cwd=home).settings)


def default_artifacts(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0")
        return str(row.fetchone()[0])


def test_new_homes_are_seeded_from_one_empty_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first, second = registry_in(tmp_path / "a"), registry_in(tmp_path / "b")
    first.check()  # the probe does not create the file the seed would then skip
    assert not (tmp_path / "a" / "mlflow.db").exists()
    assert first.aliases(["production"]) == {"production": None}
    (template,) = (tmp_path / "cache" / "fraudctl").glob("mlflow-*-empty.db")
    made = template.stat().st_mtime_ns
    assert second.aliases(["production"]) == {"production": None}
    assert template.stat().st_mtime_ns == made, "the empty store is made once"
    for home in ("a", "b"):
        db = tmp_path / home / "mlflow.db"
        assert default_artifacts(db) == (tmp_path / home / "mlartifacts" / "0").as_uri()
    assert not list(tmp_path.glob("*/.mlflow.db.*")), "no staging copy is left behind"


def test_a_store_that_exists_is_never_replaced(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE mine (x)")
    seed_embedded_store(f"sqlite:///{db}", "mlflow-artifacts:/0")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("mine",)]


def test_an_unwritable_cache_leaves_the_store_to_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    registry = registry_in(tmp_path / "home")
    assert registry.aliases(["staging"]) == {"staging": None}
    assert (tmp_path / "home" / "mlflow.db").stat().st_size > 0
