"""One native stack (broker, S3 server, Redis, MLflow) for the whole integration run,
started through `fraudctl stack up --native` on free loopback ports, in a private home.

A service that cannot start fails the run: nothing here skips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudctl.cli.main import main
from fraudctl.config import environ
from fraudctl.stack.native import private_stack_env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop the shared stack run after every other test."""
    items.sort(key=lambda item: item.get_closest_marker("stops_stack") is not None)


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
