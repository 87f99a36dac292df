"""`fraudctl demo --json` end to end, on the embedded default and on the native stack:
each step's outcome (counts, versions, aliases, split, drift verdicts, the refusal), not
only the exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REDIS_DBS, private_corner

STEPS = [
    "doctor", "produce", "materialize", "train-a", "drift-normal", "promote-a-staging",
    "promote-a-production", "train-b", "promote-b-staging", "serve", "canary-status",
    "produce-drifted", "materialize-drifted", "quality", "drift-drifted", "train-c",
    "promote-c-refused",
]  # fmt: skip
COUNT = 12_000  # smaller than the default (20,000), to keep CI short


def start_demo(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fraudctl", *args, "demo", "--count", str(COUNT), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def finish(process: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    stdout, stderr = process.communicate(timeout=900)
    return process.returncode, json.loads(stdout), stderr


def profile_envs(
    stack: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, dict[str, str]]:
    """The environment of a demo on each profile: the embedded default in a home of its
    own, and the running native stack seen from a private corner (own Redis database)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDCTL_")}
    local = base | {"FRAUDCTL_PROFILE": "local", "FRAUDCTL_HOME": str(tmp_path / "local")}
    redis_base = stack["FRAUDCTL_REDIS_URL"].rsplit("/", 1)[0]
    private_corner(monkeypatch, tmp_path / "stack", f"{redis_base}/{next(REDIS_DBS) % 16}")
    return {"local": local, "stack": dict(os.environ)}


def test_the_whole_loop_in_one_command_on_both_profiles(
    stack: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both demos at once (each is a chain of single-process steps: on two cores they
    take about the time of one)."""
    envs = profile_envs(stack, tmp_path, monkeypatch)
    running = {profile: start_demo(env) for profile, env in envs.items()}
    for profile, process in running.items():
        check_report(profile, *finish(process))


def check_report(profile: str, code: int, report: dict[str, Any], stderr: str) -> None:
    if code != 0:
        pytest.fail(f"{profile}: exited {code}: {json.dumps(report.get('error'))}\n{stderr}")
    assert report["ok"] and report["profile"] == profile
    own = ["resources"] if profile == "stack" else []  # the run's topics and bucket
    assert [s["name"] for s in report["steps"]] == own + STEPS
    assert all(s["ok"] and (s["name"] == "resources" or Path(s["log"]).is_file())
               for s in report["steps"])  # fmt: skip
    steps = {s["name"]: s for s in report["steps"]}
    summary = report["summary"]

    # produce → materialize: every event of the history is in the stores
    assert summary["events"] == {
        "history": COUNT, "drifted": COUNT // 12, "materialized_valid": COUNT,
    }  # fmt: skip
    # the drifted stream and the 3,000 events the serve step sent through `produce --score`
    assert steps["materialize-drifted"]["result"]["valid"] == COUNT // 12 + 3000
    # three versions, aliased as the loop moved them; the refused one stays a candidate
    versions = [m["version"] for m in summary["models"]]
    assert len(set(versions)) == 3 and versions == sorted(versions, key=int)
    assert summary["aliases"] == dict(
        zip(("production", "staging", "candidate"), versions, strict=True)
    )
    assert all(m["roc_auc"] > 0.8 for m in summary["models"][:2])  # promote_auc_floor
    promoted = [steps[n]["result"] for n in ("promote-a-staging", "promote-a-production",
                                               "promote-b-staging")]  # fmt: skip
    assert [p["outcome"] for p in promoted] == ["promoted"] * 3
    assert [p["version"] for p in promoted] == [versions[0], versions[0], versions[1]]
    # the canary: B on about 10 % of rows (sticky per user), no errors, shadow compared
    served = steps["serve"]["result"]
    assert served["rows"] == 3000 and set(served["variants"]) == {"baseline", "canary"}
    assert 0.05 <= summary["canary"]["share"] <= 0.15
    assert summary["canary"]["error_rate"] == 0
    assert summary["canary"]["shadow_agreement"] is not None
    status = steps["canary-status"]["result"]
    assert status["canary_weight"] == 10
    # the served traffic's labels: live quality of each variant (the canary's 10 % may
    # have too few yet: insufficient_data, reported as such, never as a number)
    quality = summary["quality"]
    assert set(quality) == {"baseline", "canary", "shadow"}
    assert quality["baseline"]["status"] == "ok" and quality["baseline"]["roc_auc"] > 0.7
    assert all(q["labeled"] > 0 for q in quality.values())
    # drift: normal traffic ok, the drifted stream found, and C refused for it
    assert summary["drift"]["normal"]["status"] == "ok"
    assert summary["drift"]["normal"]["score"] < 0.3
    assert summary["drift"]["drifted"]["status"] == "drift"
    assert "transaction_amount" in summary["drift"]["drifted"]["top"]
    refused = summary["refused"]
    assert refused["outcome"] == "refused" and refused["version"] == versions[2]
    assert "drift" in refused["reason"]
    gates = {g["name"]: g["passed"] for g in steps["promote-c-refused"]["result"]["gates"]}
    assert gates["drift"] is False
    assert Path(summary["drift"]["report"]).is_file()
    assert summary["where"]["mlflow_ui"]


def test_a_failing_step_stops_the_demo_naming_it_and_the_fix(
    stack: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for profile, env in profile_envs(stack, tmp_path, monkeypatch).items():
        # a registry nobody listens on: `doctor` finds it
        code, report, stderr = finish(
            start_demo(env | {"FRAUDCTL_MLFLOW_URI": "http://127.0.0.1:1"})
        )
        assert code == 3, (profile, stderr)
        assert report["error"]["exit_code"] == 3
        assert "demo step 'check the backends' failed" in report["error"]["message"]
        assert "mlflow" in report["error"]["message"].lower()
        assert "log:" in report["error"]["hint"]
        assert report["demo"]["failed_step"] == "doctor"
        assert report["demo"]["ok"] is False
