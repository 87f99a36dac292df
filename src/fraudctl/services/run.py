"""`fraudctl run`: the platform running by itself (docs/run.md).

Children, supervised (:mod:`fraudctl.services.supervise`), each started once what it
needs exists: ``materialize --follow`` (always), ``serve`` (once there is a production
model), the producer (``produce --score``: served traffic whose labels follow; once the
server is ready; optional).  Jobs, one at a time, each the real command in a child
process with its JSON result kept: ``train``, ``drift`` and ``quality`` on wall-clock
intervals (:mod:`fraudctl.schedule`), and the promotions they lead to.  Progressive
delivery (:mod:`fraudctl.rollout`) judged in this process every ``check_every_s``: a
candidate that passes the staging gates becomes the canary at the first step; each step
advances, holds or rolls back on the serving and quality gates; after the last, ``promote
--to production`` (its own gates again).  Every step and rollback is a decision in the
promotion log, beside `promote`'s own.

With no production model yet and a producer, the run first lays down a history
(``produce --rate 0``), materializes it and trains, and promotes the first model through
staging to production (nothing to protect yet: the production gates are waived).
"""

from __future__ import annotations

import json
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fraudctl.errors import BackendUnavailable
from fraudctl.gates import Alias, Gate, Limits
from fraudctl.ports import Backends, Child, Gauge, Spawner
from fraudctl.rollout import Move, Rollout, RolloutPlan
from fraudctl.schedule import Every, next_due
from fraudctl.services.canary_step import judge_step
from fraudctl.services.live import Observer
from fraudctl.services.supervise import Backoff, ChildSpec, Supervisor, stop_child

RUN_JOB = "fraudctl_run"  # the Pushgateway job of the run's gauges
RECENT_EVENTS = 8  # the events the live view lists
STOP_ORDER = ["produce", "materialize", "serve"]  # the producer first, the server last
HOLD_REPEAT_S = 60.0


@dataclass(frozen=True)
class RunOptions:
    fraudctl: tuple[str, ...]  # how to call fraudctl (interpreter, module, global flags)
    logs: Path
    port: int
    engine: str = "ray"
    rate: float | None = 20.0  # None: no producer (a real deployment has its own stream)
    label_delay_s: float = 60.0
    fraud_rate: float | None = None  # the producer's and the history's (None: produce's)
    plan: RolloutPlan = field(default_factory=RolloutPlan)
    train_every_s: float = 3600.0
    drift_every_s: float = 900.0
    quality_every_s: float = 300.0
    check_every_s: float = 15.0
    for_s: float | None = None
    history_events: int = 20_000
    backoff: Backoff = field(default_factory=Backoff)
    metrics_port: int = 0  # the materializer's Prometheus port (0: it serves none)
    observe_every_s: float | None = None  # the live view's figures (None: not read)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class _Job:
    name: str
    child: Child
    out: Path
    log: Path
    started: float
    schedule: Every | None


@dataclass
class RunSummary:
    seconds: float = 0.0
    interrupted: bool = False
    decisions: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, dict[str, int]] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    rollout: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 1), "interrupted": self.interrupted,
                "decisions": self.decisions, "jobs": self.jobs, "restarts": self.restarts,
                "rollout": self.rollout}  # fmt: skip


class Run:
    def __init__(
        self,
        backends: Backends,
        options: RunOptions,
        spawner: Spawner,
        env: dict[str, str],
        emit: Callable[[dict[str, Any]], None],
        should_stop: Callable[[], bool],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_tick: Callable[[Run], None] | None = None,
    ) -> None:
        self._on_tick = on_tick  # after every turn of the loop (the live view redraws)
        self.backends, self.options, self._spawner, self._env = backends, options, spawner, env
        self._emit_to, self._should_stop, self._clock, self._sleep = emit, should_stop, clock, sleep
        self.limits = Limits.of(backends.settings)
        self.supervisor = Supervisor(spawner, env, options.backoff, clock)
        self.summary = RunSummary()
        self._job: _Job | None = None
        self._queue: list[str] = []
        self._jobs_run = 0
        self._rollout: Rollout | None = None
        self._promoting: str | None = None  # the version whose production promotion runs
        self._held: str | None = None
        self._held_at = 0.0
        self._ready = False
        self._bootstrapping = False
        self._replan_at: float | None = None
        self._history_laid = False  # a retried bootstrap does not lay down a second one
        self._history_end: datetime | None = None  # wall time the history's events end
        self._last: dict[str, dict[str, Any]] = {}  # each job's last result event
        self._hold_reason: str | None = None
        self._trained: str | None = None  # the version the last train registered
        self._trained_meanwhile = False  # a version trained while a rollout was out
        self._settled: set[str] = set()  # versions found at staging already judged
        self._warned: str | None = None
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self._observer = None if options.observe_every_s is None else Observer(
            backends.scraper,
            f"http://127.0.0.1:{options.metrics_port}/metrics" if options.metrics_port else None,
            backends.server(options.url), options.observe_every_s, clock,
        )  # fmt: skip
        now = clock()
        self.schedules = [
            Every("train", options.train_every_s, now + options.train_every_s),
            Every("drift", options.drift_every_s, now + options.drift_every_s),
            Every("quality", options.quality_every_s, now + options.quality_every_s),
        ]
        self._check = Every("canary-check", options.check_every_s, now)

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> RunSummary:
        started = self._clock()
        self.emit({"event": "run_started", "url": self.options.url, "logs": str(self.options.logs),
                   "profile": self.backends.settings.profile})  # fmt: skip
        self._plan_start()
        try:
            while not self._should_stop():
                if self.options.for_s is not None and self._clock() - started >= self.options.for_s:
                    break
                self._tick()
                if self._on_tick is not None:
                    self._on_tick(self)
                self._sleep(0.2)
            else:
                self.summary.interrupted = True
        finally:
            self._stop()
            self.summary.seconds = self._clock() - started
            self.summary.restarts = self.supervisor.restarts()
            self.summary.rollout = self.rollout()
            self.summary.jobs = {s.name: {"runs": s.runs, "skipped": s.skipped}
                                 for s in self.schedules}  # fmt: skip
            self.emit({"event": "run_stopped", "seconds": round(self.summary.seconds, 1),
                       "interrupted": self.summary.interrupted})  # fmt: skip
        return self.summary

    def _plan_start(self) -> None:
        """What the run needs first: a production model to serve."""
        production = self.backends.registry.aliases([Alias.PRODUCTION])[Alias.PRODUCTION]
        if production is not None:
            return
        self._bootstrapping, self._replan_at = True, None
        first = ["train", "drift-history", "promote-staging"]
        if self.options.rate is not None and self._history_laid:
            self.emit({"event": "bootstrap", "reason": "no production model yet: training "
                       "again on the history and what the stream has brought"})  # fmt: skip
            self._queue = ["materialize", *first]
        elif self.options.rate is not None:
            events = self.options.history_events
            self.emit({"event": "bootstrap", "reason": "no production model yet: a history of "
                       f"{events:,} events, then train and promote"})  # fmt: skip
            self._queue = ["history", "materialize", *first]
        else:
            self.emit({"event": "bootstrap", "reason": "no production model yet: training on "
                       "what the stream has brought, then promoting"})  # fmt: skip
            self._queue = first

    def _tick(self) -> None:
        for event in self.supervisor.check():
            if event["event"] in ("exited", "restarted") and event["child"] == "serve":
                self._ready = False
            self.emit(event)
            if event["event"] == "restarted":
                self._push()
        self._children()
        if self._observer is not None:
            self._observer.observe(serving=self._ready)
        if self._job is not None:
            self._poll_job()
        if self._job is None:
            self._next_job()
        now = self._clock()
        if not self._bootstrapping and self._promoting is None and self._check.due(now):
            if self._rollout is not None:
                self._step()
            elif not self._promotion_pending():
                self._discover()
            self._check.ran(self._clock())

    def _children(self) -> None:
        """Start each child once what it needs is there."""
        follow = not self._bootstrapping or self.options.rate is None  # else: its history first
        if follow and not self.supervisor.known("materialize"):
            self._start_child(
                "materialize",
                ["materialize", "--follow", "--metrics-port", str(self.options.metrics_port)],
            )
        if not self._bootstrapping and not self.supervisor.known("serve"):
            self._start_child("serve", ["serve", "--port", str(self.options.port), "--engine",
                                        self.options.engine, "--canary", "0", "--shadow"],
                              grace=60.0)  # fmt: skip
        if self.supervisor.known("serve") and not self._ready and self.supervisor.running("serve"):
            try:
                self.backends.server(self.options.url).status(1.0)
            except BackendUnavailable:
                return
            self._ready = True
            self.emit({"event": "ready", "child": "serve", "url": self.options.url})
            if self._rollout is not None:  # a restarted server starts at --canary 0
                weight = self._rollout.weight(self.options.plan)
                self._set_weight(weight, f"the server is back: version "
                                 f"{self._rollout.version} at {weight:g} % again")  # fmt: skip
        if self._ready and self.options.rate is not None and not self.supervisor.known("produce"):
            self._start_child("produce", [
                "produce", "--rate", f"{self.options.rate:g}", "--score", self.options.url,
                "--label-delay", f"{self.options.label_delay_s:g}",
                *self._fraud_rate(), "--seed", str(int(time.time())),
            ])  # fmt: skip

    def _fraud_rate(self) -> list[str]:
        rate = self.options.fraud_rate
        return [] if rate is None else ["--fraud-rate", f"{rate:g}"]

    def _start_child(self, name: str, args: list[str], grace: float = 30.0) -> None:
        spec = ChildSpec(name, (*self.options.fraudctl, *args), self.options.logs / f"{name}.log",
                         stop_signal=signal.SIGTERM, stop_grace_s=grace)  # fmt: skip
        self.emit(self.supervisor.start(spec))

    # -- jobs ---------------------------------------------------------------------------

    def _next_job(self) -> None:
        if self._queue:
            self._start_job(self._queue.pop(0), None)
            return
        if self._bootstrapping:
            if self._replan_at is not None and self._clock() >= self._replan_at:
                self._plan_start()
            return
        due = next_due(self.schedules, self._clock())
        if due is not None:
            self._start_job(due.name, due)

    def _job_args(self, name: str) -> list[str]:
        url = self.options.url
        return {
            # at the producer's rate, so that the live stream's features (events per user
            # per hour, …) are those the first model was trained on
            "history": ["produce", "--rate", "0", "--count", str(self.options.history_events),
                        "--label-delay", "0", "--span", f"{self._history_span_s():.0f}s",
                        *self._fraud_rate(), "--seed", "1"],
            "materialize": ["materialize"],
            "train": ["train"],
            # the history's newest quarter against the training window: the staging gate
            # needs a drift result
            "drift-history": ["drift", "--source", "events", "--current",
                              self._history_newest()],
            # served traffic since the last drift run
            "drift": ["drift", "--current", f"last:{max(self.options.drift_every_s, 60):.0f}s"],
            "quality": ["quality", "--window", "last:24h", "--by", "variant"],
            "promote-staging": ["promote", "--to", "staging",
                                *(["--version", self._trained] if self._trained else [])],
            "promote-production": ["promote", "--to", "production", "--url", url],
        }[name]  # fmt: skip

    def _history_newest(self) -> str:
        """The newest quarter of the history's event time: it ends when the history
        job began (`produce --span` without --start ends the span then), not when this
        drift job begins, a train later. With no history laid down here (no producer),
        the stream's newest quarter of that span."""
        quarter = self._history_span_s() / 4
        if self._history_end is None:
            return f"last:{quarter:.0f}s"
        end = self._history_end
        return f"{_iso(end - timedelta(seconds=quarter))}/{_iso(end + timedelta(seconds=1))}"

    def _history_span_s(self) -> float:
        return max(self.options.history_events / (self.options.rate or 1.0), 60.0)

    def _start_job(self, name: str, schedule: Every | None) -> None:
        if name == "history":
            self._history_end = datetime.now(UTC)
        self._jobs_run += 1
        stem = self.options.logs / "jobs" / f"{self._jobs_run:04d}-{name}"
        out, log = stem.with_suffix(".json"), stem.with_suffix(".log")
        argv = (*self.options.fraudctl, *self._job_args(name), "--json")
        child = self._spawner.spawn(argv, log, self._env, out)
        self._job = _Job(name, child, out, log, self._clock(), schedule)
        self.emit({"event": "job_started", "job": name, "log": str(log)})

    def _poll_job(self) -> None:
        job = self._job
        assert job is not None
        code = job.child.poll()
        if code is None:
            return
        self._job = None
        if job.schedule is not None:
            job.schedule.ran(self._clock())
        result = _read_json(job.out)
        event: dict[str, Any] = {
            "event": "job", "job": job.name, "exit_code": code,
            "seconds": round(self._clock() - job.started, 1), "log": str(job.log),
        }  # fmt: skip
        if code not in (0, 4):
            error = (result or {}).get("error") or {}
            event["error"] = error.get("message") or f"exited {code}; see its log"
            self.emit(event | {"ok": False})
            if self._bootstrapping:  # the history, its training: again from the top, later
                self._queue = []
                self._replan_at = self._clock() + min(self.options.train_every_s, 60.0)
            return
        event["result"] = _brief(job.name, result)
        self.emit(event | {"ok": True})
        self._after(job.name, result or {})

    def _after(self, name: str, result: dict[str, Any]) -> None:
        """What a job's result leads to."""
        if name == "history":
            self._history_laid = True
        elif name == "train" and result.get("version") is not None:
            self._trained = str(result["version"])
            if self._bootstrapping:
                return
            if self._rollout is None and self._promoting is None:
                self._queue.append("promote-staging")
            else:  # the newest one is judged once the rollout in progress has ended
                self._trained_meanwhile = True
        elif name == "promote-staging":
            self._decided(result)
            if result.get("outcome") != "promoted":
                if self._bootstrapping:
                    self._replan_at = self._clock() + min(self.options.train_every_s, 60.0)
                return
            version = str(result["version"])
            if self._bootstrapping:
                self._queue.append("promote-production")  # waived: nothing to protect yet
            else:
                self._begin_rollout(version)
        elif name == "promote-production":
            self._decided(result)
            self._production_result(result)

    def _production_result(self, result: dict[str, Any]) -> None:
        outcome = result.get("outcome")
        if self._bootstrapping:
            if outcome == "promoted":
                self._bootstrapping = False
                # Nothing was served before: drift on served traffic, quality of served
                # predictions and a retraining all begin their grids with the serving.
                for schedule in self.schedules:
                    schedule.begin_at(self._clock())
            else:
                self._replan_at = self._clock() + min(self.options.train_every_s, 60.0)
            return
        version, self._promoting = self._promoting, None
        if outcome == "promoted":
            self._rollout = None
            self._settled.add(str(version))
            self._rollout_ended()
        elif outcome == "refused" and version is not None:
            self._roll_back(version, f"promote --to production refused: {result.get('reason')}")
        # inconclusive: the canary stays at its last step and is judged again
        self._push()

    def _rollout_ended(self) -> None:
        """The newest version trained while the rollout was out is the next candidate."""
        if self._trained_meanwhile:
            self._trained_meanwhile = False
            self._queue.append("promote-staging")

    # -- progressive delivery -----------------------------------------------------------

    def _begin_rollout(self, version: str, why: str = "passed the staging gates") -> None:
        plan = self.options.plan
        self._rollout = Rollout(version, 0, self._clock())
        weight = plan.steps[0]
        reason = f"version {version} {why}: canary at step 1 ({weight:g} %)"
        self._set_weight(weight, reason)
        self._record(version, "stepped", reason, [])

    def _promotion_pending(self) -> bool:
        """A promotion of the run's own running or queued: staging may move under it (to
        a version the run is about to roll out itself). Other jobs do not hold the search
        back: on a loaded machine drift, quality and training can run back to back."""
        names = [*self._queue, *([self._job.name] if self._job is not None else [])]
        return any(name.startswith("promote-") for name in names)

    def _discover(self) -> None:
        """A candidate this run did not promote: put at staging by someone else (`promote`
        from CI, a person in MLflow's UI) — its canary begins — or one whose rollout an
        earlier run (or `canary step`) left in progress — it goes on from its step."""
        from fraudctl.services.canary_step import candidate_at_staging, standing

        try:
            version = candidate_at_staging(self.backends)
            if version is None or version in self._settled:
                return
            found = standing(self.backends, version)
        except BackendUnavailable as exc:
            if self._warned != exc.message:
                self._warned = exc.message
                self.emit({"event": "warning", "reason": f"staging not read: {exc.message}"})
            return
        self._warned = None
        rollout = found.rollout(self.options.plan)
        if found.settled:
            self._settled.add(version)
        elif rollout is None:
            self._begin_rollout(version, "is at staging (not promoted by this run)")
        else:  # its step began when it was recorded: on this run's clock
            since = self._clock() - max(time.time() - rollout.since, 0.0)
            self._rollout = Rollout(version, rollout.step, since)
            weight = self._rollout.weight(self.options.plan)
            self.emit({"event": "resumed", "version": version, "step": rollout.step + 1,
                       "weight": weight})  # fmt: skip
            self._set_weight(weight, f"resumed: version {version} at step {rollout.step + 1}")

    def _step(self) -> None:
        rollout = self._rollout
        assert rollout is not None
        now = self._clock()
        judged = judge_step(self.backends, self.options.url, self.options.plan, rollout,
                            self.limits, now, max(now - rollout.since, 1.0))  # fmt: skip
        if isinstance(judged, str):
            self._hold(judged)
            return
        verdict, gates = judged
        if verdict.move is Move.HOLD:
            self._hold(verdict.reason)
        elif verdict.move is Move.ADVANCE:
            self._rollout = Rollout(rollout.version, rollout.step + 1, self._clock())
            self._set_weight(verdict.weight, verdict.reason)
            self._record(rollout.version, "stepped", verdict.reason, gates)
        elif verdict.move is Move.ROLLBACK:
            self._roll_back(rollout.version, verdict.reason, gates)
        else:
            self._promoting = rollout.version
            self.emit({"event": "promoting", "version": rollout.version, "reason": verdict.reason})
            self._queue.append("promote-production")

    def _hold(self, reason: str) -> None:
        """A hold is an event when what holds the canary changes (its figures aside), and
        once a minute while it lasts."""
        import re

        kind = re.sub(r"[0-9.,]+", "#", reason)
        now = self._clock()
        if kind != self._held or now - self._held_at >= HOLD_REPEAT_S:
            self._held, self._held_at = kind, now
            self.emit({"event": "hold", "reason": reason})

    def _roll_back(self, version: str, reason: str, gates: list[Gate] | None = None) -> None:
        self._rollout = None
        self._settled.add(version)
        self._set_weight(0.0, f"rollback: {reason}")
        self._record(version, "rolled_back", reason, gates or [])
        self._rollout_ended()

    def _set_weight(self, weight: float, reason: str) -> None:
        try:
            self.backends.server(self.options.url).set_canary(weight, reason)
        except BackendUnavailable as exc:
            self.emit({"event": "warning", "reason": f"canary weight not set: {exc.message}"})
        self._held = None

    def _record(self, version: str, outcome: str, reason: str, gates: list[Gate]) -> None:
        from fraudctl.services.promote import record_canary_decision

        decision = record_canary_decision(self.backends, version, outcome, reason, gates)
        self._decided(decision)

    def _decided(self, decision: dict[str, Any]) -> None:
        if not decision.get("outcome"):
            return
        brief = {k: decision.get(k) for k in ("id", "to", "version", "outcome", "reason")}
        brief["decided_at"] = decision.get("at")
        self.summary.decisions.append(brief)
        self.emit({"event": "decision", **brief})
        self._push()

    def rollout(self) -> dict[str, Any] | None:
        """The canary in progress: its version, step (from 1) and weight."""
        rollout = self._rollout
        return None if rollout is None else {
            "version": rollout.version, "step": rollout.step + 1,
            "weight": rollout.weight(self.options.plan),
        }  # fmt: skip

    # -- observability and stopping -----------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        event = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **event}
        kind = event["event"]
        if kind == "job":
            self._last[str(event["job"])] = event
        elif kind == "hold":
            self._hold_reason = str(event["reason"])
        elif kind in ("decision", "promoting"):
            self._hold_reason = None
        self.recent.append(event)
        self._emit_to(event)

    def snapshot(self) -> dict[str, Any]:
        """What the live view draws, as plain values: the children, the running job
        and when each scheduled one is next due, each job's last result, the canary in
        progress (and what holds it), the last decisions and the live figures."""
        now = self._clock()
        restarts = self.supervisor.restarts()
        children = {
            name: {"running": self.supervisor.running(name), "restarts": restarts.get(name, 0),
                   "ready": self._ready if name == "serve" else None}
            for name in STOP_ORDER if self.supervisor.known(name)
        }  # fmt: skip
        job = self._job
        return {
            "bootstrapping": self._bootstrapping,
            "children": children,
            "job": None if job is None else {"name": job.name,
                                             "seconds": round(now - job.started, 1)},
            "next": {s.name: round(s.wait(now), 1) for s in self.schedules},
            "queue": list(self._queue),
            "last": {name: dict(event) for name, event in self._last.items()},
            "rollout": self.rollout(),
            "held": self._hold_reason if self._rollout is not None else None,
            "decisions": [dict(d) for d in self.summary.decisions[-5:]],
            "figures": dict(self._observer.figures) if self._observer is not None else {},
            "recent": [dict(e) for e in self.recent],
        }  # fmt: skip

    def _push(self) -> None:
        outcomes = [str(decision["outcome"]) for decision in self.summary.decisions]
        gauges = run_gauges(self.rollout(), self.supervisor.restarts(), outcomes)
        error = self.backends.pusher.push(RUN_JOB, {"model": self.backends.registry.model_name},
                                          gauges)  # fmt: skip
        if error is not None:
            self.emit({"event": "warning", "reason": f"run gauges not pushed: {error}"})

    def _stop(self) -> None:
        if self._job is not None:
            job, self._job = self._job, None
            code, _killed = stop_child(job.child, signal.SIGTERM, 60.0)
            self.emit({"event": "job", "job": job.name, "exit_code": code, "ok": False,
                       "error": "stopped with the run", "log": str(job.log)})  # fmt: skip
        for event in self.supervisor.stop(STOP_ORDER):
            self.emit(event)


