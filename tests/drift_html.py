"""Read back what an Evidently drift report shows: the per-column widgets embedded in
its HTML (bins, counts, PSI, verdict) and the dataset-level headline."""

from __future__ import annotations

import json
import re
from typing import Any

COLUMN = re.compile(
    r'"column_name": "(?P<name>[^"]+)", "column_type": "[^"]+", "stattest_name": "PSI", '
    r'"reference_distribution": (?P<ref>\{[^}]*\}), "current_distribution": (?P<cur>\{[^}]*\}), '
    r'"data_drift": "(?P<drift>[^"]+)", "drift_score": (?P<psi>[-0-9.e+]+)'
)
HEADLINE = re.compile(r"Dataset Drift is (?P<verdict>detected|NOT detected)")


def report_columns(html: str) -> dict[str, dict[str, Any]]:
    """Per column: its bins, the two windows' counts, the PSI (6 decimals, as shown) and
    whether the report calls it drifted."""
    found = {}
    for match in COLUMN.finditer(html):
        ref, cur = json.loads(match["ref"]), json.loads(match["cur"])
        found[match["name"]] = {
            "bins": ref["x"],
            "current_bins": cur["x"],
            "reference_counts": ref["y"],
            "current_counts": cur["y"],
            "psi": float(match["psi"]),
            "drifted": match["drift"] == "Detected",
        }
    return found


def report_verdict(html: str) -> str:
    """``drift`` or ``ok``, as the report's headline says."""
    match = HEADLINE.search(html)
    assert match, "no dataset drift headline in the report"
    return "drift" if match["verdict"] == "detected" else "ok"


def assert_report_agrees(html: str, result: dict[str, Any]) -> None:
    """Every feature of a drift result (its --json) is in the report with the same bins,
    counts, PSI and verdict; the report's headline is the result's status."""
    shown = report_columns(html)
    assert set(shown) == {f["feature"] for f in result["features"]}
    for feature in result["features"]:
        column = shown[feature["feature"]]
        # Evidently leaves out a bin empty in both windows.
        kept = [i for i, (r, c) in enumerate(zip(feature["reference_counts"],
                                                  feature["current_counts"], strict=True))
                if r or c]  # fmt: skip
        assert column["bins"] == column["current_bins"] == [feature["bins"][i] for i in kept]
        assert column["reference_counts"] == [feature["reference_counts"][i] for i in kept]
        assert column["current_counts"] == [feature["current_counts"][i] for i in kept]
        assert column["psi"] == round(feature["psi"], 6), feature["feature"]
        assert column["drifted"] == (feature["psi"] >= result["threshold"])
    assert report_verdict(html) == result["status"]
    stated = f"The drift detection method is PSI. The drift threshold is {result['threshold']:.2f}."
    assert html.count(stated) == len(result["features"])
