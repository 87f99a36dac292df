"""`fraudctl run`'s loop (fraudctl.services.run) on fakes: scripted children and jobs, a
server answering a status, the prediction log in memory, a fake clock.  A candidate
goes through every canary step to production; a worse one is rolled back at its first
step; the first model is bootstrapped; a child is restarted; a crash loop stops
everything; a stop stops the children in order."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from fraudctl.config import Settings, load_settings
from fraudctl.rollout import RolloutPlan
from fraudctl.services.promote import history
from fraudctl.services.run import Run, RunOptions
from fraudctl.services.supervise import Backoff, CrashLoop
from tests.fakes import FakeBackends, FakeClock, FakeServer, ScriptedSpawner
from tests.unit.test_quality import load, traffic


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    environ = {"FRAUDCTL_HOME": str(tmp_path), "FRAUDCTL_PROMOTE_QUALITY_MARGIN": "0.2",
               "FRAUDCTL_PROMOTE_CANARY_MIN_REQUESTS": "100"}  # fmt: skip
    return load_settings(environ=environ, cwd=tmp_path).settings


class Server(FakeServer):
    """Serves version ``canary`` as the canary once its weight is set; healthy figures."""

    def __init__(
        self, canary: str, error_rate: float = 0.0, clock: FakeClock | None = None
    ) -> None:
        super().__init__(url="http://fake")
        self.canary, self.error_rate, self.weight = canary, error_rate, 0.0
        self.answer = self._status
        self.clock, self.times = clock or FakeClock(), list[float]()

    def _status(self) -> dict[str, Any]:
        return {"canary_weight": self.weight, "models": {"canary": {"model_version": self.canary}},
                "variants": {"canary": {"requests": 500, "error_rate": self.error_rate,
                                        "p95_ms": 12.0}}}  # fmt: skip

    def set_canary(self, weight: float, reason: str) -> dict[str, Any]:
        self.weight = weight
        self.times.append(self.clock())
        return super().set_canary(weight, reason)


def jobs(version: str = "2", outcomes: dict[str, str] | None = None) -> Any:
    """Each job's exit code and document, as the real commands print them."""
    outcomes = {"promote-staging": "promoted", "promote-production": "promoted"} | (outcomes or {})

    def respond(argv: list[str]) -> tuple[int, dict[str, Any]]:
        command = argv[argv.index("fraudctl") + 1 :] if "fraudctl" in argv else argv
        name = command[0]
        if name == "promote":
            to = command[command.index("--to") + 1]
            outcome = outcomes[f"promote-{to}"]
            return (0 if outcome == "promoted" else 4), {
                "id": f"{to}-{version}",
                "to": to,
                "version": version,
                "outcome": outcome,
                "reason": f"{to} said {outcome}",
                "at": "2026-12-02T00:00:00+00:00",
            }
        if name == "train":
            return 0, {"version": version, "metrics": {"roc_auc": 0.95, "pr_auc": 0.7}}
        if name == "drift":
            return 0, {"status": "ok", "drift_score": 0.01}
        return 0, {"status": "ok"}

    return respond


def a_run(backends: FakeBackends, spawner: ScriptedSpawner, clock: FakeClock, tmp_path: Path,
          **changes: Any) -> Run:  # fmt: skip
    options = RunOptions(**({
        "fraudctl": ("python", "-m", "fraudctl"), "logs": tmp_path / "logs", "port": 9,
        "rate": 10.0, "plan": RolloutPlan((10.0, 25.0, 50.0), 60.0, 600.0),
        "train_every_s": 1000.0, "drift_every_s": 1000.0, "quality_every_s": 1000.0,
        "check_every_s": 10.0, "for_s": 1500.0,
    } | changes))  # fmt: skip
    events: list[dict[str, Any]] = []
    run = Run(backends, options, spawner, {"FRAUDCTL_HOME": "x"}, events.append, lambda: False,
              clock=clock, sleep=clock.sleep)  # fmt: skip
    run.events = events  # type: ignore[attr-defined]
    run.schedules[0].next_at = 0.0  # the first training at once
    return run


