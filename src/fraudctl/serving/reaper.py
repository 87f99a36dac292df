"""Ray's processes die with the `serve` that started them, even on ``kill -9``.

A local Ray is started by the driver (`fraudctl serve`): the GCS server and the raylet
share its fate, but the raylet's agents (dashboard agent, runtime-env agent) see their
parent die, then spend 60 s trying to tell the dead GCS so (Ray's hard-coded publish
timeout) before they exit — measured: 65 s after a ``kill -9`` of the driver. This
watcher runs beside the driver as its own process (``python -m fraudctl.serving.reaper
PID``), keeps the list of the driver's descendants (pid and start time, refreshed every
``POLL_S``), and when the driver is gone kills whichever of them still runs — by pid,
checked against its start time so a reused pid is never touched. After a normal stop
Ray has already ended them and there is nothing left to kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_S = 0.5


def start(driver_pid: int) -> subprocess.Popen[bytes]:
    """Start the watcher for ``driver_pid`` (in its own session: a Ctrl-C to the
    terminal's process group reaches the driver, which stops Ray itself)."""
    return subprocess.Popen(
        [sys.executable, "-m", "fraudctl.serving.reaper", str(driver_pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def watch(driver_pid: int, poll_s: float = POLL_S) -> list[int]:
    """Follow the driver until it is gone; then kill what it left. Returns the pids
    killed."""
    import psutil

    me = os.getpid()
    known: dict[int, float] = {}
    try:
        driver = psutil.Process(driver_pid)
        while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
            for child in driver.children(recursive=True):
                if child.pid != me:
                    try:
                        known[child.pid] = child.create_time()
                    except psutil.NoSuchProcess:
                        continue
            time.sleep(poll_s)
    except psutil.NoSuchProcess:
        pass
    killed = []
    for pid, created in known.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == created:
                process.kill()
                killed.append(pid)
        except psutil.NoSuchProcess:
            continue
    return killed


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver's Ctrl-C is not ours
    watch(int(sys.argv[1]))


if __name__ == "__main__":
    main()
