"""One progressive-delivery step: the canary's serving and quality gates judged at its
step (``judge_step``, what `fraudctl run` does every --check-every), and
``canary_step``, the same step taken by a process that keeps no state between runs
(`fraudctl canary step`, a Kubernetes CronJob): where the rollout stands is read back
from the promotion log and the running server.

The state a stateless step reads: the candidate is the version at ``staging`` (the
server's canary variant serves that alias) while it is not ``production``; its canary
decisions in the promotion log (``to: canary``) say where it is — none: not begun;
``rolled_back``: done; each ``stepped`` one step further than the last, that step begun
when it was recorded."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraudctl.errors import BackendUnavailable
from fraudctl.gates import Alias, CanaryWindow, Gate, Limits, serving_gate
from fraudctl.ports import Backends
from fraudctl.rollout import Move, Rollout, RolloutPlan, StepVerdict, step_verdict


def judge_step(
    backends: Backends, url: str, plan: RolloutPlan, rollout: Rollout, limits: Limits,
    now: float, window_s: float,
) -> tuple[StepVerdict, list[Gate]] | str:  # fmt: skip
    """The verdict at the canary's step from what the server measured over ``window_s``
    and the quality gate on matured labels, with those two gates; a reason to hold (a
    string) when the server does not answer or does not serve the rollout's version as
    its canary yet."""
    from fraudctl.services.promote import measure_quality_gate

    try:
        status = backends.server(url).status(window_s)
    except BackendUnavailable as exc:
        return f"the server does not answer ({exc.message})"
    serving_version = ((status.get("models") or {}).get("canary") or {}).get("model_version")
    if str(serving_version) != rollout.version:
        return (f"the server does not serve version {rollout.version} as the canary yet "
                f"(canary: {serving_version or 'none'})")  # fmt: skip
    window = CanaryWindow.of((status.get("variants") or {}).get("canary"), window_s)
    serving = serving_gate(window, limits)
    quality = measure_quality_gate(backends, rollout.version, limits)
    return step_verdict(plan, rollout, serving, quality, now), [serving, quality]


@dataclass
class StepResult:
    """What one `canary step` did: ``move`` is none, begin, hold, advance, rollback or
    promote; ``decisions`` what it recorded."""

    move: str
    version: str | None
    weight: float | None
    reason: str
    decisions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return self.move == "rollback"

    def as_dict(self) -> dict[str, Any]:
        return {"move": self.move, "version": self.version, "weight": self.weight,
                "reason": self.reason, "decisions": self.decisions}  # fmt: skip


def _epoch(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()


def _at(clock: Callable[[], float]) -> datetime:
    """A decision's time on the step's clock: a step begins when it is recorded."""
    return datetime.fromtimestamp(clock(), UTC)


@dataclass(frozen=True)
class Standing:
    """Where the rollout stands, read back (module docstring): the candidate at
    ``staging`` beyond ``production`` (None: none) and its canary decisions, oldest first."""

    version: str | None
    canary: list[dict[str, Any]] = field(default_factory=list)
    was_production: bool = False  # promoted to production once (production moved back since)

    @property
    def rolled_back(self) -> bool:
        return bool(self.canary) and self.canary[-1].get("outcome") == "rolled_back"

    @property
    def settled(self) -> bool:
        """Judged already: rolled back, or promoted to production once."""
        return self.rolled_back or self.was_production

    def rollout(self, plan: RolloutPlan) -> Rollout | None:
        """The rollout in progress (``since`` in epoch seconds: when its step was
        recorded); None when it has not begun or was rolled back."""
        if self.version is None or not self.canary or self.settled:
            return None
        step = min(len(self.canary) - 1, len(plan.steps) - 1)
        return Rollout(self.version, step, _epoch(str(self.canary[-1]["at"])))


def candidate_at_staging(backends: Backends) -> str | None:
    """The version at staging while it is not production (None: no candidate)."""
    aliases = backends.registry.aliases([Alias.STAGING, Alias.PRODUCTION])
    version = aliases[Alias.STAGING]
    return None if version is None or version == aliases[Alias.PRODUCTION] else version


def standing(backends: Backends, version: str | None) -> Standing:
    """The candidate ``version`` (:func:`candidate_at_staging`) and its decisions in the
    promotion log."""
    from fraudctl.services.promote import history

    if version is None:
        return Standing(None)
    log = history(backends.offline, backends.registry.model_name)
    mine = [d for d in log if d.get("version") == version]
    canary = [d for d in mine if d.get("to") == "canary"]
    promoted = any(d.get("to") == Alias.PRODUCTION and d.get("outcome") == "promoted" for d in mine)
    return Standing(version, canary, promoted)


def canary_step(
    backends: Backends, plan: RolloutPlan, url: str, clock: Callable[[], float] = time.time
) -> StepResult:
    """Take the candidate's next step, reading where it stands (module docstring)."""
    from fraudctl.services.promote import PromoteOptions, promote, record_canary_decision

    found = standing(backends, candidate_at_staging(backends))
    version, canary = found.version, found.canary
    if version is None:
        return StepResult("none", None, None, "no candidate at staging beyond production")
    server = backends.server(url)
    if found.rolled_back:
        return StepResult("none", version, 0.0, f"version {version} was rolled back "
                          f"({canary[-1].get('reason')}); waiting for a new candidate")  # fmt: skip
    if found.was_production:  # production was moved back from it since: not again
        return StepResult("none", version, None, f"version {version} went to production "
                          "before; waiting for a new candidate")  # fmt: skip
    rollout = found.rollout(plan)
    if rollout is None:
        weight = plan.steps[0]
        reason = f"version {version} is at staging: canary at step 1 ({weight:g} %)"
        server.set_canary(weight, reason)
        decision = record_canary_decision(backends, version, "stepped", reason, [], _at(clock))
        return StepResult("begin", version, weight, reason, [decision])
    weight = rollout.weight(plan)
    now = clock()
    served = float(server.status(1.0).get("canary_weight") or 0.0)
    if served != weight:  # a restarted server starts at 0 %: the step's weight again
        server.set_canary(weight, f"canary step: version {version} is at {weight:g} %")
        said = f"the server served {served:g} %, not the step's {weight:g} %: set again"
        return StepResult("hold", version, weight, said)
    judged = judge_step(backends, url, plan, rollout, Limits.of(backends.settings), now,
                        max(now - rollout.since, 1.0))  # fmt: skip
    if isinstance(judged, str):
        return StepResult("hold", version, weight, judged)
    verdict, gates = judged
    if verdict.move is Move.HOLD:
        return StepResult("hold", version, weight, verdict.reason)
    if verdict.move in (Move.ADVANCE, Move.ROLLBACK):
        said = verdict.reason if verdict.move is Move.ADVANCE else f"rollback: {verdict.reason}"
        server.set_canary(verdict.weight, said)
        outcome = "stepped" if verdict.move is Move.ADVANCE else "rolled_back"
        decision = record_canary_decision(backends, version, outcome, verdict.reason, gates,
                                          _at(clock))  # fmt: skip
        return StepResult(str(verdict.move), version, verdict.weight, verdict.reason, [decision])
    promoted = promote(backends, PromoteOptions(to=Alias.PRODUCTION, version=version,
                                                serve_url=url)).as_dict()  # fmt: skip
    if promoted.get("outcome") == "promoted":
        return StepResult("promote", version, weight, verdict.reason, [promoted])
    if promoted.get("outcome") == "refused":
        reason = f"promote --to production refused: {promoted.get('reason')}"
        server.set_canary(0.0, f"rollback: {reason}")
        rolled = record_canary_decision(backends, version, "rolled_back", reason, [], _at(clock))
        return StepResult("rollback", version, 0.0, reason, [promoted, rolled])
    return StepResult("hold", version, weight, f"promote --to production: {promoted.get('reason')}",
                      [promoted])  # fmt: skip
