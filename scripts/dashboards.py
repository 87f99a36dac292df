"""Writes the provisioned Grafana dashboards under compose/grafana/dashboards/.

The JSON files are generated so that every panel has the same shape (datasource, legend,
thresholds) and the PromQL lives in one readable place. Run `make dashboards` after
editing; tests/unit/test_observability_files.py fails while the JSON is stale, and
tests/integration/test_observability.py evaluates every expression against a real
Prometheus scraping a live server.

Grafana variables used in expressions: ``$__rate_interval`` and ``$__range`` only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fraudctl.config import profile_defaults
from fraudctl.services.supervise import Backoff

OUT = Path(__file__).resolve().parents[1] / "compose" / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
SERVE = 'job="fraudctl-serve"'
MAT = 'job="fraudctl-materialize"'
RI = "[$__rate_interval]"
FIVE_XX = 'code=~"5.."'
AGREE = 'agree="true"'
RUN = "fraudctl_run"  # the gauges `fraudctl run` pushes (services.run.run_gauges)
# The thresholds the gates apply (settings defaults: fraudctl.config), drawn as lines.
_LIMITS = profile_defaults("local", Path("/"))
LATENCY_SLO_S = _LIMITS["canary_max_p95_ms"] / 1000
MAX_ERROR_RATE = _LIMITS["canary_max_error_rate"]
DRIFT_THRESHOLD = _LIMITS["drift_threshold"]
AVAILABILITY_SLO = 0.995
FRESHNESS_SLO_S = 120
CRASH = Backoff()  # the supervisor's crash-loop rule


def rate(metric: str, matchers: str = SERVE, window: str = RI, extra: str = "") -> str:
    """``rate(metric{job=…[,extra]}[window])``."""
    return f"rate({metric}{{{matchers}{',' + extra if extra else ''}}}{window})"


def quantile(q: float, metric: str, by: str = "le", matchers: str = SERVE, extra: str = "") -> str:
    bucket = rate(metric + "_bucket", matchers, extra=extra)
    return f"histogram_quantile({q}, sum by ({by}) ({bucket}))"


def error_ratio(window: str = RI) -> str:
    """5xx responses of the scoring routes over all of them; no 5xx series counts as 0."""
    errors = f"sum({rate('fraudctl_http_responses_total', window=window, extra=FIVE_XX)})"
    return f"({errors} or vector(0)) / sum({rate('fraudctl_http_responses_total', SERVE, window)})"


def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {"refId": ref, "expr": expr, "legendFormat": legend, "datasource": DATASOURCE} | extra


def panel(
    title: str,
    targets: list[dict[str, Any]],
    kind: str = "timeseries",
    unit: str = "short",
    line: float | None = None,
    width: int = 12,
    description: str = "",
    mappings: list[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A panel; ``line`` draws the SLO/threshold as a red line (or colours a stat)."""
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if line is not None:
        steps.append({"color": "red", "value": line})
    defaults: dict[str, Any] = {
        "unit": unit,
        "thresholds": {"mode": "absolute", "steps": steps},
        "mappings": mappings or [],
    }
    if kind == "timeseries":
        defaults["custom"] = {"thresholdsStyle": {"mode": "line" if line is not None else "off"}}
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options or {},
        "gridPos": {"w": width, "h": 8},
    }


def row(title: str) -> dict[str, Any]:
    """A row header: the panels after it, to the next row, belong to it."""
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"w": 24, "h": 1}}  # fmt: skip


def status_mappings(drift: bool) -> list[dict[str, Any]]:
    """A status gauge's values as words: 0 ok, (1 drift,) 2 insufficient data."""
    words = {"0": ("ok", "green"), "1": ("drift", "red"), "2": ("insufficient data", "orange")}
    if not drift:
        del words["1"]
    return [{"type": "value", "options": {value: {"text": text, "color": colour}}}
            for value, (text, colour) in words.items()]  # fmt: skip


def dashboard(
    uid: str, title: str, description: str, panels: list[dict[str, Any]]
) -> dict[str, Any]:
    x = y = tallest = 0
    for number, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24 or p["type"] == "row":
            x, y, tallest = 0, y + tallest, 0
        p["id"] = number
        p["gridPos"] |= {"x": x, "y": y}
        x, tallest = x + w, max(tallest, h)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["fraudctl"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "utc",
        "annotations": {"list": []},
        "templating": {"list": []},
        "panels": panels,
    }


