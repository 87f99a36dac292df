"""The layering contract (pyproject's [tool.importlinter]): cli → serving → bootstrap →
services | stack → adapters → domain, services never building an adapter, and backend
libraries only in adapters — kept by the tree, and broken by a planted violation of each
kind (so the check can fail)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(src: Path, config: Path) -> subprocess.CompletedProcess[str]:
    assert LINT_IMPORTS.exists(), "import-linter is missing: make install"
    env = os.environ | {"PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        capture_output=True, text=True, check=False, env=env, cwd=src,
    )  # fmt: skip


def test_the_tree_keeps_the_contract() -> None:
    result = lint_imports(ROOT / "src", ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "broken"),
    [
        ("adapters/registry.py", "import fraudctl.services.promote", "cli → serving"),
        ("gates.py", "import fraudctl.adapters.offline", "cli → serving"),
        ("services/promote.py", "import fraudctl.bootstrap", "cli → serving"),
        ("bootstrap.py", "import fraudctl.serving.scorer", "cli → serving"),
        ("services/drift.py", "import fraudctl.adapters.registry", "services receive ports"),
        ("services/train.py", "import fraudctl.adapters.locks", "services receive ports"),
        ("services/promote.py", "import redis", "backend libraries"),
        ("gates.py", "import mlflow", "backend libraries"),
    ],
)
def test_a_planted_violation_breaks_it(
    tmp_path: Path, module: str, planted: str, broken: str
) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "fraudctl", src / "fraudctl",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    target = src / "fraudctl" / module
    target.write_text(target.read_text() + f"\n{planted}  # planted\n")
    result = lint_imports(src, ROOT / "pyproject.toml")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout
