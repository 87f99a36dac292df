"""`promote` on fakes (tests/fakes.py: registry, offline store, features, lock, server):
the canary gate decides from what the server reports, the staging gates from the AUC on
the newest labeled events and the newest drift result, the alias moves by
compare-and-set under the lock, and every decision is recorded (offline and as version
tags)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fraudctl.config import Settings, load_settings
from fraudctl.errors import Refused
from fraudctl.services.promote import PromoteOptions, history, promote
from tests.fakes import FakeBackends, FakeServer, InMemoryRegistry


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(environ={"FRAUDCTL_HOME": str(tmp_path)}, cwd=tmp_path).settings


@pytest.fixture
def registry() -> InMemoryRegistry:
    fake = InMemoryRegistry()
    production, staging = fake.add_version(object()), fake.add_version(object())
    fake.set_alias("production", production)
    fake.set_alias("staging", staging)
    return fake


def server(version: str, requests: int, error_rate: float, p95: float) -> dict[str, Any]:
    return {
        "window_s": 3600.0,
        "models": {"canary": {"model_version": version}},
        "variants": {"canary": {"requests": requests, "error_rate": error_rate, "p95_ms": p95}},
    }


def backends_of(settings: Settings, registry: InMemoryRegistry,
                answer: Any = dict) -> FakeBackends:  # fmt: skip
    return FakeBackends(settings, registry=registry, serving=FakeServer(answer=answer))


def run(settings: Settings, registry: InMemoryRegistry, status: dict[str, Any],
        backends: FakeBackends | None = None,
        **options: Any) -> tuple[Any, list[tuple[float, str]]]:  # fmt: skip
    backends = backends or backends_of(settings, registry, lambda: status)
    decision = promote(backends, PromoteOptions(to="production", **options))
    assert backends.promotion_lock.held == (decision.outcome in ("promoted", "lost"))
    return decision, backends.serving.changes


def test_a_canary_within_the_limits_is_promoted_and_its_share_reset(
    settings: Settings, registry: InMemoryRegistry
) -> None:
    backends = backends_of(settings, registry, lambda: server("2", 600, 0.0, 20.0))
    decision, changes = run(settings, registry, {}, backends)
    assert decision.outcome == "promoted" and decision.previous == "1"
    assert registry.aliases(["production"]) == {"production": "2"}
    assert changes == [(0.0, "version 2 promoted to production")]
    assert registry.version_tags("2")["fraudctl.promote.production"] == "promoted"
    assert [d["outcome"] for d in history(backends.offline, registry.model_name)] == ["promoted"]


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (server("2", 499, 0.0, 20.0), "499 requests < 500"),
        (server("2", 600, 0.02, 20.0), "error rate 2.00% > 1.00%"),
        (server("2", 600, 0.0, 250.0), "p95 250.0 ms > 200 ms"),
        (server("1", 600, 0.0, 20.0), "is not the canary"),
    ],
)
def test_a_canary_outside_the_limits_is_refused_and_recorded(
    settings: Settings, registry: InMemoryRegistry, status: dict[str, Any], detail: str
) -> None:
    decision, changes = run(settings, registry, status)
    assert decision.outcome == "refused" and detail in decision.reason
    assert registry.aliases(["production"]) == {"production": "1"} and changes == []
    assert registry.version_tags("2")["fraudctl.promote.production"] == "refused"


def test_the_limits_come_from_the_settings(tmp_path: Path, registry: InMemoryRegistry) -> None:
    strict = load_settings(
        environ={"FRAUDCTL_HOME": str(tmp_path), "FRAUDCTL_CANARY_MAX_P95_MS": "10"},
        cwd=tmp_path,
    ).settings
    decision, _changes = run(strict, registry, server("2", 600, 0.0, 20.0))
    assert decision.outcome == "refused" and "p95 20.0 ms > 10 ms" in decision.reason


def test_an_alias_moved_while_the_gates_ran_loses_and_changes_nothing(
    settings: Settings, registry: InMemoryRegistry
) -> None:
    third = registry.add_version(object())

    def racing() -> dict[str, Any]:
        registry.set_alias("production", third)  # another promote won meanwhile
        return server("2", 600, 0.0, 20.0)

    backends = backends_of(settings, registry, racing)
    decision = promote(backends, PromoteOptions(to="production"))
    assert decision.outcome == "lost" and "another promote won" in decision.reason
    assert registry.aliases(["production"]) == {"production": third}


def test_the_first_production_waives_the_canary_gate(settings: Settings) -> None:
    fake = InMemoryRegistry()
    fake.set_alias("staging", fake.add_version(object()))
    decision, changes = run(settings, fake, {})
    assert decision.outcome == "promoted" and decision.gates[0].rule == "waived"
    assert changes == []  # no production before: no canary share to reset


def test_nothing_to_promote_and_an_unknown_version_are_refused(settings: Settings) -> None:
    with pytest.raises(Refused, match="no 'staging' alias"):
        run(settings, InMemoryRegistry(), {})
    with pytest.raises(Refused, match="has no version 9"):
        run(settings, InMemoryRegistry(), {}, version="9")


def test_dry_run_moves_nothing(settings: Settings, registry: InMemoryRegistry) -> None:
    decision, changes = run(settings, registry, server("2", 600, 0.0, 20.0), dry_run=True)
    assert decision.outcome == "dry_run" and changes == []
    assert registry.aliases(["production"]) == {"production": "1"}
