"""`canary watch` on fakes (a server answering a fixed status, a prediction log in
memory): the serving breach, the quality breach on its own cadence, what is recorded on
a rollback, and a fake clock instead of waiting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fraudctl.config import Settings, load_settings
from fraudctl.gates import Limits
from fraudctl.services.canary import WatchOptions, watch_canary
from tests.fakes import FakeBackends, FakeClock, FakeServer
from tests.unit.test_quality import load, traffic


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(environ={"FRAUDCTL_HOME": str(tmp_path)}, cwd=tmp_path).settings


def status(requests: int = 600, error_rate: float = 0.0, weight: float = 50.0) -> dict[str, Any]:
    return {"canary_weight": weight, "window_s": 300.0,
            "models": {"canary": {"model_version": "2"}},
            "variants": {"canary": {"requests": requests, "error_rate": error_rate,
                                    "p95_ms": 20.0}}}  # fmt: skip


def watch(backends: FakeBackends, **changes: Any) -> Any:
    clock = FakeClock()
    options = WatchOptions(**({"url": "http://fake", "limits": Limits.of(backends.settings),
                               "every_s": 5.0, "for_s": 60.0, "auto_rollback": True,
                               "quality_every_s": 30.0} | changes))  # fmt: skip
    return watch_canary(backends, options, lambda: False, clock=clock, sleep=clock.sleep)


def backends_with(settings: Settings, answer: dict[str, Any], canary_signal: float | None) -> Any:
    backends = FakeBackends(settings, serving=FakeServer(answer=lambda: answer))
    if canary_signal is not None:
        load(backends.offline, traffic(12_000, 21, canary_signal=canary_signal, canary_share=0.5))
    return backends


def test_a_canary_worse_on_quality_is_rolled_back_with_what_was_seen(settings: Settings) -> None:
    backends = backends_with(settings, status(), canary_signal=0.3)
    result = watch(backends)
    assert result.rolled_back and result.checks == 1 and result.quality_checks == 1
    assert result.breach.startswith("quality: roc_auc canary")
    assert "the canary is worse" in result.breach
    ((weight, reason),) = backends.serving.changes
    assert weight == 0.0 and reason == f"auto-rollback: {result.breach}"
    seen = result.seen["quality"]
    assert seen["canary"]["version"] == "2" and seen["canary"]["labeled"] > 2000
    assert seen["baseline"]["value"] > seen["canary"]["value"] + 0.2


def test_an_equally_good_canary_is_not_rolled_back_and_quality_runs_on_its_cadence(
    settings: Settings,
) -> None:
    backends = backends_with(settings, status(), canary_signal=2.0)
    result = watch(backends)  # 60 s, checks every 5 s, quality every 30 s
    assert not result.rolled_back and backends.serving.changes == []
    assert result.checks == 12 and result.quality_checks == 2


def test_the_serving_breach_is_checked_first_and_without_labels(settings: Settings) -> None:
    backends = backends_with(settings, status(error_rate=0.05), canary_signal=None)
    result = watch(backends)
    assert result.rolled_back and result.breach.startswith("error rate 5.00% > 1.00%")
    assert result.quality_checks == 0


def test_without_auto_rollback_breaches_are_reported_and_watching_goes_on(
    settings: Settings,
) -> None:
    backends = backends_with(settings, status(), canary_signal=0.3)
    clock, said = FakeClock(), []
    options = WatchOptions(url="http://fake", limits=Limits.of(settings), every_s=5.0,
                           for_s=20.0, quality_every_s=10.0)  # fmt: skip
    result = watch_canary(backends, options, lambda: False, said.append, clock=clock,
                          sleep=clock.sleep)  # fmt: skip
    assert not result.rolled_back and backends.serving.changes == []
    assert len(said) == result.quality_checks == 2 and said[0].startswith("quality:")


def test_no_labels_yet_and_a_canary_without_traffic_are_no_breach(settings: Settings) -> None:
    assert not watch(backends_with(settings, status(), canary_signal=None)).rolled_back
    idle = watch(backends_with(settings, status(weight=0.0), canary_signal=0.3))
    assert not idle.rolled_back and idle.quality_checks == 0
