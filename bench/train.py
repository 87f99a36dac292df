"""Benchmark: `fraudctl train` (time and peak memory) against a bare training of the same
data in the same script.

For each size N (default 100,000 and 1,000,000 events), on the embedded profile in a
fresh temporary home:

1. setup (not measured): `fraudctl produce --rate 0 --count N --label-delay 0` and
   `fraudctl materialize`;
2. `fraudctl train --json` as a user runs it, in its own process: wall time from start
   to exit, peak resident memory of that process (``wait4``), and the command's own
   split of its time (point-in-time feature retrieval through Feast, fit, evaluation,
   MLflow logging and registration);
3. baseline, also in its own process: the same rows joined by ``event_id`` with pandas
   (no Feast, no point in time) and the same HGB pipeline fitted on the same fit slice,
   with no calibration, evaluation or MLflow: the floor of what training this data costs.

Target (issue 5): 1,000,000 events in at most 120 s end to end and at most 4 GiB peak.

Then the quality bar on 50,000 default events: `fraudctl train`'s holdout metrics beside
the same pipeline fitted on the event's raw fields alone (same rows, split and threshold
rule), with their ratio.

    .venv/bin/python bench/train.py [--events 100000 1000000] [--out bench/results/train.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit, fraudctl

TARGET_S = 120.0
TARGET_RSS_GIB = 4.0


def run_measured(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a process to its end; its wall seconds, peak RSS (GiB) and stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(args, env=env, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(process.pid, 0)  # reaped here, with its rusage
        elapsed = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} exited {process.returncode}: {err.read()[-3000:]!r}"
            )
        return elapsed, usage.ru_maxrss / 2**20, out.read().decode()  # ru_maxrss is KiB


def bare(home: str) -> None:
    """The baseline, run as ``train.py --bare HOME``: plain join, same pipeline, fit."""
    import pyarrow.dataset as ds

    from fraudctl.model import MODEL_INPUTS, make_pipeline
    from fraudctl.services.training_set import split_by_time

    started = time.monotonic()
    root = Path(home) / "offline"

    def table(name: str, columns: list[str]) -> Any:
        return (
            ds.dataset(root / name, format="parquet", partitioning="hive")
            .to_table(columns=columns)
            .to_pandas()
        )

    from fraudctl.features import FEATURE_NAMES

    events = table("events", ["event_id", "event_ts", "transaction_amount", "country", "device"])
    labels = table("labels", ["event_id", "label"])
    features = table("features", ["event_id", *FEATURE_NAMES])
    frame = events.merge(labels, on="event_id").merge(features, on="event_id")
    frame = frame.rename(columns={"event_ts": "event_timestamp"})
    frame = frame.sort_values(["event_timestamp", "event_id"]).reset_index(drop=True)
    joined = time.monotonic() - started
    split = split_by_time(frame, 0.2)
    fit_started = time.monotonic()
    pipeline = make_pipeline("hgb", 0)
    pipeline.fit(split.fit[list(MODEL_INPUTS)], split.fit["label"].to_numpy())
    print(
        json.dumps({"join_s": joined, "fit_s": time.monotonic() - fit_started, "rows": len(frame)})
    )


def history(env: dict[str, str], events: int) -> None:
    """Setup, not measured: the default stream with its labels, materialized."""
    fraudctl("produce", "--rate", "0", "--count", str(events), "--label-delay", "0", env=env)
    fraudctl("materialize", env=env)


def measure(events: int, workdir: Path) -> dict[str, Any]:
    home = workdir / f"home-{events}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDCTL_")}
    env |= {"FRAUDCTL_PROFILE": "local", "FRAUDCTL_HOME": str(home)}
    print(f"[{events:,}] producing and materializing (setup)…", file=sys.stderr)
    history(env, events)
    print(f"[{events:,}] fraudctl train…", file=sys.stderr)
    wall, rss, out = run_measured([sys.executable, "-m", "fraudctl", "train", "--json"], env)
    result = json.loads(out)
    print(f"[{events:,}] baseline…", file=sys.stderr)
    base_wall, base_rss, base_out = run_measured(
        [sys.executable, __file__, "--bare", str(home)], env
    )
    base = json.loads(base_out)
    timings = result["timings"]
    return {
        "events": events,
        "train": {
            "wall_s": round(wall, 2),
            "peak_rss_gib": round(rss, 3),
            "retrieval_s": round(timings["retrieval_s"], 2),
            "fit_s": round(timings["fit_s"], 2),
            "evaluate_s": round(timings["evaluate_s"], 2),
            "log_s": round(timings["log_s"], 2),
            "roc_auc": round(result["metrics"]["roc_auc"], 4),
            "rows_fit": result["rows"]["fit"],
        },
        "baseline": {
            "wall_s": round(base_wall, 2),
            "peak_rss_gib": round(base_rss, 3),
            "join_s": round(base["join_s"], 2),
            "fit_s": round(base["fit_s"], 2),
        },
        "ratio": {
            "wall": round(wall / base_wall, 2),
            "peak_rss": round(rss / base_rss, 2),
            "retrieval_vs_plain_join": round(timings["retrieval_s"] / base["join_s"], 2),
            "fit": round(timings["fit_s"] / base["fit_s"], 2),
        },
        "meets_target": wall <= TARGET_S and rss <= TARGET_RSS_GIB if events >= 1_000_000 else None,
    }


def quality(workdir: Path, events: int = 50_000) -> dict[str, Any]:
    """The quality bar: the default model against the same pipeline on the event's raw
    fields alone, same rows, same time split, same threshold rule."""
    home = workdir / "home-quality"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDCTL_")}
    env |= {"FRAUDCTL_PROFILE": "local", "FRAUDCTL_HOME": str(home)}
    print(f"[quality] {events:,} events…", file=sys.stderr)
    history(env, events)
    trained = fraudctl("train", env=env)

    from datetime import UTC, datetime

    from fraudctl.adapters.offline import open_offline
    from fraudctl.adapters.online import OnlineState
    from fraudctl.config import environ, load_settings
    from fraudctl.model import RAW_FIELDS
    from fraudctl.services.train import fit_and_evaluate
    from fraudctl.services.training_set import labeled_events, split_by_time, with_features

    with environ({"FRAUDCTL_PROFILE": "local", "FRAUDCTL_HOME": str(home)}):
        settings = load_settings().settings
        offline = open_offline(settings)
        labeled = labeled_events(offline, None, None, datetime.now(UTC))
        frame, _ = with_features(OnlineState(settings, offline.uri), labeled)
    baseline = fit_and_evaluate(split_by_time(frame, 0.2), "hgb", 0, RAW_FIELDS).metrics
    names = ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "brier")
    return {
        "events": events,
        "model": {name: round(trained["metrics"][name], 4) for name in names},
        "raw_fields_only": {name: round(baseline[name], 4) for name in names},
        "ratio": {
            name: round(trained["metrics"][name] / baseline[name], 3)
            for name in names
            if baseline[name]
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--bare", metavar="HOME", help=argparse.SUPPRESS)
    parser.add_argument("--skip-quality", action="store_true", help="only time and memory")
    args = parser.parse_args()
    if args.bare:
        bare(args.bare)
        return
    with tempfile.TemporaryDirectory(prefix="fraudctl-bench-train-") as workdir:
        runs = [measure(n, Path(workdir)) for n in args.events]
        bar = None if args.skip_quality else quality(Path(workdir))
    emit(
        {
            "benchmark": "train",
            "machine": {"cores": os.cpu_count()},
            "target": {"events": 1_000_000, "wall_s": TARGET_S, "peak_rss_gib": TARGET_RSS_GIB},
            "runs": runs,
            "quality": bar,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
