"""The promotion gates and the canary breach rule, table-tested at and around every
threshold (fraudctl.gates is pure: no backend, no settings file)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import pytest

from fraudctl.config import load_settings
from fraudctl.gates import (
    BASELINE_ALIASES,
    Alias,
    AucWindow,
    CanaryWindow,
    Limits,
    auc_gate,
    baseline_alias,
    canary_breach,
    canary_gate,
    canary_problems,
    drift_gate,
    drift_status,
    promotion_source,
    serving_gate,
)

LIMITS = Limits(max_error_rate=0.01, max_p95_ms=200.0, min_requests=500, drift_threshold=0.3,
                auc_floor=0.8, min_eval_rows=200)  # fmt: skip
EPS = 1e-9


def around(value: float) -> list[float]:
    return [value - EPS, value, value + EPS]


# -- the limits come from the settings, once ---------------------------------------------


def test_limits_are_the_settings_defaults_and_follow_overrides(tmp_path: Any) -> None:
    def settings(**env: str) -> Any:
        environ = {"FRAUDCTL_HOME": str(tmp_path)} | {
            f"FRAUDCTL_{k.upper()}": v for k, v in env.items()
        }
        return load_settings(environ=environ, cwd=tmp_path).settings

    assert Limits.of(settings()) == LIMITS
    changed = settings(canary_max_error_rate="0.05", canary_max_p95_ms="50",
                       drift_threshold="0.2", promote_canary_min_requests="10")  # fmt: skip
    limits = Limits.of(changed)
    assert (limits.max_error_rate, limits.max_p95_ms, limits.drift_threshold,
            limits.min_requests) == (0.05, 50.0, 0.2, 10)  # fmt: skip


# -- the canary breach rule (canary watch) -----------------------------------------------

ERROR_RATES = [None, 0.0, *around(0.01), 1.0]
P95S = [None, 0.0, *around(200.0), 10_000.0]
REQUESTS = [0, 499, 500, 501]
WEIGHTS = [0.0, 0.01, 20.0, 100.0]


@pytest.mark.parametrize(
    ("requests", "error_rate", "p95", "weight"),
    list(itertools.product(REQUESTS, ERROR_RATES, P95S, WEIGHTS)),
)
def test_canary_breach_table(
    requests: int, error_rate: float | None, p95: float | None, weight: float
) -> None:
    window = CanaryWindow(requests, error_rate, p95, 300.0)
    over_errors = error_rate is not None and error_rate > 0.01
    over_p95 = p95 is not None and p95 > 200.0
    expected = weight > 0 and requests >= 500 and (over_errors or over_p95)
    breach = canary_breach(window, weight, LIMITS)
    assert (breach is not None) == expected
    if breach is not None:
        assert ("error rate" in breach) == over_errors
        assert ("p95" in breach) == over_p95
        assert breach.endswith("in 300 s")


def test_a_limit_is_not_breached_by_its_own_value() -> None:
    assert canary_problems(CanaryWindow(1000, 0.01, 200.0), LIMITS) == []
    assert len(canary_problems(CanaryWindow(1000, 0.0100001, 200.0001), LIMITS)) == 2


# -- the canary gate (promote --to production) -------------------------------------------


@pytest.mark.parametrize(
    ("requests", "error_rate", "p95", "serving"),
    list(itertools.product(REQUESTS, ERROR_RATES, P95S, ["7", "6", None])),
)
def test_canary_gate_table(
    requests: int, error_rate: float | None, p95: float | None, serving: str | None
) -> None:
    gate = canary_gate(CanaryWindow(requests, error_rate, p95, 3600.0), serving, "7", LIMITS)
    within = (error_rate is None or error_rate <= 0.01) and (p95 is None or p95 <= 200.0)
    assert gate.passed == (serving == "7" and requests >= 500 and within)
    assert gate.name == "canary" and gate.measured["requests"] == requests
    if serving != "7":
        assert "is not the canary" in gate.detail
    elif requests < 500:
        assert f"{requests} requests < 500" in gate.detail


def test_the_breach_rule_and_the_canary_gate_agree() -> None:
    # One rule: whatever watch rolls back, promote refuses (with enough requests).
    for error_rate, p95 in itertools.product(ERROR_RATES, P95S):
        window = CanaryWindow(600, error_rate, p95, 60.0)
        breached = canary_breach(window, 10.0, LIMITS) is not None
        assert breached == (not canary_gate(window, "3", "3", LIMITS).passed)


# -- the serving gate (a progressive-delivery step) ---------------------------------------


@pytest.mark.parametrize(
    ("requests", "error_rate", "p95"), list(itertools.product(REQUESTS, ERROR_RATES, P95S))
)
def test_serving_gate_table(requests: int, error_rate: float | None, p95: float | None) -> None:
    window = CanaryWindow(requests, error_rate, p95, 120.0)
    gate = serving_gate(window, LIMITS)
    within = (error_rate is None or error_rate <= 0.01) and (p95 is None or p95 <= 200.0)
    expected = "inconclusive" if requests < 500 else ("pass" if within else "fail")
    assert gate.verdict == expected and gate.name == "serving"
    assert gate.measured == {"requests": requests, "error_rate": error_rate, "p95_ms": p95,
                             "window_s": 120.0}  # fmt: skip
    # one rule: a step fails exactly when watch would roll back at any weight
    assert (gate.verdict == "fail") == (canary_breach(window, 10.0, LIMITS) is not None)


def test_the_rule_text_names_the_limits() -> None:
    limits = dataclasses.replace(LIMITS, max_error_rate=0.025)
    gate = canary_gate(CanaryWindow(0, None, None), None, "1", limits)
    assert "2.50%" in gate.rule and "200 ms" in gate.rule and "500 requests" in gate.rule


# -- the AUC gate (promote --to staging) -------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "fraud"), [(0, 0), (199, 20), (200, 0), (200, 200), (200, 1), (5000, 50)]
)
def test_auc_gate_needs_enough_rows_of_both_classes(rows: int, fraud: int) -> None:
    comparable = rows >= 200 and 0 < fraud < rows
    gate = auc_gate(AucWindow(rows, fraud), 0.99 if comparable else None, None, LIMITS)
    assert gate.passed == comparable
    if not comparable:
        assert "too little labeled data" in gate.detail


@pytest.mark.parametrize("auc", [0.0, *around(0.8), 1.0])
def test_auc_gate_against_the_floor_without_staging(auc: float) -> None:
    gate = auc_gate(AucWindow(1000, 100), auc, None, LIMITS)
    assert gate.passed == (auc >= 0.8)
    assert gate.measured["roc_auc"] == round(auc, 6)


@pytest.mark.parametrize(("auc", "staging_auc"), [(0.9, 0.9), (0.9 - EPS, 0.9), (0.9, 0.9 - EPS),
                                                  (0.5, 0.95), (0.7, 0.6)])  # fmt: skip
def test_auc_gate_against_staging_on_the_same_window(auc: float, staging_auc: float) -> None:
    gate = auc_gate(AucWindow(1000, 100), auc, ("4", staging_auc), LIMITS)
    assert gate.passed == (auc >= staging_auc)  # the floor no longer applies
    assert gate.measured["staging_version"] == "4"


@pytest.mark.parametrize(("auc", "staging_auc"), [(0.88, 0.9), (0.88 - EPS, 0.9), (0.5, 0.95)])
def test_auc_gate_tolerance_below_staging(auc: float, staging_auc: float) -> None:
    from dataclasses import replace

    gate = auc_gate(
        AucWindow(1000, 100), auc, ("4", staging_auc), replace(LIMITS, auc_tolerance=0.02)
    )
    assert gate.passed == (auc >= staging_auc - 0.02)
    assert gate.rule == "ROC AUC ≥ staging's - 0.02 on the same window"
    assert gate.detail.endswith(f"{staging_auc:.4f} - 0.02 on the newest 1,000 labeled events")


def test_auc_gate_refuses_a_non_finite_auc() -> None:
    assert not auc_gate(AucWindow(1000, 100), math.nan, None, LIMITS).passed


# -- the drift gate and the drift status -------------------------------------------------


@pytest.mark.parametrize("score", [None, 0.0, *around(0.3), 5.0])
def test_drift_status_and_gate_use_one_comparison(score: float | None) -> None:
    status = drift_status(score, 0.3)
    assert status == ("insufficient_data" if score is None else "drift" if score >= 0.3 else "ok")
    gate = drift_gate({"status": status, "drift_score": score, "features": []}, LIMITS)
    assert gate.passed == (status == "ok")


def test_drift_gate_without_a_result_says_what_to_run() -> None:
    gate = drift_gate(None, LIMITS)
    assert not gate.passed and "fraudctl drift" in gate.detail


def test_drift_gate_names_the_largest_feature() -> None:
    newest = {"status": "drift", "drift_score": 0.5, "features": [
        {"feature": "a", "psi": 0.1}, {"feature": "transaction_amount", "psi": 0.5}]}  # fmt: skip
    assert "transaction_amount 0.5000" in drift_gate(newest, LIMITS).detail


# -- aliases ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "present", [set(c) for n in range(4) for c in itertools.combinations(list(Alias), n)]
)
def test_baseline_is_the_first_alias_that_exists(present: set[Alias]) -> None:
    versions = {str(a): ("1" if a in present else None) for a in Alias}
    expected = next((a for a in BASELINE_ALIASES if a in present), None)
    assert baseline_alias(versions) == expected


def test_promotion_sources() -> None:
    assert promotion_source(Alias.STAGING) is Alias.CANDIDATE
    assert promotion_source(Alias.PRODUCTION) is Alias.STAGING
