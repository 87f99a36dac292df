"""`fraudctl quality` on the fakes and through the CLI (local profile, no services):
every figure equals a brute-force recomputation from the prediction log and the labels;
maturity, retries, shadow scores, insufficient data, the log and the gauges."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudctl.config import Settings, load_settings
from fraudctl.features import FEATURE_NAMES
from fraudctl.services.quality import QUALITY_JOB, QualityOptions, history, measure_quality
from tests.conftest import RunCli
from tests.fakes import FakeBackends

NOW = datetime.now(UTC).replace(microsecond=0)
DELAY = 3600.0
UTC_US = pa.timestamp("us", "UTC")


def predictions(rows: list[dict[str, Any]]) -> Any:
    from fraudctl.adapters.tables import predictions_table

    base = {
        "transaction_amount": 10.0,
        "country": "US",
        "device": "web",
        "trace_id": "t",
        **dict.fromkeys(FEATURE_NAMES, 0.0),
        "shadow_version": None,
        "shadow_score": None,
    }
    return predictions_table([base | row for row in rows])


def traffic(n: int, seed: int, *, label_share: float = 1.0, shadow: bool = False,
            canary_signal: float = 0.8, canary_share: float = 0.1) -> dict[str, Any]:  # fmt: skip
    """n served predictions over the last two days: 90 % baseline (v1, good), 10 %
    canary (v2, weaker: ``canary_signal`` < the baseline's 2.0); labels for
    ``label_share`` of them, 30 min after the event."""
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.05
    canary = rng.random(n) < canary_share
    signal = np.where(canary, canary_signal, 2.0)
    score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + signal * fraud - 2.5)))
    scored = [NOW - timedelta(seconds=float(x)) for x in rng.uniform(2 * DELAY, 2 * 86400, n)]
    rows = [{"event_id": f"e{i}", "scored_at": scored[i], "score": float(score[i]),
             "decision": "block" if score[i] >= 0.5 else "allow",
             "variant": "canary" if canary[i] else "baseline",
             "model_version": "2" if canary[i] else "1",
             **({"shadow_version": "3", "shadow_score": float(score[i]) ** 0.5} if shadow else {})}
            for i in range(n)]  # fmt: skip
    labeled = rng.random(n) < label_share
    labels = pa.table({
        "event_id": [f"e{i}" for i in range(n) if labeled[i]],
        "label": pa.array([int(fraud[i]) for i in range(n) if labeled[i]], pa.int64()),
        "event_ts": pa.array([scored[i] for i in range(n) if labeled[i]], UTC_US),
        "label_ts": pa.array([scored[i] + timedelta(minutes=30) for i in range(n) if labeled[i]],
                             UTC_US),
    })  # fmt: skip
    events = pa.table({"event_id": [f"e{i}" for i in range(n)],
                       "user_id": [f"user-{i % 700}" for i in range(n)]})  # fmt: skip
    return {"rows": rows, "labels": labels, "events": events, "fraud": fraud, "labeled": labeled}


def load(offline: Any, made: dict[str, Any]) -> None:
    hour = "date=2026-11-30/hour=00"
    offline.write_snapshot("predictions", hour, "p", predictions(made["rows"]))
    offline.write_snapshot("labels", hour, "l", made["labels"])
    offline.write_snapshot("events", hour, "e", made["events"])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(environ={"FRAUDCTL_HOME": str(tmp_path)}, cwd=tmp_path).settings


def options(**changes: Any) -> QualityOptions:
    base = {
        "start": NOW - timedelta(days=3),
        "end": NOW,
        "as_of": NOW,
        "max_label_delay_s": DELAY,
        "min_labels": 200,
        "min_positives": 5,
    }
    return QualityOptions(**(base | changes))  # type: ignore[arg-type]


def test_every_figure_equals_a_brute_force_recomputation(settings: Settings) -> None:
    backends = FakeBackends(settings)
    made = traffic(6000, 0)
    load(backends.offline, made)
    result = measure_quality(backends, options())
    assert result.status == "ok" and [g.group for g in result.groups] == ["baseline", "canary"]
    frame = pd.DataFrame(made["rows"]).assign(label=made["fraud"].astype(int))
    frame["user_id"] = [f"user-{i % 700}" for i in range(len(frame))]
    for group in result.groups:
        part = frame[frame["variant"] == group.group]
        y, s, flagged = part["label"], part["score"], part["decision"] == "block"
        f = group.figures
        assert group.counts["predictions"] == group.counts["labeled"] == len(part)
        assert group.counts["fraud"] == int(y.sum()) and group.counts["alerts"] == int(
            flagged.sum()
        )
        assert f["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert f["pr_auc"]["value"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        tp = int((flagged & (y == 1)).sum())
        assert f["precision_at_threshold"]["value"] == pytest.approx(tp / flagged.sum())
        assert f["recall_at_threshold"]["value"] == pytest.approx(tp / y.sum())
        assert f["alert_rate"]["value"] == pytest.approx(flagged.mean())
        assert f["brier"]["value"] == pytest.approx(float(((s - y) ** 2).mean()))
        day = pd.to_datetime(part["scored_at"]).dt.floor("D")
        per_card = (
            part.assign(day=day)
            .groupby(["day", "user_id"])
            .agg(score=("score", "max"), label=("label", "max"))
        )
        top = per_card.sort_values("score", ascending=False).groupby(level="day").head(100)
        expected = top.groupby(level="day")["label"].mean().mean()
        assert f["top_k_precision"]["value"] == pytest.approx(expected)
        for estimate in f.values():
            assert estimate["low"] <= estimate["value"] <= estimate["high"]
        assert group.label_delay_s["p50"] == pytest.approx(1800.0)
        assert group.versions == (["1"] if group.group == "baseline" else ["2"])
    by_version = measure_quality(backends, options(by="version"))
    assert [g.group for g in by_version.groups] == ["1", "2"]
    assert by_version.groups[0].figures["roc_auc"] == result.groups[0].figures["roc_auc"]
    # The weaker canary is measured weaker.
    assert (
        result.groups[1].figures["roc_auc"]["value"] < result.groups[0].figures["roc_auc"]["value"]
    )


def test_maturity_pending_is_left_out_and_unlabeled_is_not_a_negative(settings: Settings) -> None:
    backends = FakeBackends(settings)
    made = traffic(6000, 1, label_share=0.7)
    young = [{**r, "event_id": f"y{i}", "scored_at": NOW - timedelta(seconds=60)}
             for i, r in enumerate(made["rows"][:50])]  # fmt: skip
    made["rows"] += young
    load(backends.offline, made)
    result = measure_quality(backends, options())
    baseline = result.groups[0]
    c = baseline.counts
    assert c["pending"] == sum(1 for r in young if r["variant"] == "baseline")
    assert c["labeled"] + c["unlabeled_matured"] + c["pending"] == c["predictions"]
    assert baseline.coverage["value"] == pytest.approx(
        c["labeled"] / (c["labeled"] + c["unlabeled_matured"])
    )
    labeled_ids = set(made["labels"].column("event_id").to_pylist())
    part = [r for r in made["rows"] if r["variant"] == "baseline" and r["event_id"] in labeled_ids]
    y = [int(made["fraud"][int(r["event_id"][1:])]) for r in part]
    assert baseline.figures["roc_auc"]["value"] == pytest.approx(
        roc_auc_score(y, [r["score"] for r in part]), abs=1e-12
    )


def test_a_retried_request_counts_once_and_the_shadow_is_a_group(settings: Settings) -> None:
    backends = FakeBackends(settings)
    shadow_version = backends.registry.add_version(object())  # "1"
    backends.registry.add_version(object())
    third = backends.registry.add_version(object())  # the shadow, version "3"
    backends.registry.tag_version(third, {"threshold": "0.6"})
    assert shadow_version == "1"
    made = traffic(5000, 2, shadow=True)
    made["rows"] += [dict(made["rows"][0], scored_at=NOW - timedelta(hours=3))]  # a retry
    load(backends.offline, made)
    result = measure_quality(backends, options())
    groups = {g.group: g for g in result.groups}
    assert set(groups) == {"baseline", "canary", "shadow"}
    assert sum(g.counts["predictions"] for g in groups.values() if g.group != "shadow") == 5000
    shadow = groups["shadow"]
    assert shadow.counts["predictions"] == 5000 and shadow.versions == ["3"]
    scores = np.array([r["shadow_score"] for r in made["rows"][:5000]])
    assert shadow.counts["alerts"] == int((scores >= 0.6).sum())


def test_too_few_matured_labels_is_insufficient_data_with_counts_and_no_nan(
    settings: Settings,
) -> None:
    backends = FakeBackends(settings)
    made = traffic(400, 3, label_share=0.2)
    load(backends.offline, made)
    result = measure_quality(backends, options())
    assert result.status == "insufficient_data"
    for group in result.groups:
        assert group.status == "insufficient_data" and "matured labels <" in group.reason
        assert group.figures == {} and group.counts["labeled"] < 200
    json.dumps(result.as_dict(), allow_nan=False)  # no NaN anywhere
    empty = measure_quality(FakeBackends(settings), options())
    assert empty.status == "insufficient_data" and empty.groups == []


def test_runs_are_logged_and_pushed(settings: Settings) -> None:
    backends = FakeBackends(settings)
    load(backends.offline, traffic(6000, 4))
    result = measure_quality(backends, options())
    assert [r["status"] for r in history(backends.offline)] == ["ok"]
    (key, gauges), = backends.pusher.groups.items()  # fmt: skip
    assert key == (QUALITY_JOB, (("model", backends.registry.model_name),))
    auc = {(g.labels["group"], g.labels["bound"]): g.value for g in gauges
           if g.name == "fraudctl_quality_roc_auc"}  # fmt: skip
    assert auc[("canary", "value")] == result.groups[1].figures["roc_auc"]["value"]
    assert {"fraudctl_quality_status", "fraudctl_quality_coverage"} <= {g.name for g in gauges}
    assert all(np.isfinite(g.value) for g in gauges)


def test_the_cli_reports_and_exits_4_on_insufficient_data(
    cli: RunCli, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraudctl.adapters.offline import open_offline

    home = isolated_env / "home"
    monkeypatch.setenv("FRAUDCTL_HOME", str(home))
    monkeypatch.setenv("FRAUDCTL_QUALITY_MAX_LABEL_DELAY_S", str(DELAY))
    offline = open_offline(load_settings().settings)
    load(offline, traffic(6000, 5))
    result = cli("quality", "--window", "last:3d", "--json")
    assert result.code == 0, result.err
    outcome = result.json()
    assert outcome["status"] == "ok" and {g["group"] for g in outcome["groups"]} == {
        "baseline",
        "canary",
    }
    text = cli("quality", "--window", "last:3d", "--by", "version")
    assert text.code == 0 and "ROC AUC" in text.out and "card precision top-k" in text.out
    few = cli("--set", "quality_min_labels=100000", "quality", "--window", "last:3d", "--json")
    assert few.code == 4 and few.json()["status"] == "insufficient_data"
    runs = cli("quality", "--history", "--json")
    assert [r["status"] for r in runs.json()["runs"]] == ["ok", "ok", "insufficient_data"]
    bad = cli("quality", "--by", "user")
    assert bad.code == 2 and "--by 'user'" in bad.err


def test_follow_runs_on_the_clock_without_stacking_an_overrun(settings: Settings) -> None:
    from fraudctl.services.quality import follow_quality

    backends = FakeBackends(settings)
    load(backends.offline, traffic(3000, 6))
    now = [1000.0]
    starts: list[float] = []

    def on_result(result: Any) -> None:
        starts.append(now[0])
        now[0] += 25.0 if len(starts) == 2 else 1.0  # the second run overruns 2.5 slots

    def sleep(seconds: float) -> None:
        now[0] += seconds

    runs = follow_quality(backends, lambda at: options(min_labels=100), 10.0, on_result,
                          lambda: len(starts) >= 4, clock=lambda: now[0], sleep=sleep)  # fmt: skip
    assert runs == 4
    assert starts == [1000.0, 1010.0, 1040.0, 1050.0]  # 1020 and 1030 were skipped, not run
    assert len(history(backends.offline)) == 4


def test_follow_through_the_cli_serves_gauges_and_stops_on_ctrl_c(
    isolated_env: Path, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from fraudctl.adapters.offline import open_offline
    from fraudctl.stack.native import free_ports

    home = tmp_path / "home"
    env = {**os.environ, "FRAUDCTL_HOME": str(home), "FRAUDCTL_PROFILE": "local",
           "FRAUDCTL_QUALITY_MAX_LABEL_DELAY_S": str(DELAY)}  # fmt: skip
    load(open_offline(load_settings(environ=env, cwd=tmp_path).settings), traffic(3000, 7))
    port = free_ports(("prometheus",))["prometheus"]
    follow = subprocess.Popen(
        [sys.executable, "-m", "fraudctl", "quality", "--window", "last:3d", "--follow",
         "--every", "1s", "--metrics-port", str(port), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert follow.stdout is not None
        lines = [json.loads(follow.stdout.readline()) for _ in range(2)]
        assert all(line["status"] == "ok" for line in lines)
        assert lines[0]["as_of"] != lines[1]["as_of"]  # the window moves with the clock
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'fraudctl_quality_roc_auc{bound="value",by="variant",group="canary"}' in text
    finally:
        follow.send_signal(signal.SIGINT)
        code = follow.wait(timeout=60)
    assert code == 130, follow.stderr.read() if follow.stderr else ""