def with_production(settings: Settings, server: Server, canary_signal: float) -> FakeBackends:
    backends = FakeBackends(settings, serving=server)
    for _ in range(2):
        backends.registry.add_version(object())
    backends.registry.set_alias("production", "1")
    load(backends.offline, traffic(5000, 21, canary_signal=canary_signal, canary_share=0.5))
    return backends


def commands(spawner: ScriptedSpawner) -> list[str]:
    return [" ".join(a[3:5]) for a in spawner.argvs]


def good_candidate(settings: Settings) -> tuple[FakeClock, Server, FakeBackends]:
    """Production at version 1, version 2 a better canary on a healthy server."""
    clock = FakeClock()
    server = Server("2", clock=clock)
    return clock, server, with_production(settings, server, canary_signal=2.0)


def test_a_good_candidate_goes_through_every_step_to_production(
    settings: Settings, tmp_path: Path
) -> None:
    clock, server, backends = good_candidate(settings)
    spawner = ScriptedSpawner(jobs("2"))
    run = a_run(backends, spawner, clock, tmp_path, for_s=600.0)
    summary = run.run()
    assert [w for w, _ in server.changes] == [10.0, 25.0, 50.0]
    outcomes = [(d["to"], d["outcome"]) for d in summary.decisions]
    assert all(d["version"] == "2" for d in summary.decisions)
    assert outcomes == [("staging", "promoted"), ("canary", "stepped"), ("canary", "stepped"),
                        ("canary", "stepped"), ("production", "promoted")]  # fmt: skip
    assert summary.rollout is None
    # the canary's transitions are in the promotion log, beside promote's own decisions
    recorded = history(backends.offline, backends.registry.model_name)
    assert [(d["to"], d["outcome"]) for d in recorded] == [("canary", "stepped")] * 3
    assert "every gate passed; to 25 %" in recorded[1]["reason"]
    assert [g["name"] for g in recorded[1]["gates"]] == ["serving", "quality"]
    assert backends.registry.version_tags("2")["fraudctl.promote.canary"] == "stepped"
    started = commands(spawner)
    assert started[:3] == ["materialize --follow", "serve --port", "produce --rate"]
    assert "train --json" in started and "promote --to" in started
    # a hold is an event when what holds the canary changes, or once a minute: not on
    # every 10 s check
    holds = [e["reason"] for e in run.events if e["event"] == "hold"]  # type: ignore[attr-defined]
    assert 3 <= len(holds) <= 6, holds
    # each step lasted at least the time at a step (60 s), judged every 10 s
    times = server.times
    assert all(60.0 <= b - a <= 80.0 for a, b in itertools.pairwise(times)), times


def test_a_worse_candidate_is_rolled_back_at_its_first_step(
    settings: Settings, tmp_path: Path
) -> None:
    server, clock = Server("2"), FakeClock()
    backends = with_production(settings, server, canary_signal=0.2)
    summary = a_run(backends, ScriptedSpawner(jobs("2")), clock, tmp_path, for_s=200.0).run()
    assert [w for w, _ in server.changes] == [10.0, 0.0]
    assert [(d["to"], d["outcome"]) for d in summary.decisions][-1] == ("canary", "rolled_back")
    assert "step 1/3 (10 %): quality:" in summary.decisions[-1]["reason"]
    assert server.changes[-1][1].startswith("rollback: step 1/3")
    # the gauges pushed with the rollback say what the server now does: no canary
    (gauges,) = [g for (job, _), g in backends.pusher.groups.items() if job == "fraudctl_run"]
    pushed = {g.name: g.value for g in gauges}
    assert pushed["fraudctl_run_canary_weight"] == 0.0 and pushed["fraudctl_run_canary_step"] == 0


