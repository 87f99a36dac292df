"""Two or three `materialize` runs on one home at once: one runs, the others are refused
with exit 2 naming it, and every event ends up offline and online exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import RunCli
from tests.integration.test_materialize import assert_each_event_once_offline_and_online

EVENTS = 20_000


def start_materialize() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fraudctl", "materialize", "--batch-size", "100", "--json"],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("runs", [2, 3])
def test_concurrent_runs_on_one_home_are_refused_and_nothing_is_duplicated(
    cli: RunCli, runs: int
) -> None:
    made = cli("produce", "--count", str(EVENTS), "--rate", "0", "--label-delay", "0", "--json")
    assert made.code == 0, made.err
    procs = [start_materialize() for _ in range(runs)]
    outcomes = {p.pid: (p.communicate(timeout=300), p.returncode) for p in procs}
    winners = [pid for pid, (_io, code) in outcomes.items() if code == 0]
    assert len(winners) == 1, outcomes
    for pid, ((out, err), code) in outcomes.items():
        if pid in winners:
            assert json.loads(out)["valid"] == EVENTS
            continue
        assert code == 2, err
        assert "already running" in err and f"pid {winners[0]}" in err
        assert json.loads(out)["error"]["exit_code"] == 2
    rerun = cli("materialize", "--json")
    assert rerun.code == 0, rerun.err
    assert rerun.json()["events_read"] == 0
    assert_each_event_once_offline_and_online(EVENTS, rerun.json())
