"""`make bench`'s table: every benchmark under bench/ has a results file and rows with a
baseline and a ratio, and the committed summary is the one report.py makes of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def report() -> Any:
    return load_script("bench/report.py")


def test_every_benchmark_script_is_in_the_table() -> None:
    module = report()
    scripts = {p.stem for p in (ROOT / "bench").glob("*.py")} - {"_common", "report"}
    assert set(module.BENCHMARKS) == scripts
    assert f"BENCHMARKS := {' '.join(module.BENCHMARKS)}" in (ROOT / "Makefile").read_text()


def test_each_row_has_a_baseline_and_its_ratio() -> None:
    data = report().summary()
    assert data["missing"] == []
    assert {r["benchmark"] for r in data["rows"]} == set(report().BENCHMARKS)
    for r in data["rows"]:
        assert r["baseline"] and r["ratio"] == round(r["value"] / r["baseline"], 3), r


def test_the_committed_summary_is_current() -> None:
    module = report()
    data = module.summary()
    results = ROOT / "bench" / "results"
    assert json.loads((results / "summary.json").read_text()) == data, "run bench/report.py"
    assert (results / "summary.md").read_text() == module.markdown(data)


def test_docs_show_the_same_table() -> None:
    table = (ROOT / "bench" / "results" / "summary.md").read_text()
    assert table in (ROOT / "docs" / "benchmarks.md").read_text(), "copy summary.md in"