def test_a_serving_breach_rolls_back_too(settings: Settings, tmp_path: Path) -> None:
    server, clock = Server("2", error_rate=0.5), FakeClock()
    backends = with_production(settings, server, canary_signal=2.0)
    summary = a_run(backends, ScriptedSpawner(jobs("2")), clock, tmp_path, for_s=200.0).run()
    assert summary.decisions[-1]["outcome"] == "rolled_back"
    assert "serving: error rate 50.00%" in summary.decisions[-1]["reason"]


def test_the_first_model_is_bootstrapped_before_anything_is_served(
    settings: Settings, tmp_path: Path
) -> None:
    server, clock = Server("1"), FakeClock()
    backends = FakeBackends(settings, serving=server)
    spawner = ScriptedSpawner(jobs("1"))
    run = a_run(backends, spawner, clock, tmp_path, for_s=30.0)
    run.schedules[0].next_at = 1000.0  # only the bootstrap's training
    summary = run.run()
    started = commands(spawner)
    assert started[:6] == ["produce --rate", "materialize --json", "train --json",
                           "drift --source", "promote --to", "promote --to"]  # fmt: skip
    assert started[6:9] == ["materialize --follow", "serve --port", "produce --rate"]
    # the drift of the history's newest quarter: an event-time window ending when the
    # history job began (the history spans count/rate = 2000 s), not `last:` from now,
    # which a long training would have moved past the history's end
    from datetime import datetime

    history, drift = [a for a in spawner.argvs if a[3] in ("produce", "drift")][:2]
    assert history[history.index("--span") + 1] == "2000s"
    start, end = drift[drift.index("--current") + 1].split("/")
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    assert seconds == 500 + 1  # a quarter of the span, and the second the history began in
    assert [(d["to"], d["outcome"]) for d in summary.decisions] == [
        ("staging", "promoted"),
        ("production", "promoted"),
    ]
    assert server.changes == []  # no rollout: nothing to protect yet
    # the jobs' grids begin again with the serving: none ran in a burst on a young stream
    assert all(s.runs == 0 and s.next_at > 1000.0 for s in run.schedules), run.schedules


def test_a_bootstrap_refused_at_staging_tries_again_without_a_second_history(
    settings: Settings, tmp_path: Path
) -> None:
    server, clock = Server("1"), FakeClock()
    backends = FakeBackends(settings, serving=server)
    spawner = ScriptedSpawner(jobs("1", {"promote-staging": "refused"}))
    run = a_run(backends, spawner, clock, tmp_path, for_s=150.0)
    run.schedules[0].next_at = 1000.0
    run.run()
    started = commands(spawner)
    assert started.count("produce --rate") == 1  # the history, once; no live producer yet
    assert started.count("train --json") == 3  # at 0 s, then a minute after each refusal
    assert "serve --port" not in started  # nothing to serve before a production model


def test_an_exited_child_is_restarted_and_counted(settings: Settings, tmp_path: Path) -> None:
    server, clock = Server("2"), FakeClock()
    backends = with_production(settings, server, canary_signal=2.0)
    spawner = ScriptedSpawner(jobs("2", {"promote-staging": "refused"}))
    run = a_run(backends, spawner, clock, tmp_path, for_s=30.0)
    real_tick, killed = run._tick, []

    def tick() -> None:
        real_tick()
        if clock.now >= 5.0 and not killed:  # kill -9 the materializer
            killed.append(next(c for c, a in zip(spawner.started, spawner.argvs, strict=True)
                               if "--follow" in a))  # fmt: skip
            killed[0].signal(9)

    run._tick = tick  # type: ignore[method-assign]
    summary = run.run()
    assert summary.restarts["materialize"] == 1
    events = run.events  # type: ignore[attr-defined]
    exited = next(e for e in events if e["event"] == "exited")
    assert exited["child"] == "materialize" and exited["exit_code"] == -9
    assert any(e["event"] == "restarted" and e["child"] == "materialize" for e in events)
    # the restart count went to the Pushgateway
    (gauges,) = [g for (job, _), g in backends.pusher.groups.items() if job == "fraudctl_run"]
    restarts = {g.labels.get("child"): g.value for g in gauges if g.name == "fraudctl_run_restarts"}
    assert restarts["materialize"] == 1.0


