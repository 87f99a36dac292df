"""Progressive delivery (fraudctl.rollout) table-tested: every pair of gate verdicts, at
every step, at and around the time at a step and the deadline."""

from __future__ import annotations

import itertools

import pytest

from fraudctl.gates import Gate
from fraudctl.rollout import Move, Rollout, RolloutPlan, step_verdict

PLAN = RolloutPlan(steps=(10.0, 25.0, 50.0), step_every_s=600.0, deadline_s=1800.0)
VERDICTS = ["pass", "fail", "inconclusive"]
EPS = 1e-6
ELAPSED = [0.0, 600.0 - EPS, 600.0, 600.0 + EPS, 1800.0 - EPS, 1800.0, 10_000.0]


def gate(name: str, verdict: str) -> Gate:
    return Gate(name, verdict == "pass", {}, "rule", f"{name} said {verdict}",
                inconclusive=verdict == "inconclusive")  # fmt: skip


@pytest.mark.parametrize(
    ("serving", "quality", "step", "elapsed"),
    list(itertools.product(VERDICTS, VERDICTS, range(3), ELAPSED)),
)
def test_step_verdict_table(serving: str, quality: str, step: int, elapsed: float) -> None:
    rollout = Rollout("7", step, since=1000.0)
    verdict = step_verdict(PLAN, rollout, gate("serving", serving), gate("quality", quality),
                           now=1000.0 + elapsed)  # fmt: skip
    weight = PLAN.steps[step]
    if "fail" in (serving, quality):
        expected, after = Move.ROLLBACK, 0.0
    elif serving == quality == "pass" and elapsed >= 600.0:
        last = step == 2
        expected = Move.PROMOTE if last else Move.ADVANCE
        after = weight if last else PLAN.steps[step + 1]
    elif elapsed >= 1800.0:
        expected, after = Move.ROLLBACK, 0.0
    else:
        expected, after = Move.HOLD, weight
    assert (verdict.move, verdict.weight) == (expected, after), verdict.reason
    assert verdict.reason.startswith(f"step {step + 1}/3 ({weight:g} %)")
    # the reason names every gate that failed the canary, or else every one that held it
    failed = "fail" in (serving, quality)
    for name, said in (("serving", serving), ("quality", quality)):
        named = f"{name} said {said}" in verdict.reason
        if expected in (Move.ROLLBACK, Move.HOLD):
            assert named == (said == "fail" if failed else said != "pass"), verdict.reason


def test_a_failure_rolls_back_at_once_whatever_the_time() -> None:
    verdict = step_verdict(PLAN, Rollout("7", 0, 0.0), gate("serving", "pass"),
                           gate("quality", "fail"), now=1.0)  # fmt: skip
    assert verdict.move is Move.ROLLBACK and "quality: quality said fail" in verdict.reason


def test_a_canary_that_never_gets_a_verdict_is_rolled_back_at_the_deadline() -> None:
    held = step_verdict(PLAN, Rollout("7", 1, 0.0), gate("serving", "pass"),
                        gate("quality", "inconclusive"), now=1799.0)  # fmt: skip
    assert held.move is Move.HOLD and "quality inconclusive" in held.reason
    late = step_verdict(PLAN, Rollout("7", 1, 0.0), gate("serving", "pass"),
                        gate("quality", "inconclusive"), now=1800.0)  # fmt: skip
    assert late.move is Move.ROLLBACK and "no verdict in 1800 s" in late.reason


@pytest.mark.parametrize(
    ("text", "steps"),
    [("10,25,50", (10.0, 25.0, 50.0)), ("5", (5.0,)), (" 1, 2.5 ,99 ", (1.0, 2.5, 99.0))],
)
def test_steps_parse(text: str, steps: tuple[float, ...]) -> None:
    assert RolloutPlan.parse_steps(text) == steps


@pytest.mark.parametrize(
    ("text", "says"),
    [("", "at least one"), ("10,x", "comma-separated"), ("0,10", "(0, 100)"),
     ("10,100", "(0, 100)"), ("25,10", "must rise"), ("10,10", "must rise")],
)  # fmt: skip
def test_bad_steps_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=None) as found:
        RolloutPlan.parse_steps(text)
    assert says in str(found.value)


def test_a_deadline_shorter_than_a_step_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than the time at a step"):
        RolloutPlan(step_every_s=600.0, deadline_s=599.0)