def inference_slo() -> dict[str, Any]:
    latency = "fraudctl_request_latency_seconds"
    return dashboard(
        "fraudctl-inference-slo",
        "fraudctl / Inference SLO",
        f"Scoring SLO: p95 under {LATENCY_SLO_S * 1000:.0f} ms, availability "
        f"{AVAILABILITY_SLO:.1%} (non-5xx responses of the scoring routes).",
        [
            panel(
                "Request rate",
                [
                    target(f"sum({rate('fraudctl_requests_total')})", "events scored/s"),
                    target(
                        f"sum by (handler) ({rate('fraudctl_http_responses_total')})",
                        "{{handler}} requests/s",
                    ),
                ],
                unit="reqps",
            ),
            panel(
                "Latency p50 / p95 / p99 (200 ms SLO)",
                [target(quantile(q, latency), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)],
                unit="s",
                line=LATENCY_SLO_S,
            ),
            panel(
                "Error rate (5xx of scoring responses)",
                [target(error_ratio(), "5xx share")],
                unit="percentunit",
                line=1 - AVAILABILITY_SLO,
            ),
            panel(
                "Availability over the range (99.5% SLO)",
                [target(f"1 - ({error_ratio('[$__range]')})", "availability")],
                kind="stat",
                unit="percentunit",
                width=6,
                description="Green at or above the SLO.",
                options={"reduceOptions": {"calcs": ["lastNotNull"]}},
            )
            | {
                "fieldConfig": {
                    "defaults": {
                        "unit": "percentunit",
                        "decimals": 3,
                        "thresholds": {
                            "mode": "absolute",
                            "steps": [
                                {"color": "red", "value": None},
                                {"color": "green", "value": AVAILABILITY_SLO},
                            ],
                        },
                        "mappings": [],
                    },
                    "overrides": [],
                }
            },
            panel(
                "Error-budget burn rate",
                [
                    target(f"({error_ratio('[5m]')}) / {1 - AVAILABILITY_SLO:g}", "5m window"),
                    target(f"({error_ratio('[1h]')}) / {1 - AVAILABILITY_SLO:g}", "1h window"),
                ],
                width=12,
                line=14.4,
                description="1 = spending the budget exactly over 30 days; 14.4 on both "
                "windows is the fast-burn page (2% of a 30-day budget in an hour).",
            ),
            panel(
                "Up and ready",
                [
                    target(f"up{{{SERVE}}}", "up {{instance}}"),
                    target(f"fraudctl_ready{{{SERVE}}}", "ready {{instance}}"),
                ],
                kind="stat",
                width=6,
                mappings=[
                    {"type": "value", "options": {"0": {"text": "NO", "color": "red"}}},
                    {"type": "value", "options": {"1": {"text": "YES", "color": "green"}}},
                ],
            ),
            panel(
                "Where the time goes (p95)",
                [
                    target(quantile(0.95, "fraudctl_feature_fetch_seconds"), "feature fetch"),
                    target(
                        quantile(0.95, "fraudctl_model_seconds", extra='variant!="shadow"'),
                        "model",
                    ),
                ],
                unit="s",
                width=24,
            ),
        ],
    )