def test_a_crash_loop_stops_the_run_and_every_child(settings: Settings, tmp_path: Path) -> None:
    server, clock = Server("2"), FakeClock()
    backends = with_production(settings, server, canary_signal=2.0)

    class Crashing(ScriptedSpawner):
        def spawn(self, argv: Any, log: Path, env: Any, stdout: Path | None = None) -> Any:
            child = super().spawn(argv, log, env, stdout)
            if "serve" in argv:
                child.signal(15)  # the server dies at once, every time
            return child

    spawner = Crashing(jobs("2"))
    run = a_run(backends, spawner, clock, tmp_path, backoff=Backoff(1, 1, 3, 60))
    with pytest.raises(CrashLoop, match="serve exited 4 times"):
        run.run()
    assert all(child.poll() is not None for child in spawner.started)


def test_a_stop_stops_the_children_in_order(settings: Settings, tmp_path: Path) -> None:
    server, clock = Server("2"), FakeClock()
    backends = with_production(settings, server, canary_signal=2.0)
    run = a_run(backends, ScriptedSpawner(jobs("2")), clock, tmp_path, for_s=20.0)
    run.run()
    stopped = [e["child"] for e in run.events if e["event"] == "stopped"]  # type: ignore[attr-defined]
    assert stopped == ["produce", "materialize", "serve"]


def test_the_run_gauges_count_decisions_by_outcome_and_restarts_by_child() -> None:
    from fraudctl.services.run import run_gauges

    gauges = run_gauges({"version": "3", "step": 2, "weight": 50.0}, {"serve": 2, "produce": 0},
                        ["stepped", "stepped", "rolled_back"])  # fmt: skip
    values = {(g.name, tuple(sorted(g.labels.items()))): g.value for g in gauges}
    assert values == {
        ("fraudctl_run_canary_weight", ()): 50.0,
        ("fraudctl_run_canary_step", ()): 2.0,
        ("fraudctl_run_restarts", (("child", "serve"),)): 2.0,
        ("fraudctl_run_restarts", (("child", "produce"),)): 0.0,
        ("fraudctl_run_decisions", (("outcome", "stepped"),)): 2.0,
        ("fraudctl_run_decisions", (("outcome", "rolled_back"),)): 1.0,
    }
    idle = {g.name: g.value for g in run_gauges(None, {}, [])}
    assert idle == {"fraudctl_run_canary_weight": 0.0, "fraudctl_run_canary_step": 0.0}


def test_a_candidate_put_at_staging_by_someone_else_is_rolled_out(
    settings: Settings, tmp_path: Path
) -> None:
    """`promote --to staging` from CI, or a person moving the alias in MLflow's UI: the
    run finds the version at staging and takes it through the steps like its own."""
    clock, server, backends = good_candidate(settings)
    backends.registry.set_alias("staging", "2")
    spawner = ScriptedSpawner(jobs("2"))
    run = a_run(backends, spawner, clock, tmp_path, for_s=600.0)
    run.schedules[0].next_at = 10_000.0  # no training of its own
    summary = run.run()
    assert [w for w, _ in server.changes] == [10.0, 25.0, 50.0]
    assert [(d["to"], d["outcome"]) for d in summary.decisions] == [
        ("canary", "stepped"), ("canary", "stepped"), ("canary", "stepped"),
        ("production", "promoted"),
    ]  # fmt: skip
    assert "version 2 is at staging (not promoted by this run)" in summary.decisions[0]["reason"]


def test_a_candidate_at_staging_is_found_while_the_jobs_keep_the_run_busy(
    settings: Settings, tmp_path: Path
) -> None:
    """On a loaded machine drift and quality can run back to back: a job is always
    running. Only a promotion of the run's own holds the search for a candidate back."""
    clock, server, backends = good_candidate(settings)
    backends.registry.set_alias("staging", "2")
    spawner = ScriptedSpawner(jobs("2"), job_seconds=(clock, 20.0))
    run = a_run(backends, spawner, clock, tmp_path, for_s=600.0, drift_every_s=15.0,
                quality_every_s=15.0)  # fmt: skip
    run.schedules[0].next_at = 10_000.0
    for schedule in run.schedules[1:]:  # drift and quality from the start, back to back
        schedule.next_at = 0.0
    summary = run.run()
    assert [w for w, _ in server.changes] == [10.0, 25.0, 50.0]
    assert "version 2 is at staging" in summary.decisions[0]["reason"]


