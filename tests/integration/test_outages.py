"""`fraudctl materialize` when the S3 server or Redis stops answering mid-run, and the
bus consumer's offset commit when the broker does.

These freeze a service (SIGSTOP: it holds its connections but answers nothing, the
hardest kind of outage to notice) of a private stack, so the shared one is untouched.
Batch mode must exit 3 naming the service, commit no offset past what was durably
written, and a rerun once the service is back must complete the work exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudctl.adapters.bus import open_bus
from fraudctl.adapters.kafka_bus import COMMIT_TIMEOUT_S
from fraudctl.adapters.offline import open_offline
from fraudctl.cli.main import main
from fraudctl.config import environ, load_settings
from fraudctl.errors import BackendUnavailable
from fraudctl.ports import TopicPartition
from fraudctl.stack.native import StackState, private_stack_env
from tests.conftest import RunCli
from tests.integration.conftest import private_corner
from tests.integration.test_materialize import (
    assert_each_event_once_offline_and_online,
    materialize,
    produce,
)

EVENTS = 40_000
FRAUDCTL = [sys.executable, "-m", "fraudctl"]


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home: Path = tmp_path_factory.mktemp("outage-stack")
    env = private_stack_env(home, ("kafka", "s3", "redis"))
    only = [arg for name in ("kafka", "s3", "redis") for arg in ("--only", name)]
    with environ(env):
        code = main(["stack", "up", "--native", *only, "--json"])
    try:
        assert code == 0, "the outage stack did not start; see the logs under " + str(home)
        yield env
    finally:
        with environ(env):
            main(["stack", "down", "--native", "--json"])


@pytest.fixture
def corner(
    outage_stack: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    for key, value in outage_stack.items():
        monkeypatch.setenv(key, value)
    env = outage_stack | private_corner(
        monkeypatch, tmp_path / "home", outage_stack["FRAUDCTL_REDIS_URL"]
    )
    env["STACK_HOME"] = outage_stack["FRAUDCTL_HOME"]
    return env


def outage_stack_env(corner: dict[str, str]) -> dict[str, str]:
    """The settings under which the private stack recorded its processes."""
    return corner | {"FRAUDCTL_HOME": corner["STACK_HOME"]}


def committed() -> dict[TopicPartition, int]:
    settings = load_settings().settings
    consumer = open_bus(settings).consumer(settings.consumer_group, [settings.topic_transactions])
    try:
        return consumer.committed()
    finally:
        consumer.close()


def offline_offsets() -> dict[int, set[int]]:
    """Per partition of the transactions topic, the offsets the offline store holds."""
    table = open_offline(load_settings().settings).read("events")
    held: dict[int, set[int]] = {}
    for partition, offset in zip(
        table.column("origin_partition").to_pylist(),
        table.column("origin_offset").to_pylist(),
        strict=True,
    ):
        held.setdefault(partition, set()).add(offset)
    return held


@pytest.mark.parametrize("service", ["s3", "redis"])
def test_a_frozen_service_stops_the_run_and_a_rerun_completes_it(
    corner: dict[str, str], cli: RunCli, service: str
) -> None:
    produce(cli, "--count", str(EVENTS), "--seed", "21", "--users", "3000")
    proc = subprocess.Popen(
        # Small batches: many commits, so the outage lands in the middle of the run.
        [*FRAUDCTL, "materialize", "--workers", "1", "--batch-size", "4000", "--json"],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with environ(outage_stack_env(corner)):
        pid = StackState.load(load_settings().settings).services[service].pid
    try:
        deadline = time.monotonic() + 120
        while not any(committed().values()):  # mid-run: after a first commit
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no batch was committed within 120 s"
            time.sleep(0.2)
        os.kill(pid, signal.SIGSTOP)
        try:
            _out, err = proc.communicate(timeout=180)
            assert proc.returncode == 3, err
            assert {"s3": "offline store", "redis": "Redis"}[service] in err
            at_failure = committed()
        finally:
            os.kill(pid, signal.SIGCONT)
    finally:
        if proc.poll() is None:
            proc.kill()

    # Nothing was committed past what the offline store holds.
    held = offline_offsets()
    for (_topic, partition), offset in at_failure.items():
        missing = set(range(offset)) - held.get(partition, set())
        assert not missing, f"partition {partition}: committed {offset}, not stored {missing}"
    assert sum(at_failure.values()) < EVENTS, "the outage came too late to test anything"

    final = materialize(cli)
    assert final["events_read"] == EVENTS - sum(at_failure.values())
    assert_each_event_once_offline_and_online(EVENTS, final)


def test_a_frozen_broker_fails_the_offset_commit_instead_of_hanging(
    corner: dict[str, str], cli: RunCli
) -> None:
    """A commit the broker never acknowledges is an error within the commit timeout (the
    materializer exits 3, is restarted, and reads again from the last acknowledged
    offsets), not a wait without end; with the broker back, the same commit goes through."""
    produce(cli, "--count", "2000", "--seed", "22")
    settings = load_settings().settings
    consumer = open_bus(settings).consumer(settings.consumer_group, [settings.topic_transactions])
    with environ(outage_stack_env(corner)):
        pid = StackState.load(load_settings().settings).services["kafka"].pid
    try:
        records = []
        deadline = time.monotonic() + 60
        while not records and time.monotonic() < deadline:
            records = consumer.poll(500, 1.0)
        assert records, "nothing read from the broker in 60 s"
        offsets = {(r.topic, r.partition): r.offset + 1 for r in records}
        raised: list[BaseException] = []

        def commit() -> None:
            try:
                consumer.commit(offsets)
            except BaseException as exc:  # the test reads what it was
                raised.append(exc)

        os.kill(pid, signal.SIGSTOP)
        try:
            attempt = threading.Thread(target=commit, daemon=True)
            attempt.start()
            attempt.join(timeout=COMMIT_TIMEOUT_S + 30)
            assert not attempt.is_alive(), "the commit is still waiting on a frozen broker"
        finally:
            os.kill(pid, signal.SIGCONT)
        assert len(raised) == 1 and isinstance(raised[0], BackendUnavailable), raised
        assert "did not acknowledge the offset commit" in str(raised[0])
        consumer.commit(offsets)
        stored = consumer.committed()
        assert {tp: stored[tp] for tp in offsets} == offsets
    finally:
        consumer.close()
