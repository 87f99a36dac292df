"""Benchmark: `fraudctl drift`'s computation on 100,000 reference against 100,000
current rows of every monitored column (the model's inputs and the score), JSON result
only and with the Evidently HTML report; baseline in the same process: Evidently's own
data drift preset with its PSI over the same frames (no fixed bins, no counts reported).

Frames are synthetic but shaped like the real columns (log-normal amounts, the
contract's countries and devices, small counts, 0/1 flags, a long-tailed time since the
last transaction, a score in 0..1); the current frame has `transaction_amount` scaled by
1.8, as `produce --drift amount=1.8` does.

Target (issue 7): ≤ 10 s for the JSON result on this machine.

    .venv/bin/python bench/drift.py [--rows 100000] [--out bench/results/drift.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from _common import emit, timed

TARGET_S = 10.0


def frame(rows: int, seed: int, amount_scale: float) -> Any:
    import numpy as np
    import pandas as pd

    from fraudctl.contract import COUNTRIES, DEVICES

    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.5, 1.0, rows) * amount_scale
    count_day = rng.poisson(3, rows).astype(float)
    average = np.where(count_day > 0, rng.lognormal(3.5, 0.6, rows), 0.0)
    return pd.DataFrame(
        {
            "transaction_amount": amount,
            "country": rng.choice(list(COUNTRIES), rows),
            "device": rng.choice(list(DEVICES), rows),
            "txn_count_1h": rng.poisson(1, rows).astype(float),
            "amount_sum_24h": average * count_day,
            "amount_avg_24h": average,
            "distinct_countries_24h": np.minimum(rng.poisson(1, rows), 5).astype(float),
            "distinct_devices_24h": np.minimum(rng.poisson(1, rows), 3).astype(float),
            "seconds_since_last_txn": np.where(
                rng.random(rows) < 0.2, -1.0, rng.exponential(3600, rows)
            ),
            "country_seen_24h": (rng.random(rows) < 0.8).astype(float),
            "device_seen_24h": (rng.random(rows) < 0.85).astype(float),
            "amount_to_avg_24h": np.where(average > 0, amount / np.maximum(average, 0.01), 0.0),
            "score": rng.beta(0.5, 30, rows),
        }
    )


def fraudctl_json(reference: Any, current: Any) -> list[dict[str, Any]]:
    from fraudctl.adapters.drift_psi import feature_drift
    from fraudctl.model import CATEGORIES
    from fraudctl.services.drift import MONITORED

    return [
        feature_drift(
            name,
            reference[name].to_numpy(),
            current[name].to_numpy(),
            categorical=name in CATEGORIES,
            threshold=0.3,
        ).as_dict()
        for name in MONITORED
    ]


def evidently_preset(reference: Any, current: Any) -> Any:
    from fraudctl.adapters.drift_psi import evidently_snapshot
    from fraudctl.model import CATEGORIES
    from fraudctl.services.drift import MONITORED

    return evidently_snapshot(reference, current, MONITORED, CATEGORIES)


def main() -> None:
    from fraudctl.adapters.drift_psi import write_report
    from fraudctl.model import CATEGORIES
    from fraudctl.services.drift import MONITORED

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    reference = frame(args.rows, 1, 1.0)
    current = frame(args.rows, 2, 1.8)
    fraudctl_json(reference.head(1000), current.head(1000))  # imports and first-call costs
    json_s, features = timed(lambda: fraudctl_json(reference, current))
    with tempfile.TemporaryDirectory() as workdir:
        report = Path(workdir) / "drift.html"

        def with_report() -> None:
            fraudctl_json(reference, current)
            write_report(reference, current, report, MONITORED, CATEGORIES)

        report_s, _ = timed(with_report)
        report_bytes = report.stat().st_size
    baseline_s, _ = timed(lambda: evidently_preset(reference, current))
    psi = {f["feature"]: round(f["psi"], 4) for f in features}
    emit(
        {
            "benchmark": "drift",
            "machine": {"cores": os.cpu_count()},
            "rows": {"reference": args.rows, "current": args.rows},
            "columns": len(features),
            "json_s": round(json_s, 3),
            "json_and_html_report_s": round(report_s, 3),
            "report_bytes": report_bytes,
            "baseline": {
                "what": "Evidently DataDriftPreset(method='psi'), no report file",
                "seconds": round(baseline_s, 3),
            },
            "ratio_json_over_baseline": round(json_s / baseline_s, 3),
            "psi": psi,
            "target_s": TARGET_S,
            "meets_target": json_s <= TARGET_S,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
