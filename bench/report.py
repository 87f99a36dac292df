"""One results table from every benchmark's JSON under bench/results/: each figure beside
its baseline (measured in the same run) and the ratio, as Markdown and JSON.

    python bench/report.py            # writes bench/results/summary.{md,json}

`make bench` runs every benchmark first, then this.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS = ("produce", "replay", "materialize", "train", "serve", "feature_serving", "drift",
              "quality")  # fmt: skip


def at(data: Any, path: str) -> Any:
    """``a.b.0.c`` into nested dicts and lists."""
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def row(
    data: dict[str, Any], figure: str, value: str, baseline: str, baseline_name: str,
    unit: str, target: str = "", higher_is_better: bool = True,
) -> dict[str, Any]:  # fmt: skip
    v, b = at(data, value), at(data, baseline)
    return {
        "benchmark": data["benchmark"],
        "figure": figure,
        "value": v,
        "baseline": b,
        "baseline_is": baseline_name,
        "ratio": round(v / b, 3) if b else None,
        "unit": unit,
        "target": target,
        "higher_is_better": higher_is_better,
    }


def rows_of(name: str, d: dict[str, Any]) -> list[dict[str, Any]]:
    if name == "produce":
        return [row(d, "events published/s", "fraudctl_events_per_s",
                    "baseline_with_callbacks_msgs_per_s", "raw confluent-kafka msgs/s",
                    "events/s", f"≥ {d['target_events_per_s']:,}")]  # fmt: skip
    if name == "replay":
        return [
            row(d, f"rows replayed/s, {d['rows']:,}-row {kind} (events + labels)",
                f"{kind}.fraudctl_rows_per_s", f"{kind}.baseline_rows_per_s",
                "pyarrow read + f-string + raw confluent-kafka", "rows/s")
            for kind in ("csv", "parquet")
        ]  # fmt: skip
    if name == "materialize":
        return [
            row(d, "events materialized/s", "fraudctl_events_per_s", "baseline_events_per_s",
                "raw confluent-kafka read + json.loads", "events/s",
                f"≥ {d['targets']['events_per_s']:,}"),
        ]  # fmt: skip
    if name == "train":
        largest = d["runs"][-1]
        found = [
            row(d, f"train wall time, {largest['events']:,} events", "runs.-1.train.wall_s",
                "runs.-1.baseline.wall_s", "plain pandas join + fit", "s",
                f"≤ {d['target']['wall_s']:g} s", higher_is_better=False),
            row(d, "ROC AUC (holdout)", "quality.model.roc_auc",
                "quality.raw_fields_only.roc_auc", "model on raw fields only", ""),
        ]  # fmt: skip
        return found
    if name == "serve":
        first = d["runs"][0]
        return [
            row(d, f"p95 latency @ {first['rate']:g}/s (Ray, direct ingress)",
                "runs.0.ray.p95_ms", "runs.0.uvicorn.p95_ms", "same app on plain uvicorn",
                "ms", f"≤ {d['target']['p95_ms']:g} ms", higher_is_better=False),
            row(d, f"p95 latency @ {first['rate']:g}/s with shadow",
                "shadow.ray_with_shadow.p95_ms", "runs.0.ray.p95_ms", "Ray without shadow",
                "ms", "", higher_is_better=False),
        ]  # fmt: skip
    if name == "feature_serving":
        return [
            row(d, f"p95 @ {run['rate']:g}/s, /v1/score (features + score, uvicorn)",
                f"runs.{i}.fraudctl_uvicorn.p95_ms", f"runs.{i}.feast_serve.p95_ms",
                "feast serve, the same features only", "ms", "", higher_is_better=False)
            for i, run in enumerate(d["runs"][:2])
        ]  # fmt: skip
    if name == "drift":
        return [
            row(d, f"drift, {d['rows']['current']:,} rows per window (JSON verdict)",
                "json_s", "baseline.seconds", "Evidently DataDriftPreset alone", "s",
                f"≤ {d['target_s']:g} s", higher_is_better=False),
        ]  # fmt: skip
    if name == "quality":
        return [
            row(d, f"quality, {d['predictions']:,} predictions joined with labels (all figures)",
                "quality_s", "baseline.seconds", "pandas join + scikit-learn point figures", "s",
                f"≤ {d['target_s']:g} s", higher_is_better=False),
        ]  # fmt: skip
    raise KeyError(name)


def summary() -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    missing = []
    for name in BENCHMARKS:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            missing.append(name)
            continue
        rows += rows_of(name, json.loads(path.read_text()))
    return {"rows": rows, "missing": missing}


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "| benchmark | figure | value | baseline | baseline is | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        unit = f" {r['unit']}" if r["unit"] else ""
        lines.append(
            f"| {r['benchmark']} | {r['figure']} | {r['value']:,}{unit} | "
            f"{r['baseline']:,}{unit} | {r['baseline_is']} | {r['ratio']} | {r['target']} |"
        )
    if data["missing"]:
        lines.append(f"\nNot run: {', '.join(data['missing'])}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    data = summary()
    (RESULTS / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / "summary.md").write_text(markdown(data))
    sys.stdout.write(markdown(data))
    return 1 if data["missing"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