def traffic_split() -> dict[str, Any]:
    requests = "fraudctl_requests_total"
    shadow = "fraudctl_shadow_decisions_total"
    errors = "fraudctl_model_errors_total"
    shadow_errors = rate(errors, extra='variant="shadow"')
    return dashboard(
        "fraudctl-traffic-split",
        "fraudctl / Traffic Split",
        "Baseline vs canary vs shadow: rates, shares, errors, latency, scores, agreement.",
        [
            panel(
                "Rows per second by variant",
                [
                    target(f"sum by (variant) ({rate(requests)})", "{{variant}}"),
                    target(f"sum({rate(shadow)})", "shadow"),
                ],
                unit="reqps",
            ),
            panel(
                "Share of rows by variant",
                [
                    target(
                        f"sum by (variant) ({rate(requests)}) / ignoring(variant) group_left "
                        f"sum({rate(requests)})",
                        "{{variant}}",
                    ),
                    target(f"sum({rate(shadow)}) / sum({rate(requests)})", "shadow (copy)"),
                ],
                unit="percentunit",
            ),
            panel(
                "Error rate by variant",
                [
                    target(
                        f"sum by (variant) ({rate(errors)}) / clamp_min(sum by (variant) "
                        f"({rate(requests)}) + sum by (variant) ({rate(errors)}), 1e-9)",
                        "{{variant}}",
                    ),
                    target(
                        f"sum({shadow_errors}) / "
                        f"clamp_min(sum({rate(shadow)}) + sum({shadow_errors}), 1e-9)",
                        "shadow",
                    ),
                ],
                unit="percentunit",
                line=MAX_ERROR_RATE,
                description="Rows the variant's model failed to score; a failing canary's "
                "rows are served by the baseline.",
            ),
            panel(
                "p95 by variant",
                [
                    target(
                        quantile(0.95, "fraudctl_request_latency_seconds", "variant, le"),
                        "{{variant}} request",
                    ),
                    target(
                        quantile(0.95, "fraudctl_model_seconds", "variant, le"),
                        "{{variant}} model",
                    ),
                ],
                unit="s",
                line=LATENCY_SLO_S,
            ),
            panel(
                "Score distribution by variant (median and p90)",
                [
                    target(quantile(0.5, "fraudctl_score", "variant, le"), "{{variant}} p50"),
                    target(quantile(0.9, "fraudctl_score", "variant, le"), "{{variant}} p90"),
                ],
                unit="percentunit",
            ),
            panel(
                "Score histogram over the range",
                [
                    target(
                        "sum by (le, variant) "
                        f"(increase(fraudctl_score_bucket{{{SERVE}}}[$__range]))",
                        "{{variant}} ≤ {{le}}",
                        format="heatmap",
                        instant=True,
                    )
                ],
                kind="bargauge",
                options={"displayMode": "gradient", "orientation": "vertical"},
            ),
            panel(
                "Shadow agreement",
                [
                    target(
                        f"sum({rate(shadow, extra=AGREE)}) / sum({rate(shadow)})",
                        "same decision as served",
                    ),
                    target(
                        quantile(0.95, "fraudctl_shadow_score_delta"), "p95 shadow - served score"
                    ),
                ],
                unit="percentunit",
            ),
            panel(
                "Canary weight over time",
                [target(f"fraudctl_canary_weight_percent{{{SERVE}}}", "{{instance}}")],
                unit="percent",
            ),
            panel(
                "Model version per variant",
                [
                    target(
                        "max by (variant, alias, model_version) "
                        f"(fraudctl_model_version_info{{{SERVE}}})",
                        "{{variant}} = {{alias}} v{{model_version}}",
                        format="table",
                        instant=True,
                    )
                ],
                kind="table",
                width=24,
            ),
            row("fraudctl run: progressive delivery and supervision"),
            panel(
                "Canary weight and step the run set",
                [
                    target(f"max({RUN}_canary_weight)", "weight (%)"),
                    target(f"max({RUN}_canary_step)", "step (0: no canary)"),
                ],
                width=8,
                description="Pushed by `fraudctl run` at each decision; the served weight is "
                "the panel above.",
            ),
            panel(
                "Decisions the run recorded, by outcome",
                [target(f"max by (outcome) ({RUN}_decisions)", "{{outcome}}")],
                kind="bargauge",
                width=8,
                description="Every one is in `fraudctl promote history`.",
            ),
            panel(
                "Restarts per supervised child",
                [target(f"max by (child) ({RUN}_restarts)", "{{child}}")],
                kind="bargauge",
                width=8,
                description=f"Since the run began; more than {CRASH.crash_limit} within "
                f"{CRASH.crash_window_s / 60:g} minutes stops the run (exit 3).",
            ),
        ],
    )


