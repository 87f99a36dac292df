"""The production quality gate: the canary against the baseline on the same matured
window, pass / fail / inconclusive (fraudctl.gates.quality_comparison), and how often it
raises a false alarm between two equally good models."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from scripts.false_alarms import verdicts

from fraudctl.config import load_settings
from fraudctl.gates import QualityRule, QualitySample, quality_breach, quality_comparison
from fraudctl.services.quality import canary_samples
from tests.fakes import FakeBackends
from tests.unit.test_quality import load, traffic

RULE = QualityRule(metric="roc_auc", margin=0.02, confidence=0.95, min_positives=20,
                   min_labels=200)  # fmt: skip
Z95 = 1.959963984540054


def sample(variant: str, value: float | None, sd: float, labeled: int = 5000,
           positives: int = 100) -> QualitySample:  # fmt: skip
    variance = None if value is None else sd * sd
    return QualitySample(variant, "1" if variant == "baseline" else "2", labeled, positives,
                         value, variance)  # fmt: skip


# The difference's interval is d ± z·√(sd_b² + sd_c²): with sd 0.01 each, half ≈ 0.0277.
HALF = Z95 * math.sqrt(2) * 0.01


@pytest.mark.parametrize(
    ("difference", "verdict"),
    [
        (+0.05, "pass"),
        (-0.02 + HALF + 1e-4, "pass"),  # the low end just above -margin
        (-0.02 + HALF - 1e-4, "inconclusive"),  # the low end just below
        (-0.02 - HALF + 1e-4, "inconclusive"),  # the high end just above -margin
        (-0.02 - HALF - 1e-4, "fail"),  # the high end just below: significantly worse
        (-0.3, "fail"),
    ],
)
def test_the_verdict_at_and_around_the_margin(difference: float, verdict: str) -> None:
    found, measured, detail = quality_comparison(
        sample("baseline", 0.9, 0.01), sample("canary", 0.9 + difference, 0.01), RULE
    )
    assert found == verdict, detail
    assert measured["difference"] == pytest.approx(difference, abs=1e-6)
    assert measured["high"] - measured["low"] == pytest.approx(2 * HALF, abs=1e-5)


def test_an_interval_spanning_the_margin_is_inconclusive_not_a_failure() -> None:
    found, measured, detail = quality_comparison(
        sample("baseline", 0.9, 0.01), sample("canary", 0.9, 0.01), RULE
    )
    assert found == "inconclusive" and "spans -0.02" in detail
    assert measured["low"] < -0.02 < measured["high"]


@pytest.mark.parametrize(
    ("canary", "reason"),
    [
        (sample("canary", 0.9, 0.01, labeled=199), "canary: 199 matured labels < 200"),
        (sample("canary", 0.9, 0.01, positives=19), "canary: 19 matured fraud labels < 20"),
        (sample("canary", None, 0.0, labeled=0, positives=0), "0 matured labels"),
        (sample("canary", None, 0.0), "one class only"),
        (sample("canary", float("nan"), 0.01), "one class only"),
    ],
)
def test_too_few_matured_labels_is_inconclusive_with_the_counts(
    canary: QualitySample, reason: str
) -> None:
    found, measured, detail = quality_comparison(sample("baseline", 0.9, 0.01), canary, RULE)
    assert found == "inconclusive" and reason in detail
    assert measured["difference"] is None and measured["canary"]["labeled"] == canary.labeled
    json.dumps(measured, allow_nan=False)  # no NaN reaches JSON


def test_watch_rolls_back_only_on_a_failure_and_only_while_the_canary_takes_traffic() -> None:
    baseline = sample("baseline", 0.9, 0.01)
    worse, equal = sample("canary", 0.6, 0.01), sample("canary", 0.9, 0.01)
    breach = quality_breach(baseline, worse, 10.0, RULE)
    assert breach is not None and breach.startswith("quality: roc_auc canary 0.6000")
    assert quality_breach(baseline, worse, 0.0, RULE) is None
    assert quality_breach(baseline, equal, 10.0, RULE) is None  # inconclusive: no rollback


def test_pr_auc_is_compared_when_the_rule_says_so(tmp_path: Path) -> None:
    backends = FakeBackends(load_settings(environ={"FRAUDCTL_HOME": str(tmp_path)},
                                          cwd=tmp_path).settings)  # fmt: skip
    load(backends.offline, traffic(6000, 3, canary_share=0.5))
    now = datetime.now(UTC)
    by_roc = canary_samples(backends, "2", "roc_auc", 7 * 86400, now)
    by_pr = canary_samples(backends, "2", "pr_auc", 7 * 86400, now)
    assert by_roc.canary.labeled == by_pr.canary.labeled > 2000
    assert by_roc.canary.value != by_pr.canary.value
    assert by_pr.canary.variance == pytest.approx(
        by_pr.canary.value * (1 - by_pr.canary.value) / by_pr.canary.positives
    )


def test_two_equally_good_models_raise_at_most_one_false_alarm_in_twenty_seeds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The false-alarm rate (docs/quality.md#the-quality-gate): the same model quality on
    both variants, 20 seeds, the product's default rule (scripts/false_alarms.py runs
    more)."""
    counts = verdicts(2.0, range(20))
    with capsys.disabled():
        print(f"\nequal models, 20 seeds: {counts}")
    assert counts["fail"] <= 1


def test_a_clearly_worse_canary_fails_on_every_seed() -> None:
    counts = verdicts(0.8, range(20))
    assert counts == {"pass": 0, "fail": 20, "inconclusive": 0}
