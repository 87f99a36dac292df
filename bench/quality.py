"""Benchmark: `fraudctl quality` on 1,000,000 served predictions joined with their
labels (local offline store: Parquet files under a temporary home), every figure with
its interval, per variant; baseline in the same script: a plain pandas join of the same
files and scikit-learn's point figures (ROC AUC, average precision, Brier, precision and
recall at the threshold) per variant, without intervals, coverage, top-k or the log.

Predictions are synthetic but shaped like the prediction log: 90 % baseline, 10 %
canary, 2 % fraud, scores from two logistic models, over the last two days, 700,000
users; every label arrived 30 minutes after its event.

Target (issue 16): ≤ 10 s on this machine.

    .venv/bin/python bench/quality.py [--rows 1000000] [--out bench/results/quality.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import emit, timed

TARGET_S = 10.0
FILES = 10


def write(home: Path, rows: int, now: datetime) -> Any:
    import numpy as np
    import pyarrow as pa

    from fraudctl.bootstrap import wire
    from fraudctl.config import load_settings
    from fraudctl.features import FEATURE_NAMES

    settings = load_settings(environ={"FRAUDCTL_HOME": str(home)}, cwd=home).settings
    offline = wire(settings).offline
    rng = np.random.default_rng(0)
    ts = pa.timestamp("us", "UTC")
    per_file = rows // FILES
    for part in range(FILES):
        n = per_file
        ids = np.char.add(f"p{part}-", np.arange(n).astype(str))
        fraud = rng.random(n) < 0.02
        canary = rng.random(n) < 0.1
        score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + np.where(canary, 1.5, 2.0) * fraud - 3)))
        scored = np.datetime64(now.replace(tzinfo=None), "us") - (
            rng.uniform(3600, 2 * 86400, n) * 1e6
        ).astype("timedelta64[us]")
        predictions = {
            "event_id": pa.array(ids),
            "scored_at": pa.array(scored, ts),
            "transaction_amount": pa.array(rng.lognormal(3.5, 1, n)),
            "country": pa.array(np.full(n, "US")),
            "device": pa.array(np.full(n, "web")),
            **{name: pa.array(np.zeros(n)) for name in FEATURE_NAMES},
            "score": pa.array(score),
            "decision": pa.array(np.where(score >= 0.5, "block", "allow")),
            "variant": pa.array(np.where(canary, "canary", "baseline")),
            "model_version": pa.array(np.where(canary, "2", "1")),
            "trace_id": pa.array(np.full(n, "t")),
            "shadow_version": pa.nulls(n, pa.string()),
            "shadow_score": pa.nulls(n, pa.float64()),
        }
        hour = f"date=2026-11-30/hour={part:02d}"
        offline.write_snapshot("predictions", hour, f"p{part}", pa.table(predictions))
        offline.write_snapshot("labels", hour, f"l{part}", pa.table({
            "event_id": pa.array(ids), "label": pa.array(fraud.astype(np.int64)),
            "event_ts": pa.array(scored, ts),
            "label_ts": pa.array(scored + np.timedelta64(1800, "s"), ts),
        }))  # fmt: skip
        offline.write_snapshot("events", hour, f"e{part}", pa.table({
            "event_id": pa.array(ids),
            "user_id": pa.array(np.char.add("user-", rng.integers(0, 700_000, n).astype(str))),
        }))  # fmt: skip
    return settings


def fraudctl_quality(settings: Any, now: datetime) -> Any:
    from fraudctl.bootstrap import wire
    from fraudctl.services.quality import QualityOptions, measure_quality

    options = QualityOptions(start=now - timedelta(days=3), end=now, as_of=now,
                             max_label_delay_s=3600)  # fmt: skip
    return measure_quality(wire(settings), options)


def baseline(settings: Any) -> dict[str, Any]:
    import pandas as pd
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    root = settings.home / "offline"
    predictions = pd.read_parquet(root / "predictions",
                                  columns=["event_id", "score", "decision", "variant"])  # fmt: skip
    labels = pd.read_parquet(root / "labels", columns=["event_id", "label"])
    joined = predictions.merge(labels, on="event_id", how="inner")
    out = {}
    for variant, part in joined.groupby("variant"):
        y, s, blocked = part["label"], part["score"], part["decision"] == "block"
        out[str(variant)] = {
            "roc_auc": roc_auc_score(y, s), "pr_auc": average_precision_score(y, s),
            "brier": brier_score_loss(y, s), "precision": precision_score(y, blocked),
            "recall": recall_score(y, blocked),
        }  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as workdir:
        settings = write(Path(workdir), args.rows, now)
        fraudctl_quality(settings, now)  # imports and first-call costs, then the run
        quality_s, result = timed(lambda: fraudctl_quality(settings, now))
        baseline_s, plain = timed(lambda: baseline(settings))
    groups = {g.group: g for g in result.groups}
    agree = all(
        abs(groups[v].figures["roc_auc"]["value"] - plain[v]["roc_auc"]) < 1e-9
        and abs(groups[v].figures["pr_auc"]["value"] - plain[v]["pr_auc"]) < 1e-9
        for v in plain
    )
    emit(
        {
            "benchmark": "quality",
            "machine": {"cores": os.cpu_count()},
            "predictions": args.rows,
            "groups": {g: groups[g].counts for g in groups},
            "quality_s": round(quality_s, 3),
            "baseline": {
                "what": "pandas read_parquet + merge + scikit-learn point figures per variant",
                "seconds": round(baseline_s, 3),
            },
            "ratio_quality_over_baseline": round(quality_s / baseline_s, 3),
            "figures_agree_with_baseline": agree,
            "roc_auc": {g: round(groups[g].figures["roc_auc"]["value"], 4) for g in groups},
            "target_s": TARGET_S,
            "meets_target": quality_s <= TARGET_S,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
