"""One native stack (broker, S3 server, Redis, MLflow) for the whole integration run,
started through `fraudctl stack up --native` on free loopback ports, in a private home.

A service that cannot start fails the run: nothing here skips."""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fraudctl.cli.main import main
from fraudctl.stack.native import port_is_free, ports_of


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop the shared stack run after every other test."""
    items.sort(key=lambda item: item.get_closest_marker("stops_stack") is not None)


def free_port(name: str, taken: set[int]) -> int:
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(20000, 45000)
        wanted = ports_of(name, port)
        if not taken.intersection(wanted) and all(port_is_free(p) for p in wanted):
            taken.update(wanted)
            return port
    raise RuntimeError("no free loopback ports")


@contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home: Path = tmp_path_factory.mktemp("stack-home")
    taken: set[int] = set()
    ports = {name: free_port(name, taken) for name in ("kafka", "redis", "s3", "mlflow")}
    env = {
        "FRAUDCTL_PROFILE": "stack",
        "FRAUDCTL_HOME": str(home),
        "FRAUDCTL_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['kafka']}",
        "FRAUDCTL_REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
        "FRAUDCTL_S3_ENDPOINT": f"http://127.0.0.1:{ports['s3']}",
        "FRAUDCTL_MLFLOW_URI": f"http://127.0.0.1:{ports['mlflow']}",
        "FRAUDCTL_S3_ACCESS_KEY": "ak" + secrets.token_hex(8),
        "FRAUDCTL_S3_SECRET_KEY": "sk" + secrets.token_hex(16),
        "FRAUDCTL_REDIS_PASSWORD": "rp" + secrets.token_hex(12),
    }
    with environ(env):
        code = main(["stack", "up", "--native", "--json"])
        assert code == 0, "the native stack did not start; see the logs under " + str(home)
        try:
            yield env
        finally:
            main(["stack", "down", "--native", "--json"])


@pytest.fixture
def stack(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point this test's FRAUDCTL_* settings at the running native stack."""
    for key, value in stack_env.items():
        monkeypatch.setenv(key, value)
    return stack_env