def test_a_rollout_left_in_progress_goes_on_from_its_step(
    settings: Settings, tmp_path: Path
) -> None:
    """A run restarted mid-rollout (or one after `canary step`s): the promotion log says
    version 2 is at its second step; the run sets that weight again and goes on."""
    from datetime import UTC, datetime, timedelta

    from fraudctl.services.promote import record_canary_decision

    clock, server, backends = good_candidate(settings)
    backends.registry.set_alias("staging", "2")
    begun = datetime.now(UTC) - timedelta(seconds=100)
    record_canary_decision(backends, "2", "stepped", "canary at step 1", [], begun)
    record_canary_decision(backends, "2", "stepped", "to 25 %", [], begun + timedelta(seconds=70))
    run = a_run(backends, ScriptedSpawner(jobs("2")), clock, tmp_path, for_s=400.0)
    run.schedules[0].next_at = 10_000.0
    summary = run.run()
    resumed = next(e for e in run.events if e["event"] == "resumed")  # type: ignore[attr-defined]
    assert resumed["version"] == "2" and resumed["step"] == 2 and resumed["weight"] == 25.0
    assert [w for w, _ in server.changes] == [25.0, 50.0]
    assert [(d["to"], d["outcome"]) for d in summary.decisions] == [
        ("canary", "stepped"), ("production", "promoted")]  # fmt: skip


def test_a_version_trained_during_a_rollout_is_the_next_candidate(
    settings: Settings, tmp_path: Path
) -> None:
    clock, _server, backends = good_candidate(settings)
    for _ in range(3):  # versions 3 to 5, registered by the trainings
        backends.registry.add_version(object())
    versions = itertools.count(2)
    scripted = jobs("2")

    def respond(argv: list[str]) -> tuple[int, dict[str, Any]]:
        code, document = scripted(argv)
        if "train" in argv:
            document["version"] = str(next(versions))
        elif "--version" in argv:
            document["version"] = argv[argv.index("--version") + 1]
        return code, document

    spawner = ScriptedSpawner(respond)
    run = a_run(backends, spawner, clock, tmp_path, for_s=320.0, train_every_s=70.0)
    summary = run.run()
    promotions = [a[a.index("--version") + 1] for a in spawner.argvs
                  if "--to" in a and a[a.index("--to") + 1] == "staging"]  # fmt: skip
    # version 2 at once; 3 and 4 trained while 2 was out (at 70 s and 140 s; it took
    # three 60-s steps): the newest, 4, tried after it
    assert promotions == ["2", "4"], summary.decisions
    production = [d for d in summary.decisions if d["to"] == "production"]
    assert [d["version"] for d in production] == ["2"]
    assert summary.rollout is not None and summary.rollout["version"] == "4"


def test_a_restarted_server_is_given_the_steps_weight_again(
    settings: Settings, tmp_path: Path
) -> None:
    clock, server, backends = good_candidate(settings)
    run = a_run(backends, spawner := ScriptedSpawner(jobs("2")), clock, tmp_path, for_s=120.0)
    real_tick, killed = run._tick, []

    def tick() -> None:
        real_tick()
        if clock.now >= 30.0 and not killed:  # kill -9 the server at the first step
            killed.append(next(c for c, a in zip(spawner.started, spawner.argvs, strict=True)
                               if "serve" in a))  # fmt: skip
            killed[0].signal(9)

    run._tick = tick  # type: ignore[method-assign]
    run.run()
    assert server.changes[0][0] == 10.0
    assert server.changes[1] == (10.0, "the server is back: version 2 at 10 % again")
