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
from tests.unit.test_quality import load, traffic

# Served traffic of two equally good variants, half each: enough matured labels for the
# quality gate to pass at the tests' margin (the product's default, 0.01, needs more).
MARGIN = {"FRAUDCTL_PROMOTE_QUALITY_MARGIN": "0.05"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(environ={"FRAUDCTL_HOME": str(tmp_path)} | MARGIN, cwd=tmp_path).settings


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


def backends_of(settings: Settings, registry: InMemoryRegistry, answer: Any = dict,
                canary_signal: float | None = 2.0) -> FakeBackends:  # fmt: skip
    """Fakes answering ``answer()`` for the server's status; with a prediction log of
    served traffic (canary v2 at ``canary_signal``; the baseline's is 2.0) and its labels
    unless ``canary_signal`` is None."""
    backends = FakeBackends(settings, registry=registry, serving=FakeServer(answer=answer))
    if canary_signal is not None:
        load(backends.offline, SERVED[canary_signal])
    return backends


SERVED = {signal: traffic(12_000, 11, canary_signal=signal, canary_share=0.5)
          for signal in (2.0, 0.3)}  # fmt: skip


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
    assert decision.outcome == "promoted" and decision.previous == "1", decision.reason
    assert [g.verdict for g in decision.gates] == ["pass", "pass"]
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


def test_the_first_production_waives_the_canary_and_quality_gates(settings: Settings) -> None:
    fake = InMemoryRegistry()
    fake.set_alias("staging", fake.add_version(object()))
    decision, changes = run(settings, fake, {}, backends_of(settings, fake, canary_signal=None))
    assert decision.outcome == "promoted"
    assert [(g.name, g.rule) for g in decision.gates] == [("canary", "waived"),
                                                         ("quality", "waived")]  # fmt: skip
    assert changes == []  # no production before: no canary share to reset


# -- the quality gate -------------------------------------------------------------------


def test_a_canary_worse_on_its_matured_labels_fails_the_quality_gate(
    settings: Settings, registry: InMemoryRegistry
) -> None:
    backends = backends_of(settings, registry, lambda: server("2", 600, 0.0, 20.0), 0.3)
    decision, changes = run(settings, registry, {}, backends)
    assert decision.outcome == "refused" and changes == []
    canary, quality = decision.gates
    assert (canary.verdict, quality.verdict) == ("pass", "fail")
    assert quality.measured["high"] < -0.05 and "the canary is worse" in decision.reason
    assert quality.measured["canary"]["version"] == "2"
    assert quality.measured["baseline"]["version"] == "1"
    recorded = history(backends.offline, registry.model_name)[-1]
    assert [g["verdict"] for g in recorded["gates"]] == ["pass", "fail"]


def test_without_matured_labels_the_quality_gate_is_inconclusive_and_keeps_the_canary(
    settings: Settings, registry: InMemoryRegistry
) -> None:
    import json

    backends = backends_of(settings, registry, lambda: server("2", 600, 0.0, 20.0), None)
    decision, changes = run(settings, registry, {}, backends)
    assert decision.outcome == "inconclusive" and changes == []  # the canary keeps running
    quality = decision.gates[1]
    assert quality.verdict == "inconclusive" and not quality.passed
    assert "0 matured labels < 200" in quality.detail and "keeps running" in decision.reason
    empty = {"labeled": 0, "positives": 0, "value": None, "variance": None}
    assert quality.measured["canary"] == {"variant": "canary", "version": None} | empty
    assert "NaN" not in json.dumps(decision.as_dict())
    assert registry.aliases(["production"]) == {"production": "1"}


def test_the_quality_rule_comes_from_the_settings(
    tmp_path: Path, registry: InMemoryRegistry
) -> None:
    """At the product's default margin (0.01) two equal variants of 6,000 predictions
    each cannot be told apart yet: inconclusive, not pass and not fail."""
    default = load_settings(environ={"FRAUDCTL_HOME": str(tmp_path)}, cwd=tmp_path).settings
    backends = backends_of(default, registry, lambda: server("2", 600, 0.0, 20.0))
    decision, _changes = run(default, registry, {}, backends)
    assert decision.outcome == "inconclusive"
    assert "spans -0.01" in decision.gates[1].detail


def test_nothing_to_promote_and_an_unknown_version_are_refused(settings: Settings) -> None:
    with pytest.raises(Refused, match="no 'staging' alias"):
        run(settings, InMemoryRegistry(), {})
    with pytest.raises(Refused, match="has no version 9"):
        run(settings, InMemoryRegistry(), {}, version="9")


def test_dry_run_moves_nothing(settings: Settings, registry: InMemoryRegistry) -> None:
    decision, changes = run(settings, registry, server("2", 600, 0.0, 20.0), dry_run=True)
    assert decision.outcome == "dry_run" and changes == []
    assert registry.aliases(["production"]) == {"production": "1"}
