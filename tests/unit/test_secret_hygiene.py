"""Secret hygiene of the repository: .env is ignored, detect-secrets finds nothing in the
tracked files beyond the audited baseline, and the pre-commit hooks are the agreed ones."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / ".secrets.baseline"


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [name for name in out.split("\0") if name and (ROOT / name).is_file()]


def scan(files: list[str], cwd: Path) -> dict[str, set[str]]:
    """detect-secrets with the baseline's plugins and filters: file → hashed secrets."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import transient_settings

    settings = json.loads(BASELINE.read_text())
    found = SecretsCollection(root=str(cwd))
    with transient_settings(
        {"plugins_used": settings["plugins_used"], "filters_used": settings["filters_used"]}
    ):
        found.scan_files(*files)
    return {name: {s.secret_hash for s in found[name]} for name in found.files}


def test_dot_env_is_git_ignored_and_never_tracked() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, ".env must be listed in .gitignore"
    assert not [name for name in tracked_files() if Path(name).name == ".env"]
    assert ".env.example" in tracked_files()


def test_tracked_files_hold_no_secret_outside_the_audited_baseline() -> None:
    baseline = json.loads(BASELINE.read_text())["results"]
    audited = {name: {s["hashed_secret"] for s in items} for name, items in baseline.items()}
    assert all(s["is_secret"] is False for items in baseline.values() for s in items)
    found = scan([f for f in tracked_files() if f != BASELINE.name], ROOT)
    new = {name: hashes - audited.get(name, set()) for name, hashes in found.items()}
    assert not {name: hashes for name, hashes in new.items() if hashes}, (
        "detect-secrets found secrets outside .secrets.baseline: remove them, or audit a "
        "false positive into the baseline (see .pre-commit-config.yaml)"
    )


def test_the_scan_does_find_a_committed_key(tmp_path: Path) -> None:
    fake_key = "AKIA" + "QWERTYUIOPASDFGH"  # an AWS access key id's shape, assembled
    (tmp_path / "settings.py").write_text(f'AWS_ACCESS_KEY_ID = "{fake_key}"\n')
    assert scan(["settings.py"], tmp_path)["settings.py"]


def test_pre_commit_runs_ruff_mypy_detect_secrets_and_gitleaks() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff", "ruff-format", "mypy", "detect-secrets", "gitleaks"} <= set(hooks)
    assert hooks["detect-secrets"]["args"] == ["--baseline", ".secrets.baseline"]
    ruff = next(r for r in config["repos"] if "ruff-pre-commit" in r["repo"])
    pinned = (ROOT / "constraints.txt").read_text()
    assert f"ruff=={ruff['rev'].lstrip('v')}" in pinned, "pre-commit's ruff != the pinned ruff"
