"""Supervision (fraudctl.services.supervise) on scripted children and a fake clock:
restarts with doubling backoff, the crash loop that stops the run, a fresh start after
a good run, and stopping in order with a kill past the grace time."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from fraudctl.errors import ExitCode
from fraudctl.services.supervise import Backoff, ChildSpec, CrashLoop, Supervisor
from tests.fakes import FakeClock, ScriptedSpawner


def spec(name: str, behaviour: str, tmp_path: Path, **kw: float) -> ChildSpec:
    return ChildSpec(name, ("fraudctl", name, behaviour), tmp_path / f"{name}.log", **kw)  # type: ignore[arg-type]


def test_an_exited_child_is_restarted_after_a_doubling_backoff(tmp_path: Path) -> None:
    clock, spawner = FakeClock(), ScriptedSpawner()
    supervisor = Supervisor(spawner, {"A": "1"}, Backoff(first_s=1, max_s=4, crash_limit=10),
                            clock)  # fmt: skip
    assert supervisor.start(spec("materialize", "exit:1", tmp_path))["event"] == "started"
    seen = []
    for _ in range(40):
        seen += supervisor.check()
        clock.now += 0.5
    exits = [e for e in seen if e["event"] == "exited"]
    restarts = [e for e in seen if e["event"] == "restarted"]
    assert [e["restart_in_s"] for e in exits][:4] == [1.0, 2.0, 4.0, 4.0]
    assert [e["restarts"] for e in restarts] == list(range(1, len(restarts) + 1))
    assert all(e["after_exit_code"] == 1 for e in restarts)
    assert supervisor.restarts() == {"materialize": len(restarts)}
    assert all(env == {"A": "1"} for env in spawner.envs)  # every start has the run's env


def test_a_crash_loop_stops_the_run_naming_the_child_and_its_log(tmp_path: Path) -> None:
    clock = FakeClock()
    supervisor = Supervisor(ScriptedSpawner(), {}, Backoff(first_s=1, max_s=1, crash_limit=3,
                            crash_window_s=60), clock)  # fmt: skip
    supervisor.start(spec("serve", "exit:2", tmp_path))
    with pytest.raises(CrashLoop) as loop:
        for _ in range(100):
            supervisor.check()
            clock.now += 1.0
    assert loop.value.exit_code == ExitCode.BACKEND_UNAVAILABLE
    assert "serve exited 4 times in 60 s (last exit code 2)" in loop.value.message
    assert str(tmp_path / "serve.log") in (loop.value.hint or "")


def test_a_child_that_ran_well_starts_again_from_the_first_delay(tmp_path: Path) -> None:
    clock, spawner = FakeClock(), ScriptedSpawner()
    supervisor = Supervisor(spawner, {}, Backoff(first_s=1, max_s=30, crash_limit=2,
                            crash_window_s=60), clock)  # fmt: skip
    supervisor.start(spec("produce", "run", tmp_path))
    for round_ in range(5):  # it dies after each good hour: never a crash loop
        clock.now += 3600
        spawner.started[-1].signal(signal.SIGTERM)
        exited = supervisor.check()
        assert exited[0]["restart_in_s"] == 1.0, round_
        clock.now += 1.0
        assert supervisor.check()[0]["event"] == "restarted"


def test_stop_goes_in_order_and_kills_past_the_grace(tmp_path: Path) -> None:
    spawner = ScriptedSpawner()
    supervisor = Supervisor(spawner, {}, Backoff(), FakeClock())
    for name, behaviour in (("produce", "run"), ("materialize", "ignore-term"),
                            ("serve", "run")):  # fmt: skip
        supervisor.start(spec(name, behaviour, tmp_path, stop_grace_s=0.1))
    stopped = supervisor.stop(["produce", "materialize", "serve"])
    assert [(e["child"], e["exit_code"], e["killed"]) for e in stopped] == [
        ("produce", -signal.SIGTERM, False),
        ("materialize", -signal.SIGKILL, True),
        ("serve", -signal.SIGTERM, False),
    ]
    assert supervisor.check() == []  # nothing restarts after a stop
    assert supervisor.stop() == []


def test_an_exited_child_waiting_for_its_restart_is_not_restarted_after_stop(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    supervisor = Supervisor(ScriptedSpawner(), {}, Backoff(first_s=5), clock)
    supervisor.start(spec("serve", "exit:1", tmp_path))
    assert supervisor.check()[0]["event"] == "exited"
    supervisor.stop()
    clock.now += 60
    assert supervisor.check() == []
