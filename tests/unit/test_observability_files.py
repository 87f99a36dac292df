"""The Prometheus and Grafana files under compose/: generated dashboards are current,
promtool accepts the config and the rules and their unit tests pass, every panel uses the
provisioned datasource. (tests/integration/test_serve.py proves each query has data.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.promql import COMPOSE, DASHBOARDS, alert_measure, alert_rules, dashboards, panel_queries
from tests.scripts import load_script

ROOT = COMPOSE.parent
PROMTOOL = shutil.which("promtool")


def load_generator() -> Any:
    return load_script("scripts/dashboards.py")


def test_dashboards_are_current_with_their_generator() -> None:
    rendered = load_generator().render()  # type: ignore[attr-defined]
    assert sorted(rendered) == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    for name, text in rendered.items():
        assert (DASHBOARDS / name).read_text() == text, f"{name} is stale: run `make dashboards`"


def test_the_four_dashboards_use_the_provisioned_datasource() -> None:
    titles = {board["title"] for board in dashboards().values()}
    assert titles == {
        "fraudctl / Inference SLO",
        "fraudctl / Traffic Split",
        "fraudctl / Drift Overview",
        "fraudctl / Model Quality",
    }
    source = yaml.safe_load(
        (COMPOSE / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    for board in dashboards().values():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in (p for p in board["panels"] if p["type"] != "row"):
            assert panel["datasource"]["uid"] == source["uid"]
            assert panel["targets"], panel["title"]
    assert len(panel_queries()) >= 30


def test_every_alert_compares_one_measure_with_one_threshold() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert names == {
        "InferenceLatencyP95High",
        "InferenceErrorRateHigh",
        "InferenceHostDown",
        "InferenceNotReady",
        "CanaryErrorRateAboveBaseline",
        "DriftDetected",
        "FeatureFreshnessBreached",
        "CanaryQualityWorse",
        "LabelCoverageLow",
        "QualityStale",
    }
    for rule in alert_rules():
        assert " bool " in alert_measure(rule["expr"])
        assert rule["annotations"]["runbook"].startswith("docs/operations.md#")


def run_promtool(*args: str, cwd: Path) -> str:
    assert PROMTOOL, "promtool missing: `make system-deps` installs Debian's prometheus"
    result = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_promtool_checks_the_config_and_rules() -> None:
    out = run_promtool("check", "config", "prometheus.yml", cwd=COMPOSE / "prometheus")
    assert "SUCCESS: 10 rules found" in out
    run_promtool("check", "rules", "rules.yml", cwd=COMPOSE / "prometheus")


def test_promtool_rule_unit_tests_cover_firing_and_quiet_for_every_alert() -> None:
    tests = yaml.safe_load((COMPOSE / "prometheus" / "rules.test.yml").read_text())["tests"]
    fired, quiet = set(), set()
    for group in tests:
        for case in group["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert fired == names
    assert quiet == names
    assert "SUCCESS" in run_promtool("test", "rules", "rules.test.yml", cwd=COMPOSE / "prometheus")


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def test_every_runbook_link_has_its_section() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    anchors = {anchor(line[3:]) for line in text.splitlines() if line.startswith("## ")}
    for rule in alert_rules():
        path, _, fragment = rule["annotations"]["runbook"].partition("#")
        assert path == "docs/operations.md" and fragment in anchors, rule["alert"]
    for link in re.findall(r"\]\(#([a-z0-9-]+)\)", text):
        assert link in anchors, link
    for needed in ("canary-rollback", "drift-alert", "freshness-breach", "redis-loss-backfill",
                   "broker-outage", "promotion-refused"):  # fmt: skip
        assert needed in anchors, needed
