"""The Spawner port's contract, on the OS adapter (real processes in process groups of
their own) and on the scripted fake the supervision tests use."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fraudctl.adapters.processes import OsSpawner
from fraudctl.ports import Child, Spawner
from tests.fakes import ScriptedSpawner

CHILD = str(Path(__file__).resolve().parents[1] / "child.py")


@pytest.fixture(params=["os", "scripted"])
def spawner(request: pytest.FixtureRequest) -> Spawner:
    return OsSpawner() if request.param == "os" else ScriptedSpawner()


def started(spawner: Spawner, behaviour: str, log: Path) -> Child:
    """A child that has begun acting out ``behaviour`` (its first line is in its log)."""
    child = spawner.spawn([sys.executable, CHILD, behaviour], log, dict(os.environ))
    until(lambda: log.is_file() and behaviour in log.read_text())
    return child


def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_an_exit_code_is_seen(spawner: Spawner, tmp_path: Path) -> None:
    child = started(spawner, "exit:3", tmp_path / "child.log")
    assert child.wait(30.0) == 3 and child.poll() == 3 and child.pid > 0


def test_a_running_child_is_stopped_by_its_signal(spawner: Spawner, tmp_path: Path) -> None:
    child = started(spawner, "run", tmp_path / "child.log")
    assert child.poll() is None and child.wait(0.05) is None
    child.signal(signal.SIGTERM)
    assert child.wait(30.0) == -signal.SIGTERM


def test_sigkill_ends_a_child_that_ignores_sigterm(spawner: Spawner, tmp_path: Path) -> None:
    child = started(spawner, "ignore-term", tmp_path / "child.log")
    child.signal(signal.SIGTERM)
    assert child.wait(0.3) is None
    child.signal(signal.SIGKILL)
    assert child.wait(30.0) == -signal.SIGKILL
    child.signal(signal.SIGTERM)  # signalling an exited child is harmless


def test_stdout_goes_to_its_own_file_when_given(spawner: Spawner, tmp_path: Path) -> None:
    log, out = tmp_path / "child.log", tmp_path / "child.out"
    child = spawner.spawn([sys.executable, CHILD, "exit:0"], log, dict(os.environ), out)
    assert child.wait(30.0) == 0
    assert out.read_text() == "exit:0\n" and log.is_file() and "exit:0" not in log.read_text()


def test_the_log_is_appended_across_starts(spawner: Spawner, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "child.log"
    for _ in range(2):
        started(spawner, "exit:0", log).wait(30.0)
    assert log.read_text().splitlines() == ["exit:0", "exit:0"]
