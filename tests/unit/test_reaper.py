"""serving/reaper.py: what a killed driver leaves behind is killed by the watcher, and
nothing else is (a normal stop leaves nothing; an unrelated process is never touched)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from fraudctl.serving import reaper

# A "driver" that starts a grandchild the way Ray's raylet starts its agents (a child of
# a child), prints its pid, and waits.
DRIVER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys, time; g = subprocess.Popen([sys.executable, '-c', "
    "'import time; time.sleep(600)']); print(g.pid, flush=True); time.sleep(600)"],
    stdout=subprocess.PIPE, text=True)
print(child.pid, child.stdout.readline().strip(), flush=True)
time.sleep(600)
"""


def start_driver() -> tuple[subprocess.Popen[str], list[int]]:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    assert driver.stdout is not None
    pids = [int(p) for p in driver.stdout.readline().split()]
    return driver, pids


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_killed_drivers_descendants_are_killed() -> None:
    driver, (child, grandchild) = start_driver()
    watcher = reaper.start(driver.pid)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        time.sleep(2 * reaper.POLL_S + 0.5)  # the watcher has seen both
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        watcher.wait(timeout=10)
        deadline = time.monotonic() + 5
        while not (gone(child) and gone(grandchild)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone(child) and gone(grandchild)
        assert bystander.poll() is None  # not the driver's: untouched
    finally:
        bystander.kill()
        for pid in (child, grandchild):
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_nothing_is_killed_after_the_driver_ended_its_children() -> None:
    quiet = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', "
         "'import time; time.sleep(1.5)'])"],
    )  # fmt: skip
    assert reaper.watch(quiet.pid, poll_s=0.1) == []
    quiet.wait()
