"""The PromQL the project ships: every dashboard panel's expressions and every alert's
measure, read from the files under compose/ the way Grafana and Prometheus read them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose"
DASHBOARDS = COMPOSE / "grafana" / "dashboards"
RULES = COMPOSE / "prometheus" / "rules.yml"
PROMETHEUS_CONFIG = COMPOSE / "prometheus" / "prometheus.yml"
# Grafana's variables, as Grafana would expand them on a short dashboard range.
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__range": "5m"}
COMPARISON = re.compile(r"\s(==|!=|>=|<=|>|<)\s")


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panel_queries() -> list[tuple[str, str]]:
    """(dashboard / panel / refId, expression with Grafana's variables expanded)."""
    found = []
    for name, board in dashboards().items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):  # a row has none
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                assert "$" not in expr, (name, panel["title"], expr)
                found.append((f"{name} / {panel['title']} / {target['refId']}", expr))
    return found


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def alert_measure(expr: str) -> str:
    """The alert's expression with its one comparison made a ``bool`` one: a value (0 or
    1) for every series the measure has, so an empty answer means no data, not calm."""
    matches = COMPARISON.findall(expr)
    assert len(matches) == 1, f"an alert must compare once: {expr}"
    return COMPARISON.sub(lambda m: f" {m.group(1)} bool ", expr, count=1)
