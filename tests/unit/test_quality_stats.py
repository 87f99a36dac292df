"""The quality figures (fraudctl.quality) against brute-force definitions, and their
intervals against their promised coverage on simulated data."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudctl import quality as q


def data(n: int, shift: float, seed: int, share: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < share).astype(int)
    s = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + shift * y - 2)))
    return y, s


def brute_delong(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """DeLong's AUC and variance from the pairwise kernel, O(m·n)."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    auc = float(psi.mean())
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return auc, float(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))


def test_roc_auc_is_sklearns_and_delongs_variance_is_the_pairwise_one() -> None:
    y, s = data(3000, 1.5, 0)
    s = np.round(s, 2)  # ties: midranks must count them half
    found = q.roc_auc(y, s)
    auc, variance = brute_delong(y, s)
    assert found.value == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert found.value == pytest.approx(auc, abs=1e-12)
    z = NormalDist().inv_cdf(0.975)
    assert found.high - found.value == pytest.approx(z * math.sqrt(variance), rel=1e-9)
    assert found.n == 3000


def test_one_class_gives_no_figure_never_nan() -> None:
    assert q.roc_auc([0, 0, 0], [0.1, 0.2, 0.3]).value is None
    assert q.average_precision([1, 1], [0.1, 0.2]).value is None
    assert q.wilson(0, 0) == q.Estimate(None, None, None, 0)
    assert q.brier([], []).value is None and q.calibration_error([], []).value is None
    assert q.top_k_precision([], [], [], [], 10).value is None


def test_average_precision_is_sklearns_inside_its_logit_interval() -> None:
    y, s = data(5000, 2.0, 1)
    found = q.average_precision(y, s)
    assert found.value == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert found.low < found.value < found.high and found.low > 0 and found.high < 1


def test_wilson_matches_its_formula() -> None:
    found = q.wilson(30, 100)
    assert found.value == 0.3
    assert (round(found.low, 4), round(found.high, 4)) == (0.2189, 0.3958)  # textbook values
    assert q.wilson(0, 50).low == 0.0 and q.wilson(50, 50).high == 1.0


def test_brier_and_calibration_error_by_definition() -> None:
    y, s = data(4000, 1.0, 2)
    assert q.brier(y, s).value == pytest.approx(float(np.mean((s - y) ** 2)))
    bins = np.minimum((s * 10).astype(int), 9)
    expected = sum(
        (bins == b).mean() * abs(y[bins == b].mean() - s[bins == b].mean())
        for b in range(10)
        if (bins == b).any()
    )
    found = q.calibration_error(y, s)
    assert found.value == pytest.approx(expected, abs=1e-12)
    assert found.low <= found.value <= found.high
    assert q.calibration_error(y, s) == found  # seeded: the same data, the same interval


def test_card_precision_top_k_counts_each_card_once_a_day() -> None:
    days = np.array(["d1"] * 5 + ["d2"] * 3)
    cards = np.array(["a", "a", "b", "c", "d", "a", "b", "c"])
    labels = np.array([0, 1, 0, 0, 1, 1, 0, 0])
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.95, 0.5, 0.4])
    found = q.top_k_precision(days, cards, labels, scores, k=2)
    # d1: a (0.9, fraud that day) and b (0.8, legit) → 1/2; d2: a (fraud), b → 1/2
    assert found.value == pytest.approx(0.5) and found.n == 4


def test_card_precision_top_k_interval_holds_its_value_when_days_differ_in_size() -> None:
    # A full day of 100 cards, 60 fraud, and a short day of 3 cards, none fraud: the
    # value is the mean of the days' shares (0.30); an interval of the pooled count
    # (60 / 103, about 0.58 ± 0.09) would not hold it.
    days = np.array(["d1"] * 100 + ["d2"] * 3)
    cards = np.array([f"c{i}" for i in range(103)])
    labels = np.array([1] * 60 + [0] * 40 + [0] * 3)
    scores = np.linspace(1.0, 0.0, 103)
    found = q.top_k_precision(days, cards, labels, scores, k=100)
    assert found.value == pytest.approx(0.3)
    assert found.low is not None and found.high is not None
    assert 0.0 <= found.low < 0.3 < found.high <= 1.0
    # one day alone: the interval is about the day's own binomial one
    one = q.top_k_precision(days[:100], cards[:100], labels[:100], scores[:100], k=100)
    wilson = q.wilson(60, 100)
    assert one.low == pytest.approx(wilson.low, abs=0.01)
    assert one.high == pytest.approx(wilson.high, abs=0.01)


@pytest.mark.parametrize("figure", ["roc_auc", "average_precision"])
def test_95_percent_intervals_cover_about_95_percent(figure: str) -> None:
    """Binormal scores: the true ROC AUC is Φ(δ/√2); the true AP is estimated once on a
    very large sample. 200 samples of 2,000 rows: coverage in [0.90, 0.99]."""
    shift = 1.2
    if figure == "roc_auc":
        truth = NormalDist().cdf(shift / math.sqrt(2))
    else:
        y, s = data(2_000_000, shift, 999, share=0.05)
        truth = float(average_precision_score(y, s))
    covered = 0
    for seed in range(200):
        y, s = data(2000, shift, seed, share=0.05)
        found = getattr(q, figure)(y, s)
        covered += found.low <= truth <= found.high
    assert 0.90 <= covered / 200 <= 0.99, covered
