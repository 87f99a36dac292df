"""Progressive delivery: a canary's traffic share raised in steps, each step judged by
the canary gates before the next.  Pure: `fraudctl run` measures and moves; this says
what to do.

The semantics follow Argo Rollouts' analysis (a measurement is *successful*, *failed* or
*inconclusive*; inconclusive neither advances nor aborts) and Flagger's canary analysis
(step weights, an interval between steps, a progress deadline after which a canary that
never reached a verdict is rolled back):

- at a step, the serving gate (requests, error rate, p95 over the step's own traffic:
  :func:`fraudctl.gates.serving_gate`) and the quality gate (the canary's matured labels
  against the baseline's: :func:`fraudctl.gates.quality_gate`) each say pass, fail or
  inconclusive;
- **fail** (either gate, any time): roll back — the canary gets no traffic;
- **pass** (both) once the step has lasted ``step_every_s``: the next step, or after the
  last one, production (through ``promote --to production``, which judges again);
- otherwise **hold**; a step held ``deadline_s`` without both gates passing is rolled
  back (no verdict is not a good verdict).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fraudctl.gates import Gate

DEFAULT_STEPS = (10.0, 25.0, 50.0)


class Move(StrEnum):
    HOLD = "hold"
    ADVANCE = "advance"
    PROMOTE = "promote"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class RolloutPlan:
    """The canary weights (percent of users, rising, each in (0, 100)), the least time
    at each, and the most time a step may wait for a verdict."""

    steps: tuple[float, ...] = DEFAULT_STEPS
    step_every_s: float = 600.0
    deadline_s: float = 3600.0

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("give at least one canary step")
        if any(not 0 < w < 100 for w in self.steps):
            raise ValueError(f"canary steps are percentages in (0, 100): {self.steps}")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError(f"canary steps must rise: {self.steps}")
        if self.step_every_s <= 0:
            raise ValueError("the time at a step must be positive")
        if self.deadline_s < self.step_every_s:
            raise ValueError(
                f"the step deadline ({self.deadline_s:g} s) is shorter than the time at a "
                f"step ({self.step_every_s:g} s)"
            )

    @staticmethod
    def parse_steps(text: str) -> tuple[float, ...]:
        """``"10,25,50"`` → ``(10.0, 25.0, 50.0)``; ValueError naming what is wrong."""
        try:
            steps = tuple(float(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise ValueError(
                f"canary steps are comma-separated percentages like 10,25,50, not {text!r}"
            ) from None
        RolloutPlan(steps=steps)  # validates
        return steps


@dataclass(frozen=True)
class Rollout:
    """A canary in progress: the version, its step (an index into the plan's steps) and
    when that step began (seconds, the caller's clock)."""

    version: str
    step: int
    since: float

    def weight(self, plan: RolloutPlan) -> float:
        return plan.steps[self.step]


@dataclass(frozen=True)
class StepVerdict:
    move: Move
    weight: float  # the canary share after the move
    reason: str


def step_verdict(
    plan: RolloutPlan, rollout: Rollout, serving: Gate, quality: Gate, now: float
) -> StepVerdict:
    """What to do with a canary at its step, given the two gates measured now."""
    weight = rollout.weight(plan)
    at = f"step {rollout.step + 1}/{len(plan.steps)} ({weight:g} %)"
    failed = [g for g in (serving, quality) if g.verdict == "fail"]
    if failed:
        why = "; ".join(f"{g.name}: {g.detail}" for g in failed)
        return StepVerdict(Move.ROLLBACK, 0.0, f"{at}: {why}")
    elapsed = now - rollout.since
    waiting = [g for g in (serving, quality) if g.verdict != "pass"]
    if not waiting and elapsed >= plan.step_every_s:
        if rollout.step + 1 == len(plan.steps):
            return StepVerdict(Move.PROMOTE, weight, f"{at}: every gate passed; to production")
        following = plan.steps[rollout.step + 1]
        return StepVerdict(Move.ADVANCE, following, f"{at}: every gate passed; to {following:g} %")
    if waiting and elapsed >= plan.deadline_s:
        why = "; ".join(f"{g.name}: {g.detail}" for g in waiting)
        return StepVerdict(Move.ROLLBACK, 0.0, f"{at}: no verdict in {plan.deadline_s:g} s ({why})")
    if waiting:
        why = "; ".join(f"{g.name} inconclusive: {g.detail}" for g in waiting)
        return StepVerdict(Move.HOLD, weight, f"{at}: {why}")
    return StepVerdict(Move.HOLD, weight, f"{at}: passing; a step lasts {plan.step_every_s:g} s")