def drift_overview() -> dict[str, Any]:
    return dashboard(
        "fraudctl-drift-overview",
        "fraudctl / Drift Overview",
        "PSI per feature from `fraudctl drift` (Pushgateway), feature freshness against the "
        "2-minute SLO, and the materializer's consumer lag.",
        [
            panel(
                "PSI per feature (0.3 = drift)",
                [target("max by (feature) (fraudctl_drift_psi)", "{{feature}}", instant=True)],
                kind="bargauge",
                line=DRIFT_THRESHOLD,
                options={"displayMode": "basic", "orientation": "horizontal"},
            ),
            panel(
                "Drift score (largest PSI)",
                [target("max(fraudctl_drift_score)", "drift score")],
                kind="stat",
                line=DRIFT_THRESHOLD,
                width=6,
            ),
            panel(
                "Drift status",
                [target("max(fraudctl_drift_status)", "status")],
                kind="stat",
                width=6,
                mappings=status_mappings(drift=True),
            ),
            panel(
                "PSI per feature over time",
                [target("max by (feature) (fraudctl_drift_psi)", "{{feature}}")],
                line=DRIFT_THRESHOLD,
            ),
            panel(
                "Time since the last drift run",
                [target("time() - max(fraudctl_drift_last_run_timestamp_seconds)", "age")],
                kind="stat",
                unit="s",
                width=12,
            ),
            panel(
                "Feature freshness (2-minute SLO)",
                [
                    target("max by (job) (fraudctl_feature_freshness_seconds)", "{{job}}"),
                    target(
                        quantile(0.95, "fraudctl_feature_write_delay_seconds", matchers=MAT),
                        "p95 write delay (materializer)",
                    ),
                ],
                unit="s",
                line=FRESHNESS_SLO_S,
            ),
            panel(
                "Consumer lag by topic",
                [target(f"sum by (topic) (fraudctl_consumer_lag{{{MAT}}})", "{{topic}}")],
            ),
            panel(
                "Materialized per second by outcome",
                [
                    target(
                        f"sum by (outcome) ({rate('fraudctl_materialize_events_total', MAT)})",
                        "{{outcome}}",
                    ),
                    target(f"sum({rate('fraudctl_materialize_labels_total', MAT)})", "labels"),
                ],
                unit="reqps",
                width=24,
            ),
        ],
    )


def figure(name: str, by: str = "variant") -> list[dict[str, Any]]:
    """A quality figure per group with its 95 % interval: value, low, high."""
    refs = {"value": "A", "low": "B", "high": "C"}
    return [
        target(f'max by (group) (fraudctl_quality_{name}{{by="{by}",bound="{bound}"}})',
               "{{group}}" + ("" if bound == "value" else f" ({bound})"), ref)
        for bound, ref in refs.items()
    ]  # fmt: skip


def model_quality() -> dict[str, Any]:
    return dashboard(
        "fraudctl-model-quality",
        "fraudctl / Model Quality",
        "How the served models perform on their matured labels, per variant, from "
        "`fraudctl quality` (Pushgateway): each figure with its 95 % interval.",
        [
            panel("ROC AUC per variant (95 % interval)", figure("roc_auc")),
            panel("PR AUC (average precision) per variant", figure("pr_auc")),
            panel("Precision at the served threshold", figure("precision_at_threshold")),
            panel("Recall at the served threshold", figure("recall_at_threshold")),
            panel(
                "Matured-label coverage",
                [target('max by (group) (fraudctl_quality_coverage{by="variant"})', "{{group}}")],
                unit="percentunit",
            ),
            panel(
                "Matured labels per variant",
                [target('max by (group) (fraudctl_quality_labeled{by="variant"})', "{{group}}")],
            ),
            panel("Calibration: Brier score", figure("brier")),
            panel("Calibration: expected calibration error", figure("calibration_error")),
            panel("Card precision top-k per day", figure("top_k_precision")),
            panel(
                "Label delay (event → label)",
                [
                    target(
                        "max by (group, quantile) (fraudctl_quality_label_delay_seconds"
                        '{by="variant"})',
                        "{{group}} {{quantile}}",
                    )
                ],
                unit="s",
            ),
            panel(
                "Quality status",
                [target('max by (group) (fraudctl_quality_status{by="variant"})', "{{group}}")],
                kind="stat",
                width=12,
                mappings=status_mappings(drift=False),
            ),
            panel(
                "Time since the last quality run",
                [target("time() - max(fraudctl_quality_last_run_timestamp_seconds)", "age")],
                kind="stat",
                unit="s",
                width=12,
            ),
        ],
    )


DASHBOARDS = {
    "inference-slo.json": inference_slo,
    "traffic-split.json": traffic_split,
    "drift-overview.json": drift_overview,
    "model-quality.json": model_quality,
}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
