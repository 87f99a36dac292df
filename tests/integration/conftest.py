"""One native stack (broker, S3 server, Redis, MLflow) per test process — the whole run,
or each pytest-xdist worker of it — started through `fraudctl stack up --native` on free
loopback ports, in a private home.

A service that cannot start fails the run: nothing here skips."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fraudctl.cli.main import main
from fraudctl.config import environ, load_settings
from fraudctl.stack.native import free_ports, private_stack_env


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home: Path = tmp_path_factory.mktemp("stack-home")
    env = private_stack_env(home)
    with environ(env):
        code = main(["stack", "up", "--native", "--json"])
    try:
        assert code == 0, "the native stack did not start; see the logs under " + str(home)
        with environ(env):
            yield env
    finally:
        # With the stack's own settings: a test's monkeypatch may have removed them from
        # the environment on its way out (it restores what it saw before the stack began).
        with environ(env):
            main(["stack", "down", "--native", "--json"])


@pytest.fixture
def stack(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point this test's FRAUDCTL_* settings at the running native stack."""
    for key, value in stack_env.items():
        monkeypatch.setenv(key, value)
    return stack_env


REDIS_DBS = itertools.count(1)


@pytest.fixture(params=["local", "stack"])
def platform(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """A private corner of one profile: own home, topics, bucket and Redis database."""
    monkeypatch.setenv("FRAUDCTL_HOME", str(tmp_path / "home"))
    if request.param == "local":
        monkeypatch.setenv("FRAUDCTL_PROFILE", "local")
        return {"profile": "local"}
    stack = request.getfixturevalue("stack")
    base_url = stack["FRAUDCTL_REDIS_URL"].rsplit("/", 1)[0]
    env = private_corner(monkeypatch, tmp_path / "home", f"{base_url}/{next(REDIS_DBS) % 16}")
    return {"profile": "stack"} | env


def private_corner(monkeypatch: pytest.MonkeyPatch, home: Path, redis_url: str) -> dict[str, str]:
    """Point the settings at a stack's own topics, consumer group, bucket, home and an
    emptied Redis database, unique to this test; return what was set."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        "FRAUDCTL_HOME": str(home),
        "FRAUDCTL_TOPIC_TRANSACTIONS": f"tx-{suffix}",
        "FRAUDCTL_TOPIC_LABELS": f"labels-{suffix}",
        "FRAUDCTL_TOPIC_DLQ": f"dlq-{suffix}",
        "FRAUDCTL_CONSUMER_GROUP": f"materialize-{suffix}",
        "FRAUDCTL_S3_BUCKET": f"mat-{suffix}",
        "FRAUDCTL_REDIS_URL": redis_url,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from fraudctl.adapters.probes import ensure_bucket, redis_client

    settings = load_settings().settings
    ensure_bucket(settings)
    redis_client(settings).flushdb()
    return env


@contextlib.contextmanager
def loopback_daemon(
    command: list[str],
    ready_url: str,
    log: Path,
    env: dict[str, str] | None = None,
    ready_within_s: float = 30,
) -> Iterator[None]:
    """Run a server (a Debian package's binary, a tool's own server) until the block
    ends; wait until ``ready_url`` answers 200. One that exits or never gets ready fails
    the test.  It runs in a process group of its own, stopped as a whole (servers that
    start workers)."""
    with log.open("w") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=log_file, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + ready_within_s
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            assert process.poll() is None, f"{command[0]} exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{command[0]} did not get ready: {log}"
            time.sleep(0.2)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """A real Prometheus Pushgateway (Debian's package) on a free loopback port."""
    port = free_ports(("pushgateway",))["pushgateway"]
    url = f"http://127.0.0.1:{port}"
    command = ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}"]
    with loopback_daemon(command, f"{url}/-/ready", tmp_path / "pushgateway.log"):
        yield url
