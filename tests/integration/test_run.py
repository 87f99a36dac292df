"""`fraudctl run` keeping the platform right by itself, on both profiles, with real child
processes and real services: on the embedded default through `fraudctl demo --live` (the
same loop, with the demo's short intervals and gates), on the native stack through
`fraudctl run` with the same intervals.

In one run of a few minutes: the first model bootstrapped by the real commands; (local)
the materializer and the server `kill -9`ed and restarted, ready again, recorded; a
retrained candidate taken automatically through the canary's steps to production; (local)
a drifted stream started mid-run, which blocks the next promotion; (local) a deliberately
worse candidate put at staging (as CI or a person would), rolled back at its first step; then
SIGTERM: exit 130, children stopped in order, none left, every decision in the promotion
log, every event offline exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fraudctl.cli.demo_live import DEMO_GATES
from fraudctl.cli.demo_steps import stop_server
from fraudctl.config import env_var
from tests.integration.models import worse_version

# The demo's gates, and a latency limit out of reach of two cores shared with another
# worker's tests: the canary is judged here on its errors and its quality.
GATES = {"canary_max_p95_ms": "5000", "topic_partitions": "1"}
# `fraudctl run` with demo --live's intervals (cli/demo_live.py), on the stack.
RUN = ["--engine", "uvicorn", "--rate", "40", "--label-delay", "2", "--history", "8000",
       "--train-every", "60s", "--drift-every", "45s", "--quality-every", "30s",
       "--check-every", "3s", "--canary-steps", "20,50", "--step-every", "20s",
       "--step-deadline", "5m", "--port", "0", "--metrics-port", "0", "--json"]  # fmt: skip
DRIFTED = ["--rate", "60", "--drift", "amount=5,country=BR:1,device=web:1"]

Event = dict[str, Any]


class Events:
    """The run's JSON lines as they come, also written to a file (the test's tmp_path:
    read it when the test fails)."""

    def __init__(self, process: subprocess.Popen[str], dump: Path) -> None:
        self.lines: list[Event] = []
        self.at = 0
        self._dump = dump
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        with self._dump.open("w") as dump:
            for line in process.stdout:
                dump.write(line)
                dump.flush()
                self.lines.append(json.loads(line))

    def wait_for(
        self, found: Callable[[Event], bool], timeout_s: float, what: str, since: int = 0
    ) -> Event:
        """The first event from the ``since``-th line on that ``found`` accepts; its line
        number is ``self.at`` after."""
        deadline = time.monotonic() + timeout_s
        seen = since
        while time.monotonic() < deadline:
            lines = list(self.lines)
            for at in range(seen, len(lines)):
                # A run that failed ends with an error document (no "event"): the answer.
                failed = "event" not in lines[at] and "error" in lines[at]
                assert not failed, f"{what}: the run failed: {lines[at]}"
                if found(lines[at]):
                    self.at = at
                    return lines[at]
            seen = max(seen, len(lines))
            time.sleep(0.2)
        raise AssertionError(f"{what}: not seen in {timeout_s:g} s; events: {self.lines[-25:]}")

    def of(self, kind: str, **where: Any) -> list[Event]:
        wanted = {"event": kind, **where}
        return [e for e in self.lines if all(e.get(k) == v for k, v in wanted.items())]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def decision(to: str, outcome: str, version: str | None = None) -> Callable[[Event], bool]:
    return lambda e: (e["event"] == "decision" and e["to"] == to and e["outcome"] == outcome
                      and (version is None or e["version"] == version))  # fmt: skip


def job(name: str, **result: Any) -> Callable[[Event], bool]:
    def found(e: Event) -> bool:
        brief = e.get("result", {})
        return (
            e["event"] == "job"
            and e["job"] == name
            and all(brief.get(k) == v for k, v in result.items())
        )

    return found


@pytest.fixture
def running(
    platform: dict[str, str], tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[str], dict[str, str]]]:
    """The loop on the platform's profile, and the environment it runs in; stopped
    (SIGTERM) and waited for at the end whatever the test did."""
    profile = platform["profile"]
    env = dict(os.environ) | {env_var(k): v for k, v in GATES.items()}
    if profile == "local":
        argv = ["demo", "--live", "--for", "30m", "--json"]  # the test stops it (SIGTERM)
    else:
        env |= {env_var(k): v for k, v in DEMO_GATES.items()}
        env["FRAUDCTL_MODEL_NAME"] = f"fraud-run-{uuid.uuid4().hex[:8]}"
        argv = ["run", *RUN]
    with (tmp_path / "stderr").open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "fraudctl", *argv], env=env,
                                   text=True, stdout=subprocess.PIPE, stderr=stderr)  # fmt: skip
    try:
        yield profile, process, env
    finally:
        stop_server(process, signal.SIGTERM, 240.0)


def test_run_keeps_the_platform_right_by_itself(
    running: tuple[str, subprocess.Popen[str], dict[str, str]], tmp_path: Path
) -> None:
    profile, process, env = running
    events = Events(process, tmp_path / "events.jsonl")
    env = the_first_model_then_the_children(events, env)
    if profile == "local":
        kill_the_materializer(events)
        kill_the_server(events)
    a_full_cycle(events, env)
    # The drift gate and the rollback are the loop's own logic, the same on both
    # profiles; they are judged once, on the embedded one (with the kills). On the stack
    # the story ends after the full cycle (it took another 400 s there).
    if profile == "local":
        drifted = a_drifted_stream(env)
        try:
            drift_blocks_the_next_promotion(events)
            a_worse_candidate_is_rolled_back_at_its_first_step(events, env)
        finally:  # the test's own producer never outlives it (it loaded later tests)
            drifted.send_signal(signal.SIGTERM)
            try:
                drifted.wait(timeout=60)
            except subprocess.TimeoutExpired:
                drifted.kill()
                drifted.wait()
        time.sleep(10)  # the materializer has what the drifted producer sent
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=240)
    stopped_in_order(events, profile, code, tmp_path / "stderr")
    every_decision_recorded_and_nothing_lost(events, env)


def the_first_model_then_the_children(events: Events, env: dict[str, str]) -> dict[str, str]:
    """Bootstrapped by the real commands before anything is served; then the children.
    Returns the environment a command of the test's uses on the run's stores."""
    started = events.wait_for(lambda e: e["event"] == "run_started", 120, "run_started")
    env = env | {"FRAUDCTL_SERVE_URL": started["url"]}
    for demo in events.of("demo_live"):  # the demo's own home
        env["FRAUDCTL_HOME"] = demo["home"]
    production = events.wait_for(decision("production", "promoted"), 600, "the first model")
    assert production["version"] == "1"
    jobs = [e["job"] for e in events.of("job")]
    assert jobs == ["history", "materialize", "train", "drift-history", "promote-staging",
                    "promote-production"], events.lines  # fmt: skip
    assert all(e["ok"] for e in events.of("job"))
    events.wait_for(lambda e: e["event"] == "ready" and e["child"] == "serve", 180, "ready")
    events.wait_for(lambda e: e["event"] == "started" and e["child"] == "produce", 30, "producer")
    return env


def kill_the_materializer(events: Events) -> None:
    """`kill -9`: restarted; the new one goes on from the committed offsets."""
    materializer = events.of("started", child="materialize")[0]
    time.sleep(8)  # served traffic flowing through the materializer
    os.kill(materializer["pid"], signal.SIGKILL)
    exited = events.wait_for(lambda e: e["event"] == "exited", 30, "exited")
    assert exited["child"] == "materialize" and exited["exit_code"] == -signal.SIGKILL
    restarted = events.wait_for(lambda e: e["event"] == "restarted", 60, "restarted")
    assert restarted["child"] == "materialize" and restarted["restarts"] == 1


def kill_the_server(events: Events) -> None:
    """The server killed: restarted, ready again, recorded."""
    server = events.of("started", child="serve")[0]
    readied = len(events.of("ready"))
    os.kill(server["pid"], signal.SIGKILL)
    back = events.wait_for(lambda e: e["event"] == "restarted" and e["child"] == "serve", 60,
                           "serve restarted")  # fmt: skip
    assert back["restarts"] == 1 and back["after_exit_code"] == -signal.SIGKILL
    events.wait_for(lambda _e: len(events.of("ready")) > readied, 120, "ready again")


def a_full_cycle(events: Events, env: dict[str, str]) -> None:
    """A retrained candidate passes the staging gates, becomes the canary at step 1,
    steps to 50 %, then production."""
    first = events.wait_for(decision("canary", "stepped"), 420, "a candidate's canary")
    version = first["version"]
    assert version != "1" and first["reason"].startswith(f"version {version} passed the staging")
    events.wait_for(decision("production", "promoted", version), 300, f"v{version} production")
    mine = [(d["to"], d["outcome"]) for d in events.of("decision", version=version)]
    # (an inconclusive production gate would be judged again: a decision more between)
    assert mine[:3] == [("staging", "promoted"), ("canary", "stepped"), ("canary", "stepped")]
    assert mine[-1] == ("production", "promoted"), mine
    second = events.of("decision", to="canary", version=version)[1]
    assert second["reason"].startswith("step 1/2 (20 %)") and "50 %" in second["reason"]


def a_drifted_stream(env: dict[str, str]) -> subprocess.Popen[str]:
    """A drifted stream, scored by the server as real traffic: running, returned. It
    begins once the full cycle is over: begun at the canary's first step, its labels
    matured into the canary's quality gate on a fast run (the canary, ROC AUC 0.10 on
    drifted traffic against the baseline's 0.84, was rolled back)."""
    return subprocess.Popen(
        [sys.executable, "-m", "fraudctl", "produce", *DRIFTED, "--fraud-rate", "0.05",
         "--score", env["FRAUDCTL_SERVE_URL"], "--json"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def drift_blocks_the_next_promotion(events: Events) -> None:
    """The drift job finds the drifted stream; the next candidate is refused for it."""
    # Jobs run one at a time: behind a slow train and promotion (2 min each when the
    # machine is loaded) the next drift job can be minutes away.
    events.wait_for(job("drift", status="drift"), 600, "drift found")
    refused = events.wait_for(job("promote-staging"), 600, "the next promotion", events.at + 1)
    assert refused["result"]["outcome"] == "refused", refused
    assert "drift score" in refused["result"]["reason"], refused


def a_worse_candidate_is_rolled_back_at_its_first_step(events: Events, env: dict[str, str]) -> None:
    """A model trained on inverted labels, put at staging by hand: the run finds it, its
    canary begins, and the quality gate rolls it back at step 1. (Inverted, not merely
    shuffled: the demo's quality margin, 0.5, sized for minutes of labels, fails only a
    canary that much worse.)"""
    from fraudctl.bootstrap import Wiring
    from fraudctl.config import environ, load_settings

    version = worse_version(env, inverted=True)
    with environ(env):
        Wiring(load_settings().settings).registry.set_alias("staging", version)
    first = events.wait_for(decision("canary", "stepped", version), 300, f"v{version}'s canary")
    assert "is at staging (not promoted by this run)" in first["reason"]
    back = events.wait_for(decision("canary", "rolled_back", version), 300, f"v{version} back")
    assert back["reason"].startswith("step 1/2 (20 %): quality: roc_auc canary"), back
    assert back["reason"].endswith("the canary is worse"), back


def stopped_in_order(events: Events, profile: str, code: int, stderr: Path) -> None:
    assert code == 130, stderr.read_text()[-3000:]
    time.sleep(0.5)  # the reader has the last lines
    stopped = events.of("stopped")
    assert [e["child"] for e in stopped] == ["produce", "materialize", "serve"]
    assert not any(e["killed"] for e in stopped), stopped  # each within its grace time
    pids = [e["pid"] for e in events.lines if e["event"] in ("started", "restarted")]
    assert not any(alive(pid) for pid in pids)
    summary = events.lines[-1]
    assert summary["event"] == "summary" and summary["interrupted"] is True
    killed = 1 if profile == "local" else 0
    assert summary["restarts"] == {"materialize": killed, "serve": killed, "produce": 0}


def every_decision_recorded_and_nothing_lost(events: Events, env: dict[str, str]) -> None:
    """The decisions the run made are the promotion log's; a batch materialize after the
    run finds every event of the bus already offline, each exactly once."""
    import pyarrow.compute as pc

    from fraudctl.adapters.offline import open_offline
    from fraudctl.config import load_settings

    def fraudctl(*args: str) -> Any:
        done = subprocess.run([sys.executable, "-m", "fraudctl", *args, "--json"], env=env,
                              capture_output=True, text=True, check=False, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    logged = {d["id"] for d in fraudctl("promote", "--history")}
    made = {d["id"] for d in events.of("decision")}
    # staging + production of v1 and v2 and two canary steps; more on the embedded profile
    assert len(made) >= 6 and made <= logged, made - logged
    assert fraudctl("materialize")["valid"] == 0
    settings = load_settings(environ=env, cwd=Path.cwd()).settings
    ids = open_offline(settings).read("events", ["event_id"]).column("event_id")
    assert len(ids) > 8000 and pc.count_distinct(ids).as_py() == len(ids)
