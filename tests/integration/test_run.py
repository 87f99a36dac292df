"""`fraudctl run` on the embedded default with real child processes: the first model
bootstrapped by the real commands, then materialize, serve and the producer supervised;
the materializer `kill -9`ed and restarted with nothing lost or doubled offline, the
server `kill -9`ed and restarted, ready again; SIGTERM stops everything in order (exit
130) and leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fraudctl.stack.native import free_ports


class Events:
    """The run's JSON lines as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[dict[str, Any]] = []
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(json.loads(line))

    def wait_for(self, found: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in list(self.lines):
                if found(event):
                    return event
            time.sleep(0.2)
        raise AssertionError(f"not seen in {timeout_s:g} s; events: {self.lines[-15:]}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_the_server(events: Events) -> None:
    """The server killed: restarted, ready again, recorded."""
    server = next(e for e in events.lines if e["event"] == "started" and e["child"] == "serve")
    readied = len([e for e in events.lines if e["event"] == "ready"])
    os.kill(server["pid"], signal.SIGKILL)
    back = events.wait_for(lambda e: e["event"] == "restarted" and e["child"] == "serve", 60)
    assert back["restarts"] == 1 and back["after_exit_code"] == -signal.SIGKILL
    events.wait_for(lambda e: len([x for x in events.lines if x["event"] == "ready"])
                    > readied, 120)  # fmt: skip
    time.sleep(5)  # served traffic again


def test_run_bootstraps_supervises_restarts_and_stops_in_order(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDCTL_")} | {
        "FRAUDCTL_PROFILE": "local", "FRAUDCTL_HOME": str(tmp_path / "home"),
    }  # fmt: skip
    port = free_ports(("mlflow",))["mlflow"]
    process = subprocess.Popen(
        [sys.executable, "-m", "fraudctl", "run", "--engine", "uvicorn", "--port", str(port),
         "--rate", "20", "--label-delay", "1", "--history", "6000", "--train-every", "1h",
         "--drift-every", "1h", "--quality-every", "1h", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    events = Events(process)
    try:
        # The first model, through the real commands, before anything is served.
        production = events.wait_for(
            lambda e: e["event"] == "decision" and e["to"] == "production", 600
        )
        assert production["outcome"] == "promoted" and production["version"] == "1"
        jobs = [e["job"] for e in events.lines if e["event"] == "job"]
        assert jobs == ["history", "materialize", "train", "drift-history", "promote-staging",
                        "promote-production"], events.lines  # fmt: skip
        assert all(e["ok"] for e in events.lines if e["event"] == "job")
        events.wait_for(lambda e: e["event"] == "ready" and e["child"] == "serve", 180)
        producer = events.wait_for(lambda e: e["event"] == "started" and e["child"] == "produce",
                                   30)  # fmt: skip
        materializer = next(e for e in events.lines
                            if e["event"] == "started" and e["child"] == "materialize")  # fmt: skip
        time.sleep(8)  # served traffic flowing through the materializer
        os.kill(materializer["pid"], signal.SIGKILL)
        exited = events.wait_for(lambda e: e["event"] == "exited", 30)
        assert exited["child"] == "materialize" and exited["exit_code"] == -signal.SIGKILL
        restarted = events.wait_for(lambda e: e["event"] == "restarted", 60)
        assert restarted["child"] == "materialize" and restarted["restarts"] == 1
        time.sleep(10)  # the new materializer picks up where the killed one committed
        kill_the_server(events)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=240)
    assert code == 130, process.stderr.read() if process.stderr else ""
    time.sleep(0.5)  # the reader has the last lines
    stopped = [e for e in events.lines if e["event"] == "stopped"]
    assert [e["child"] for e in stopped] == ["produce", "materialize", "serve"]
    assert not any(e["killed"] for e in stopped), stopped  # each within its grace time
    pids = [e["pid"] for e in events.lines if e["event"] in ("started", "restarted")]
    assert len(pids) >= 5 and not any(alive(pid) for pid in pids)
    summary = events.lines[-1]
    assert summary["event"] == "summary" and summary["interrupted"] is True
    # (the producer keeps going while the server is down: its failed requests are
    # counted, not a crash)
    assert summary["restarts"] == {"materialize": 1, "serve": 1, "produce": 0}
    assert producer["pid"] in pids

    # Nothing lost or doubled offline: a batch materialize after the run finds every
    # event of the bus already there, each exactly once.
    after = subprocess.run([sys.executable, "-m", "fraudctl", "materialize", "--json"], env=env,
                           capture_output=True, text=True, check=False, timeout=300)  # fmt: skip
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["valid"] == 0
    import pyarrow.compute as pc

    from fraudctl.adapters.offline import open_offline
    from fraudctl.config import load_settings

    settings = load_settings(environ=env, cwd=tmp_path).settings
    ids = open_offline(settings).read("events", ["event_id"]).column("event_id")
    assert len(ids) > 6000 and pc.count_distinct(ids).as_py() == len(ids)
