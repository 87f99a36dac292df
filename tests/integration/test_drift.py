"""`fraudctl drift` on the embedded default: PSI per feature that anyone can recompute
from the reported bins and counts, two windows of the same settings without drift, a
drifted stream found, tiny windows never passing."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraudctl.adapters.drift_psi import psi_from_counts
from tests.conftest import RunCli
from tests.drift_html import assert_report_agrees

DAY = 86_400
USERS = "20000"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window(start: float, seconds: float = 100) -> str:
    return f"{iso(start)}/{iso(start + seconds)}"


def gauges(url: str) -> dict[str, float]:
    """The fraudctl_drift_* samples the Pushgateway holds, by name and labels."""
    found = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("fraudctl_drift_"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def produce_span(cli: RunCli, count: int, start: float, span: str, *extra: str) -> None:
    produced = cli(
        "produce", "--rate", "0", "--count", str(count), "--label-delay", "0", "--users",
        "2000", "--start", iso(start), "--span", span, "--json", *extra,
    )  # fmt: skip
    assert produced.code == 0, produced.err


def assert_recomputable(result: dict[str, Any]) -> None:
    """Every reported PSI follows from the reported bins and counts."""
    for feature in result["features"]:
        assert sum(feature["reference_counts"]) == result["reference"]["rows"]
        assert sum(feature["current_counts"]) == result["current"]["rows"]
        assert len(feature["bins"]) == len(feature["reference_counts"])
        expected = psi_from_counts(feature["reference_counts"], feature["current_counts"])
        assert abs(feature["psi"] - expected) <= 1e-9, feature["feature"]
        if feature["kind"] == "numeric":
            assert feature["edges"] == sorted(feature["edges"])
            assert len(feature["bins"]) == len(feature["edges"]) + 1


LABELS = 'instance="",job="fraudctl_drift",model="fraud-detector"'


def assert_pushed(pushgateway: str, result: dict[str, Any], psi: dict[str, float]) -> None:
    """The result's gauges are on the Pushgateway: status ok, the score, a feature's PSI."""
    assert result["pushed_to"] == pushgateway and result["push_error"] is None
    pushed = gauges(pushgateway)
    assert pushed[f"fraudctl_drift_status{{{LABELS}}}"] == 0
    assert pushed[f"fraudctl_drift_score{{{LABELS}}}"] == pytest.approx(result["drift_score"])
    amount = pushed[f'fraudctl_drift_psi{{feature="transaction_amount",{LABELS}}}']
    assert amount == pytest.approx(psi["transaction_amount"])


def test_drift_reports_recomputable_psi_and_finds_a_drifted_stream(
    cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pushgateway: str
) -> None:
    monkeypatch.setenv("FRAUDCTL_PROFILE", "local")
    monkeypatch.setenv("FRAUDCTL_PUSHGATEWAY_URL", pushgateway)
    monkeypatch.setenv("FRAUDCTL_HOME", str(tmp_path / "home"))
    now = float(int(time.time()))
    # 48 h of normal traffic, then 24 h drifted: event time as sparse as real traffic
    # (--span), so the 24-h history features reach a steady state after the first day.
    normal, drifted_from = now - 4 * DAY, now - 2 * DAY
    produce_span(cli, 24_000, normal, "48h", "--seed", "1")
    produce_span(cli, 12_000, drifted_from, "24h", "--seed", "1", "--drift", "amount=1.8")
    assert cli("materialize", "--json").code == 0
    # Trained on the normal second day: its training window, the default reference, is
    # traffic whose history features are in their steady state.
    trained = cli("train", "--since", iso(normal + DAY), "--until", iso(drifted_from), "--json")
    assert trained.code == 0, trained.err

    # Two windows of the same settings (the normal second day, halves of ≥ 5,000
    # events): every feature's PSI < 0.1, ok, exit 0, and every PSI recomputes.
    middle = normal + 1.5 * DAY
    same = cli(
        "drift", "--reference", f"{iso(normal + DAY)}/{iso(middle)}",
        "--current", f"{iso(middle)}/{iso(drifted_from - 1)}", "--source", "events", "--json",
    )  # fmt: skip
    assert same.code == 0, same.err
    result = same.json()
    assert result["status"] == "ok"
    assert min(result["reference"]["rows"], result["current"]["rows"]) >= 5000
    monitored = {f["feature"] for f in result["features"]}
    assert {"transaction_amount", "country", "device", "score", "amount_avg_24h"} <= monitored
    assert all(f["psi"] < 0.1 for f in result["features"]), result["features"]
    assert_recomputable(result)
    assert result["drift_score"] == max(f["psi"] for f in result["features"])
    same_psi = {f["feature"]: f["psi"] for f in result["features"]}
    html = Path(result["report"]).read_text()
    assert html.lstrip().lower().startswith("<!doctype html")
    assert_report_agrees(html, result)  # one drift truth: the report is the --json
    assert Path(result["report_uri"]).exists()  # the offline store is a directory here
    assert result["run_id"]
    assert_pushed(pushgateway, result, same_psi)

    # The drifted day's second half (24 h of drifted history by its end) against the
    # model's training window (the default reference).
    drifted = cli(
        "drift", "--current", f"{iso(drifted_from + DAY / 2)}/{iso(drifted_from + DAY - 1)}",
        "--source", "events", "--json",
    )  # fmt: skip
    assert drifted.code == 4, drifted.err
    found = drifted.json()
    assert found["status"] == "drift"
    assert found["reference"]["what"].startswith("training window of version 1")
    psi = {f["feature"]: f["psi"] for f in found["features"]}
    # The amount-level features move past 0.3; the 24-h sum is dominated by how many
    # earlier events a user had (PSI ~0.03 here) and amount_to_avg_24h is a ratio that a
    # uniform scale leaves alone (~0.02).
    for amount_derived in ("transaction_amount", "amount_avg_24h"):
        assert psi[amount_derived] > 0.3, json.dumps(psi)
    assert found["drift_score"] >= found["threshold"]
    assert_report_agrees(Path(found["report"]).read_text(), found)
    assert gauges(pushgateway)[f"fraudctl_drift_status{{{LABELS}}}"] == 1

    # A window too small to judge never passes.
    tiny = cli(
        "drift", "--reference", f"{iso(normal + DAY)}/{iso(middle)}",
        "--current", window(middle, 60), "--source", "events", "--json",
    )  # fmt: skip
    assert tiny.code == 4
    assert tiny.json()["status"] == "insufficient_data"
    assert tiny.json()["features"] == []

    # What promote will read: the newest record.
    from fraudctl.bootstrap import wire
    from fraudctl.config import load_settings
    from fraudctl.services.drift import latest

    newest = latest(wire(load_settings().settings).offline)
    assert newest is not None and newest["status"] == "insufficient_data"


def test_drift_refuses_bad_windows(cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDCTL_PROFILE", "local")
    for args in (
        ["--current", "training"],
        ["--current", "yesterday"],
        ["--reference", "2026-11-02/2026-11-01"],
        ["--current", "last:soon"],
        ["--source", "tweets"],
    ):
        refused = cli("drift", *args)
        assert refused.code == 2, (args, refused.err)
    # --span lays out a --rate 0 run, and never into the future.
    for args in (
        ["--count", "10", "--span", "1h"],
        ["--rate", "0", "--span", "1h", "--start", iso(time.time() - DAY)],
        ["--rate", "0", "--count", "10", "--span", "2h", "--start", iso(time.time() - 3600)],
        ["--rate", "0", "--count", "10", "--span", "soon"],
    ):
        refused = cli("produce", *args)
        assert refused.code == 2, (args, refused.err)
        assert "--span" in refused.err, refused.err