def run_gauges(
    rollout: dict[str, Any] | None, restarts: dict[str, int], outcomes: list[str]
) -> list[Gauge]:
    """What the run pushes (job ``fraudctl_run``; the Traffic Split dashboard's run row):
    the canary weight and step it set, restarts per child, decisions by outcome."""
    rollout = rollout or {}
    gauges = [
        Gauge("fraudctl_run_canary_weight", "The canary weight the run set (percent).",
              float(rollout.get("weight") or 0.0)),
        Gauge("fraudctl_run_canary_step", "The rollout step of the canary (0: none).",
              float(rollout.get("step") or 0)),
    ]  # fmt: skip
    gauges += [Gauge("fraudctl_run_restarts", "Restarts of a supervised child.", float(n),
                     {"child": name}) for name, n in restarts.items()]  # fmt: skip
    counted = {outcome: outcomes.count(outcome) for outcome in dict.fromkeys(outcomes)}
    gauges += [Gauge("fraudctl_run_decisions", "Decisions the run recorded, by outcome.",
                     float(n), {"outcome": o}) for o, n in counted.items()]  # fmt: skip
    return gauges


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _brief(job: str, result: dict[str, Any] | None) -> dict[str, Any]:
    """The few figures of a job's result an event line carries."""
    result = result or {}
    keys = {
        "train": ("version",),
        "drift": ("status", "drift_score"),
        "drift-history": ("status", "drift_score"),
        "promote-staging": ("outcome", "version", "reason"),
        "promote-production": ("outcome", "version", "reason"),
        "history": ("published", "labels_published"),
        "materialize": ("valid", "dead_lettered"),
    }.get(job, ())
    brief = {k: result[k] for k in keys if k in result}
    if job == "train":
        metrics = result.get("metrics") or {}
        brief |= {k: metrics[k] for k in ("roc_auc", "pr_auc") if k in metrics}
    if job == "quality":
        brief["groups"] = {g.get("group"): g.get("status") for g in result.get("groups") or []}
    return brief
