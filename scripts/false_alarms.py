"""How often the production quality gate says *fail* between two equally good models
(its false-alarm rate), and how often it finds a clearly worse one, on simulated served
traffic: ``python scripts/false_alarms.py [--seeds 1000] [--margin 0.01]``.

Each seed: 12,000 matured predictions, half canary, half baseline, 5 % fraud, scores of
the same shape as a calibrated model's; the samples go through the product's own
``variant_sample`` and ``quality_comparison`` (the offline store's part is tested in
``tests/unit/test_quality_gate.py``)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace

from fraudctl.gates import QualityRule, quality_comparison
from fraudctl.services.quality import variant_sample

BASELINE_SIGNAL = 2.0


def verdicts(canary_signal: float, seeds: range, rule: QualityRule | None = None,
             n: int = 12_000) -> dict[str, int]:  # fmt: skip
    """The gate's verdict count over ``seeds``; the canary's scores separate fraud with
    ``canary_signal`` (the baseline's: 2.0 — equal signals, equally good models)."""
    import numpy as np
    import pandas as pd

    rule = rule or QualityRule()
    counts = {"pass": 0, "fail": 0, "inconclusive": 0}
    for seed in seeds:
        rng = np.random.default_rng(100 + seed)
        fraud = rng.random(n) < 0.05
        canary = rng.random(n) < 0.5
        signal = np.where(canary, canary_signal, BASELINE_SIGNAL)
        score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + signal * fraud - 2.5)))
        rows = pd.DataFrame({"variant": np.where(canary, "canary", "baseline"),
                             "model_version": np.where(canary, "2", "1"), "score": score,
                             "label": fraud.astype(int), "state": "labeled"})  # fmt: skip
        baseline, challenger = (variant_sample(v, rows[rows["variant"] == v], rule.metric)
                                for v in ("baseline", "canary"))  # fmt: skip
        counts[quality_comparison(baseline, challenger, rule)[0]] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--margin", type=float, default=QualityRule().margin)
    parser.add_argument("--metric", default="roc_auc", choices=["roc_auc", "pr_auc"])
    args = parser.parse_args()
    rule = replace(QualityRule(), margin=args.margin, metric=args.metric)
    equal = verdicts(BASELINE_SIGNAL, range(args.seeds), rule)
    worse = verdicts(0.8, range(args.seeds), rule)
    print(json.dumps({"seeds": args.seeds, "rule": asdict(rule), "equal_models": equal,
                      "false_alarm_rate": equal["fail"] / args.seeds,
                      "clearly_worse_canary": worse,
                      "found_worse_rate": worse["fail"] / args.seeds}))  # fmt: skip


if __name__ == "__main__":
    main()
