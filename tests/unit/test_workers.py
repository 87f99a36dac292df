"""The worker-process runner shared by produce and materialize."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from fraudctl.errors import BackendUnavailable, ExitCode
from fraudctl.workers import WorkerFailed, run_workers

ROOT = Path(__file__).resolve().parents[2]


def _count_to(index: int, n: int, *, stop: Any, report: Any) -> None:
    for i in range(n):
        report("progress", {"index": index, "i": i})
    report("final", {"index": index, "done": n})


def _fail(index: int, kind: str, *, stop: Any, report: Any) -> None:
    if index == 1:
        if kind == "backend":
            raise BackendUnavailable("the store is gone", hint="start it")
        raise ValueError("a bug")
    while not stop.is_set():  # the others are asked to stop
        time.sleep(0.01)
    report("final", {})


def _write_pid_and_wait(index: int, folder: str, *, stop: Any, report: Any) -> None:
    Path(folder, f"{index}.pid").write_text(str(os.getpid()))
    while True:
        time.sleep(0.1)


def test_finals_are_gathered_and_progress_reported() -> None:
    seen: list[int] = []
    finals = run_workers(_count_to, [(3,), (5,)], on_report=lambda latest: seen.append(len(latest)))
    assert finals == {0: {"index": 0, "done": 3}, 1: {"index": 1, "done": 5}}
    assert seen and max(seen) == 2


def test_a_failed_worker_stops_the_others_and_keeps_its_exit_code() -> None:
    with pytest.raises(BackendUnavailable, match="worker 1: the store is gone"):
        run_workers(_fail, [("backend",), ("backend",), ("backend",)])
    with pytest.raises(WorkerFailed) as caught:
        run_workers(_fail, [("bug",), ("bug",)])
    assert caught.value.exit_code == ExitCode.BUG
    assert "ValueError: a bug" in caught.value.message


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    """A parent killed with SIGKILL can't stop its workers; the kernel must."""
    script = (
        "from tests.unit.test_workers import _write_pid_and_wait\n"
        "from fraudctl.workers import run_workers\n"
        f"run_workers(_write_pid_and_wait, [({str(tmp_path)!r},), ({str(tmp_path)!r},)])\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("*.pid"))) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [
                pid
                for pid in pids
                if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            ]
            time.sleep(0.1)
        assert alive == []
    finally:
        if parent.poll() is None:
            parent.kill()
