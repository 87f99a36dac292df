"""Shared fixtures: every test runs the real `main()` in-process, in a clean directory,
with no FRAUDCTL_* variable leaking in from the machine or from another test."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fraudctl.cli.main import main

# The modules of the service tier by the seconds they took (`TEST_DURATIONS=0`, summed
# per module, fresh clone, 2026-12-04; test_run as it ran after its stack story was
# shortened), longest first: `make test` runs them in this order with `--dist loadfile
# --no-loadscope-reorder`, so each worker starts a long module first and the short ones
# fill in at the end (longest-processing-time-first). pytest-xdist's own order (most
# tests first) put the two-test demo module near the end: a tail of minutes on one
# worker. A module missing here runs after these, in collection order.
MODULE_SECONDS = {
    "tests/integration/test_run.py": 650, "tests/integration/test_serve.py": 741,
    "tests/integration/test_promote.py": 655, "tests/integration/test_demo.py": 253,
    "tests/integration/test_materialize.py": 221, "tests/integration/test_users_tools.py": 210,
    "tests/integration/test_outages.py": 177, "tests/faults/test_bus_damage.py": 139,
    "tests/faults/test_feast_registry.py": 124, "tests/faults/test_storage.py": 104,
    "tests/integration/test_replay.py": 70, "tests/integration/test_produce.py": 64,
    "tests/integration/test_train.py": 61, "tests/integration/test_native_stack.py": 44,
    "tests/integration/test_drift.py": 36, "tests/faults/test_concurrent_materialize.py": 24,
    "tests/integration/test_bus_contract.py": 16, "tests/faults/test_model_cache.py": 15,
    "tests/integration/test_port_contracts.py": 11, "tests/faults/test_http_inputs.py": 11,
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest modules first (MODULE_SECONDS); within a module, the order written."""
    weight = {name: -seconds for name, seconds in MODULE_SECONDS.items()}
    items.sort(key=lambda item: weight.get(item.nodeid.split("::")[0], 0))


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


RunCli = Callable[..., Result]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith("FRAUDCTL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
