"""Model quality from matured labels: the figures and their intervals, over plain arrays.

Every figure comes with an interval at ``confidence`` (95 % by default) and the counts
behind it; where the data cannot support a figure (one class only, no alert) it is
``None``, never NaN.  The statistics (docs/quality.md):

- ROC AUC: DeLong's variance (the fast midrank algorithm of Sun & Xu, 2014), normal
  interval clipped to [0, 1].
- PR AUC (average precision): the logit interval of Boyd, Eng & Page (2013).
- precision and recall at the served threshold, alert rate: Wilson score intervals;
  precision among the top-k per day: a normal interval of the mean of the days' shares.
- Brier score: mean ± z·sd/√n.
- expected calibration error (10 equal-width bins): a Poisson bootstrap of the rows
  (:data:`BOOTSTRAP_REPLICATES` replicates, seeded: the same data gives the same
  interval).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

CONFIDENCE = 0.95
ECE_BINS = 10
BOOTSTRAP_REPLICATES = 100


@dataclass(frozen=True)
class Estimate:
    """A figure, its interval, and how many rows it rests on."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


NONE = Estimate(None, None, None, 0)


def z_of(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _clip(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> Estimate:
    """A proportion with its Wilson score interval (``None`` without trials)."""
    if n <= 0:
        return Estimate(None, None, None, 0)
    z = z_of(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Estimate(p, _clip(centre - half), _clip(centre + half), n)


def _midranks(x: Any) -> Any:
    import numpy as np

    order = np.argsort(x, kind="mergesort")
    ranked = x[order]
    n = len(x)
    ranks = np.empty(n, dtype=float)
    # Ties share the mean of their positions (1-based).
    boundaries = np.flatnonzero(np.diff(ranked)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [n]))
    mean_rank = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc_variance(labels: Any, scores: Any) -> tuple[float, float] | None:
    """ROC AUC and DeLong's variance of it; ``None`` unless both classes are present."""
    import numpy as np

    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=float)
    positives, negatives = s[y], s[~y]
    m, n = len(positives), len(negatives)
    if m == 0 or n == 0:
        return None
    tx, ty, tz = (
        _midranks(positives),
        _midranks(negatives),
        _midranks(np.concatenate((positives, negatives))),
    )
    auc = float((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
    v10 = (tz[:m] - tx) / n  # structural components (Sun & Xu, 2014)
    v01 = 1.0 - (tz[m:] - ty) / m
    variance = (v10.var(ddof=1) / m if m > 1 else 0.0) + (v01.var(ddof=1) / n if n > 1 else 0.0)
    return auc, max(float(variance), 0.0)


def roc_auc(labels: Any, scores: Any, confidence: float = CONFIDENCE) -> Estimate:
    """ROC AUC with DeLong's interval; ``None`` unless both classes are present."""
    found = roc_auc_variance(labels, scores)
    if found is None:
        return Estimate(None, None, None, len(scores))
    auc, variance = found
    half = z_of(confidence) * math.sqrt(variance)
    return Estimate(auc, _clip(auc - half), _clip(auc + half), len(scores))


def average_precision_variance(labels: Any, scores: Any) -> tuple[float, float] | None:
    """Average precision and its variance, ``AP·(1 - AP) / positives`` (the delta method
    on the logit interval below); ``None`` unless both classes are present."""
    import numpy as np
    from sklearn.metrics import average_precision_score

    y = np.asarray(labels).astype(int)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        return None
    ap = float(average_precision_score(y, scores))
    return ap, ap * (1 - ap) / positives


VARIANCES = {"roc_auc": roc_auc_variance, "pr_auc": average_precision_variance}


def average_precision(labels: Any, scores: Any, confidence: float = CONFIDENCE) -> Estimate:
    """PR AUC as average precision, with the logit interval."""
    import numpy as np

    found = average_precision_variance(labels, scores)
    if found is None:
        return Estimate(None, None, None, len(labels))
    ap, _variance = found
    positives = int(np.count_nonzero(np.asarray(labels)))
    if ap <= 0.0 or ap >= 1.0:
        return Estimate(ap, ap, ap, len(labels))
    eta = math.log(ap / (1 - ap))
    half = z_of(confidence) / math.sqrt(positives * ap * (1 - ap))
    low, high = eta - half, eta + half
    return Estimate(ap, 1 / (1 + math.exp(-low)), 1 / (1 + math.exp(-high)), len(labels))


def brier(labels: Any, scores: Any, confidence: float = CONFIDENCE) -> Estimate:
    import numpy as np

    y = np.asarray(labels, dtype=float)
    if len(y) == 0:
        return NONE
    errors = (np.asarray(scores, dtype=float) - y) ** 2
    mean = float(errors.mean())
    half = z_of(confidence) * float(errors.std(ddof=1)) / math.sqrt(len(y)) if len(y) > 1 else 0.0
    return Estimate(mean, max(mean - half, 0.0), min(mean + half, 1.0), len(y))


def calibration_error(
    labels: Any, scores: Any, confidence: float = CONFIDENCE, seed: int = 0
) -> Estimate:
    """Expected calibration error over ten equal-width score bins: Σ (n_b / n)·|fraud
    share - mean score| of each bin.  Interval: a seeded Poisson bootstrap of the rows,
    drawn per bin from the normal with the bootstrap's exact mean and covariance of the
    bin's sums (count, frauds, scores) — so it costs the same for a million rows as for
    a thousand."""
    import numpy as np

    y = np.asarray(labels, dtype=float)
    s = np.asarray(scores, dtype=float)
    if len(y) == 0:
        return NONE
    bins = np.minimum((s * ECE_BINS).astype(int), ECE_BINS - 1)

    def sums(weights: Any) -> Any:
        return np.bincount(bins, weights=weights, minlength=ECE_BINS)

    count, fraud, score = sums(np.ones_like(s)), sums(y), sums(s)
    value = float(np.abs(fraud - score).sum() / count.sum())
    fraud_score, score_sq = sums(y * s), sums(s * s)
    rng = np.random.default_rng(seed)
    draws = np.zeros((BOOTSTRAP_REPLICATES, ECE_BINS, 3))
    for b in np.flatnonzero(count):
        # With Poisson(1) weights w: E[Σ w·x] = Σ x and Cov(Σ w·x, Σ w·z) = Σ x·z.
        mean = [count[b], fraud[b], score[b]]
        cov = [
            [count[b], fraud[b], score[b]],
            [fraud[b], fraud[b], fraud_score[b]],
            [score[b], fraud_score[b], score_sq[b]],
        ]
        draws[:, b, :] = rng.multivariate_normal(
            mean, cov, BOOTSTRAP_REPLICATES, check_valid="ignore"
        )
    totals = np.maximum(draws[:, :, 0].sum(axis=1), 1.0)
    replicates = np.abs(draws[:, :, 1] - draws[:, :, 2]).sum(axis=1) / totals
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return Estimate(value, float(max(low, 0.0)), float(min(high, 1.0)), len(y))


def top_k_precision(
    days: Any, cards: Any, labels: Any, scores: Any, k: int, confidence: float = CONFIDENCE
) -> Estimate:
    """Card precision top-k: per day, each card once (its highest score; fraud if any of
    its transactions that day was), the ``k`` highest-scored cards, the share of them
    that were fraud; averaged over days.  The interval is the normal one of that mean of
    the days' shares, each day's variance from its Agresti-Coull-adjusted share (so a
    day with all or none fraud still has one): it always holds the value, which an
    interval of the pooled count does not when days hold different numbers of cards."""
    import numpy as np
    import pandas as pd

    if len(labels) == 0:
        return NONE
    # Integer codes for the day and the card: grouping on them, not on strings.
    frame = pd.DataFrame(
        {
            "day": pd.factorize(days)[0],
            "card": pd.factorize(cards)[0],
            "label": np.asarray(labels),
            "score": np.asarray(scores),
        }
    )
    per_card = frame.groupby(["day", "card"], sort=False).agg(
        score=("score", "max"), label=("label", "max")
    )
    top = per_card.sort_values("score", ascending=False).groupby(level="day").head(k)
    by_day = top.groupby(level="day")["label"].agg(["sum", "count"])
    x, n = by_day["sum"].to_numpy(dtype=float), by_day["count"].to_numpy(dtype=float)
    value = float((x / n).mean())
    z = z_of(confidence)
    adjusted = (x + z * z / 2) / (n + z * z)
    half = z * math.sqrt(float((adjusted * (1 - adjusted) / (n + z * z)).sum())) / len(n)
    return Estimate(value, max(value - half, 0.0), min(value + half, 1.0), int(n.sum()))


def quantiles(values: Any) -> dict[str, float | None]:
    import numpy as np

    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    p50, p90, p99 = np.quantile(v, [0.5, 0.9, 0.99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(v.max())}
