"""`fraudctl canary step` (fraudctl.services.canary_step) on fakes: a stateless step,
run again and again as a CronJob would, takes a good candidate from staging through
every step to production reading where it stands from the promotion log; a worse one
is rolled back at its first step; a restarted server gets its step's weight again."""

from __future__ import annotations

import time
from pathlib import Path

from fraudctl.config import Settings
from fraudctl.rollout import RolloutPlan
from fraudctl.services.canary_step import canary_step
from fraudctl.services.promote import history
from tests.conftest import RunCli
from tests.fakes import FakeBackends
from tests.unit.test_run_loop import Server, settings, with_production

__all__ = ["settings"]  # the fixture, shared with the loop's tests

PLAN = RolloutPlan((10.0, 25.0, 50.0), 60.0, 600.0)


class Later:
    """Wall time, moved on by the test (decisions are stamped with the real time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def steps(backends: FakeBackends, clock: Later, every_s: float, times: int) -> list[str]:
    moves = []
    for _ in range(times):
        moves.append(canary_step(backends, PLAN, "http://fake", clock).move)
        clock.offset += every_s
    return moves


def test_a_good_candidate_is_stepped_to_production_by_repeated_stateless_steps(
    settings: Settings,
) -> None:
    server = Server("2")
    backends = with_production(settings, server, canary_signal=2.0)
    clock = Later()
    assert canary_step(backends, PLAN, "http://fake", clock).move == "none"  # no candidate
    backends.registry.set_alias("staging", "2")
    moves = steps(backends, clock, 30.0, 9)
    # every 30 s: begun; held while the step is younger than 60 s, advanced once it is
    # 60 s old; again; promoted after the last step; then nothing to do
    assert moves == ["begin", "hold", "advance", "hold", "advance", "hold", "promote", "none",
                     "none"], moves  # fmt: skip
    # promote --to production sets the canary share to 0: production now serves it
    assert [w for w, _ in server.changes] == [10.0, 25.0, 50.0, 0.0]
    assert server.changes[-1][1] == "version 2 promoted to production"
    assert backends.registry.aliases(["production"]) == {"production": "2"}
    # (the canary's decisions are stamped with the test's clock, promote's with the real
    # one: the log's order by time is not the order here)
    recorded = sorted((d["to"], d["outcome"]) for d in history(backends.offline, "fraud-detector"))
    assert recorded == [("canary", "stepped")] * 3 + [("production", "promoted")], recorded
    # production moved back to version 1 by a person: version 2, still at staging, went
    # to production once and is not rolled out again
    backends.registry.set_alias("production", "1")
    again = canary_step(backends, PLAN, "http://fake", clock)
    assert again.move == "none" and "went to production before" in again.reason


def test_a_worse_candidate_is_rolled_back_at_its_first_step_and_stays_back(
    settings: Settings,
) -> None:
    server = Server("2")
    backends = with_production(settings, server, canary_signal=0.2)
    backends.registry.set_alias("staging", "2")
    clock = Later()
    first = canary_step(backends, PLAN, "http://fake", clock)
    assert (first.move, first.weight) == ("begin", 10.0)
    clock.offset += 61
    rolled = canary_step(backends, PLAN, "http://fake", clock)
    assert rolled.refused and rolled.weight == 0.0 and "quality" in rolled.reason
    assert server.weight == 0.0 and server.changes[-1][1].startswith("rollback: step 1/3")
    (decision,) = rolled.decisions
    assert decision["outcome"] == "rolled_back" and decision["to"] == "canary"
    assert [g["name"] for g in decision["gates"]] == ["serving", "quality"]
    again = canary_step(backends, PLAN, "http://fake", clock)
    assert again.move == "none" and "was rolled back" in again.reason
    assert backends.registry.aliases(["production"]) == {"production": "1"}


def test_a_restarted_server_gets_its_steps_weight_again(settings: Settings) -> None:
    server = Server("2")
    backends = with_production(settings, server, canary_signal=2.0)
    backends.registry.set_alias("staging", "2")
    clock = Later()
    canary_step(backends, PLAN, "http://fake", clock)
    server.weight = 0.0  # the server restarted: it begins at --canary 0
    clock.offset += 61
    held = canary_step(backends, PLAN, "http://fake", clock)
    assert held.move == "hold" and "served 0 %" in held.reason
    assert server.weight == 10.0


def test_bad_steps_are_a_usage_error(cli: RunCli, tmp_path: Path) -> None:
    result = cli("canary", "step", "--canary-steps", "50,10", "--json")
    assert result.code == 2 and "must rise" in result.err
