"""The decisions fraudctl makes about models, as pure functions over plain values: the
registry's aliases, the promotion gates and the canary breach rule.

Nothing here reads settings, talks to a backend or prints: ``promote``, ``canary watch``
and serving measure, then call these; the thresholds come in as :class:`Limits`, built
once from the settings (:meth:`Limits.of`). Table-tested at and around every threshold
in ``tests/unit/test_gates.py``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Alias(StrEnum):
    """The registry aliases a model version moves through, in order."""

    CANDIDATE = "candidate"  # what `train` registers
    STAGING = "staging"  # passed the AUC and drift gates; served as the canary
    PRODUCTION = "production"  # passed the canary gate; the baseline


# What the baseline serves: the first of these that exists.
BASELINE_ALIASES = (Alias.PRODUCTION, Alias.STAGING, Alias.CANDIDATE)
CANARY_ALIAS = Alias.STAGING  # served to the canary share, beside a production baseline
SHADOW_ALIAS = Alias.CANDIDATE  # scored beside every request with --shadow, never answered
PROMOTION_TARGETS = (Alias.STAGING, Alias.PRODUCTION)


def promotion_source(target: Alias) -> Alias:
    """The alias a promotion to ``target`` takes its version from."""
    return Alias.CANDIDATE if target is Alias.STAGING else Alias.STAGING


def baseline_alias(versions: dict[str, str | None]) -> Alias | None:
    """The alias the baseline serves given the registry's aliases; None: nothing to serve."""
    return next((a for a in BASELINE_ALIASES if versions.get(a)), None)


class _Thresholds(Protocol):
    """Where the limits are set (the settings), read-only."""

    @property
    def canary_max_error_rate(self) -> float: ...
    @property
    def canary_max_p95_ms(self) -> float: ...
    @property
    def drift_threshold(self) -> float: ...
    @property
    def promote_auc_floor(self) -> float: ...
    @property
    def promote_auc_tolerance(self) -> float: ...
    @property
    def promote_canary_min_requests(self) -> int: ...
    @property
    def promote_quality_metric(self) -> str: ...
    @property
    def promote_quality_margin(self) -> float: ...
    @property
    def promote_quality_confidence(self) -> float: ...
    @property
    def promote_quality_min_positives(self) -> int: ...
    @property
    def quality_min_labels(self) -> int: ...


@dataclass(frozen=True)
class QualityRule:
    """The production quality gate's rule: the canary's ``metric`` minus the baseline's,
    with its two-sided interval at ``confidence``, against ``-margin``.  The defaults
    here only serve tests; the settings hold the product's (``promote_quality_*``)."""

    metric: str = "roc_auc"
    margin: float = 0.01
    confidence: float = 0.95
    min_positives: int = 20
    min_labels: int = 200


MIN_EVAL_ROWS = 200  # fewer labeled events make a ROC AUC comparison meaningless


@dataclass(frozen=True)
class Limits:
    """Every threshold a gate or the breach rule compares against. Their defaults live in
    the settings (``fraudctl.config``), once: build this with :meth:`of`."""

    max_error_rate: float
    max_p95_ms: float
    min_requests: int
    drift_threshold: float
    auc_floor: float
    auc_tolerance: float = 0.0
    quality: QualityRule = field(default_factory=QualityRule)
    min_eval_rows: int = MIN_EVAL_ROWS

    @classmethod
    def of(cls, settings: _Thresholds) -> Limits:
        return cls(
            max_error_rate=settings.canary_max_error_rate,
            max_p95_ms=settings.canary_max_p95_ms,
            min_requests=settings.promote_canary_min_requests,
            drift_threshold=settings.drift_threshold,
            auc_floor=settings.promote_auc_floor,
            auc_tolerance=settings.promote_auc_tolerance,
            quality=QualityRule(
                metric=settings.promote_quality_metric,
                margin=settings.promote_quality_margin,
                confidence=settings.promote_quality_confidence,
                min_positives=settings.promote_quality_min_positives,
                min_labels=settings.quality_min_labels,
            ),
        )


# How a verdict is written for people (the promotion table, the version tags).
SHOWN = {"pass": "pass", "fail": "FAIL", "inconclusive": "inconclusive"}


@dataclass
class Gate:
    """One gate's verdict, with what it measured and the rule it applied.  An
    ``inconclusive`` gate did not pass, and did not fail either: it could not tell yet."""

    name: str
    passed: bool
    measured: dict[str, Any]
    rule: str
    detail: str
    inconclusive: bool = False

    @property
    def verdict(self) -> str:
        """pass | fail | inconclusive."""
        if self.passed:
            return "pass"
        return "inconclusive" if self.inconclusive else "fail"


# -- the canary -----------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryWindow:
    """What the server measured for the canary variant over a trailing window."""

    requests: int
    error_rate: float | None
    p95_ms: float | None
    window_s: float | None = None

    @classmethod
    def of(cls, stats: dict[str, Any] | None, window_s: float | None = None) -> CanaryWindow:
        stats = stats or {}
        return cls(
            int(stats.get("requests") or 0), stats.get("error_rate"), stats.get("p95_ms"), window_s
        )

    def measured(self) -> dict[str, Any]:
        return {"requests": self.requests, "error_rate": self.error_rate,
                "p95_ms": self.p95_ms, "window_s": self.window_s}  # fmt: skip

    def said(self) -> str:
        """``N requests, error rate E, p95 P`` for a gate's detail."""
        p95 = f"{self.p95_ms:.1f} ms" if self.p95_ms is not None else "n/a"
        return f"{self.requests} requests, error rate {self.error_rate or 0.0:.2%}, p95 {p95}"


def canary_problems(window: CanaryWindow, limits: Limits) -> list[str]:
    """The canary's error rate or p95 over the limits (the one breach rule): empty when
    both are within them. A missing p95 (no request answered) breaks no limit."""
    problems = []
    if window.error_rate is not None and window.error_rate > limits.max_error_rate:
        problems.append(
            f"error rate {window.error_rate:.2%} > {limits.max_error_rate:.2%} over "
            f"{window.requests} canary requests"
        )
    if window.p95_ms is not None and window.p95_ms > limits.max_p95_ms:
        problems.append(
            f"p95 {window.p95_ms:.1f} ms > {limits.max_p95_ms:g} ms over "
            f"{window.requests} canary requests"
        )
    return problems


def canary_breach(window: CanaryWindow, weight_pct: float, limits: Limits) -> str | None:
    """What `canary watch` rolls back on: a canary that takes traffic, has served at
    least ``min_requests`` in the window, and breaks a limit. None: no breach."""
    if weight_pct <= 0 or window.requests < limits.min_requests:
        return None
    problems = canary_problems(window, limits)
    if not problems:
        return None
    where = f" in {window.window_s:g} s" if window.window_s is not None else ""
    return "; ".join(problems) + where


def canary_gate(window: CanaryWindow, serving_version: str | None, version: str,
                limits: Limits) -> Gate:  # fmt: skip
    """``production``: the version served as the canary for enough requests, within the
    error-rate and latency limits."""
    rule = (
        f"served as canary for ≥ {limits.min_requests} requests, error rate ≤ "
        f"{limits.max_error_rate:.2%}, p95 ≤ {limits.max_p95_ms:g} ms"
    )
    measured = {"serving_version": serving_version, **window.measured()}
    if serving_version != version:
        detail = (
            f"version {version} is not the canary on the server "
            f"(canary: {serving_version or 'none'})"
        )
        return Gate("canary", False, measured, rule, detail)
    problems = []
    if window.requests < limits.min_requests:
        problems.append(f"{window.requests} requests < {limits.min_requests}")
    problems += canary_problems(window, limits)
    detail = "; ".join(problems) or window.said()
    return Gate("canary", not problems, measured, rule, detail)


def serving_gate(window: CanaryWindow, limits: Limits) -> Gate:
    """A progressive-delivery step (:mod:`fraudctl.rollout`): the canary's traffic since
    the step began.  Fewer than ``min_requests`` yet: inconclusive (as in
    :func:`canary_breach`, a handful of requests proves nothing either way); over a
    limit: fail (the one breach rule, :func:`canary_problems`); otherwise pass."""
    rule = (
        f"≥ {limits.min_requests} requests at this step, error rate ≤ "
        f"{limits.max_error_rate:.2%}, p95 ≤ {limits.max_p95_ms:g} ms"
    )
    measured = window.measured()
    if window.requests < limits.min_requests:
        detail = f"{window.requests} requests < {limits.min_requests}"
        return Gate("serving", False, measured, rule, detail, inconclusive=True)
    problems = canary_problems(window, limits)
    if problems:
        return Gate("serving", False, measured, rule, "; ".join(problems))
    return Gate("serving", True, measured, rule, window.said())


def production_waived() -> list[Gate]:
    """The first production model: nothing to protect, nothing to compare with."""
    why = "no production model yet: nothing to protect"
    return [Gate("canary", True, {}, "waived", why), Gate("quality", True, {}, "waived", why)]


# -- quality: the canary judged on the fraud it catches --------------------------------


@dataclass(frozen=True)
class QualitySample:
    """One variant's matured labels over the gate's window: the figure the rule compares
    and the variance of its estimate (DeLong's for ROC AUC), with the counts behind it.
    ``value``/``variance`` None: the sample had one class only."""

    variant: str
    version: str | None
    labeled: int
    positives: int
    value: float | None
    variance: float | None

    def as_dict(self) -> dict[str, Any]:
        """As JSON takes it: a non-finite figure is None."""
        found = asdict(self)
        for key in ("value", "variance"):
            if found[key] is not None and not math.isfinite(found[key]):
                found[key] = None
        return found


def _short(sample: QualitySample, rule: QualityRule) -> str | None:
    """Why ``sample`` is too small for the rule; None when it is enough."""
    if sample.labeled < rule.min_labels:
        return f"{sample.variant}: {sample.labeled} matured labels < {rule.min_labels}"
    if sample.positives < rule.min_positives:
        return f"{sample.variant}: {sample.positives} matured fraud labels < {rule.min_positives}"
    if sample.value is None or sample.variance is None or not math.isfinite(sample.value):
        return f"{sample.variant}: one class only among its matured labels"
    return None


def quality_comparison(baseline: QualitySample, canary: QualitySample,
                       rule: QualityRule) -> tuple[str, dict[str, Any], str]:  # fmt: skip
    """Compare the canary with the baseline on the same window: pass | fail |
    inconclusive, what was measured, and why.

    The variants serve disjoint users, so the samples are independent: the difference
    ``d = canary - baseline`` has variance ``var_c + var_b`` and a normal two-sided
    interval ``d ± z·√(var_c + var_b)``.  **pass**: the interval lies above ``-margin``
    (the canary is at most ``margin`` worse, at that confidence); **fail**: it lies below
    ``-margin`` (significantly worse than the margin allows); **inconclusive**: it spans
    ``-margin``, or a variant has too few matured labels or fraud."""
    from fraudctl.quality import z_of

    measured: dict[str, Any] = {
        "metric": rule.metric,
        "baseline": baseline.as_dict(),
        "canary": canary.as_dict(),
        "difference": None,
        "low": None,
        "high": None,
    }
    short = [why for why in (_short(baseline, rule), _short(canary, rule)) if why]
    if short:
        return "inconclusive", measured, "too few matured labels: " + "; ".join(short)
    assert canary.value is not None and baseline.value is not None  # _short checked
    assert canary.variance is not None and baseline.variance is not None
    difference = canary.value - baseline.value
    half = z_of(rule.confidence) * math.sqrt(canary.variance + baseline.variance)
    low, high = difference - half, difference + half
    measured |= {"difference": round(difference, 6), "low": round(low, 6),
                 "high": round(high, 6)}  # fmt: skip
    said = (
        f"{rule.metric} canary {canary.value:.4f} - baseline {baseline.value:.4f} = "
        f"{difference:+.4f}, {rule.confidence:.0%} interval [{low:+.4f}, {high:+.4f}]"
    )
    if low > -rule.margin:
        return "pass", measured, f"{said} lies above -{rule.margin:g}"
    if high < -rule.margin:
        return "fail", measured, f"{said} lies below -{rule.margin:g}: the canary is worse"
    return "inconclusive", measured, f"{said} spans -{rule.margin:g}: not enough evidence yet"


def quality_gate(baseline: QualitySample, canary: QualitySample, rule: QualityRule) -> Gate:
    """``production``: the canary is not worse than the baseline on the served traffic's
    matured labels (:func:`quality_comparison`)."""
    verdict, measured, detail = quality_comparison(baseline, canary, rule)
    text = (
        f"canary {rule.metric} - baseline's on the same matured window, "
        f"{rule.confidence:.0%} interval above -{rule.margin:g}; each variant ≥ "
        f"{rule.min_labels} matured labels and ≥ {rule.min_positives} fraud"
    )
    return Gate("quality", verdict == "pass", measured, text, detail,
                inconclusive=verdict == "inconclusive")  # fmt: skip


def quality_breach(baseline: QualitySample, canary: QualitySample, weight_pct: float,
                   rule: QualityRule) -> str | None:  # fmt: skip
    """What `canary watch --auto-rollback` rolls back on besides errors and latency: a
    canary taking traffic that the quality comparison finds worse (``fail``)."""
    if weight_pct <= 0:
        return None
    verdict, _measured, detail = quality_comparison(baseline, canary, rule)
    return f"quality: {detail}" if verdict == "fail" else None


# -- staging --------------------------------------------------------------------------


@dataclass(frozen=True)
class AucWindow:
    """The labeled events both models were scored on."""

    rows: int
    fraud: int
    first_event: str | None = None
    last_event: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "fraud": self.fraud, "first_event": self.first_event,
                "last_event": self.last_event}  # fmt: skip

    def comparable(self, limits: Limits) -> bool:
        """Enough rows of both classes for a ROC AUC to mean something."""
        return self.rows >= limits.min_eval_rows and 0 < self.fraud < self.rows


def auc_gate(window: AucWindow, auc: float | None, staging: tuple[str, float] | None,
             limits: Limits) -> Gate:  # fmt: skip
    """``staging``: the version's ROC AUC on the newest labeled events is at least the
    current staging's on the same events less the tolerance (``staging`` = its version
    and AUC), or at least the floor when there is no staging. ``auc`` None: the window
    was too small."""
    measured = window.as_dict()
    if auc is None or not window.comparable(limits) or not math.isfinite(auc):
        return Gate(
            "auc",
            False,
            measured,
            f"≥ {limits.min_eval_rows} labeled events of both classes",
            f"too little labeled data to compare: {window.rows} events, "
            f"{window.fraud} fraud; materialize more labeled events",
        )
    measured["roc_auc"] = round(auc, 6)
    if staging is None:
        passed = auc >= limits.auc_floor
        return Gate(
            "auc",
            passed,
            measured,
            f"ROC AUC ≥ floor {limits.auc_floor} (no staging yet)",
            f"ROC AUC {auc:.4f} {'≥' if passed else '<'} floor {limits.auc_floor}",
        )
    staging_version, staging_auc = staging
    measured |= {"staging_version": staging_version, "staging_roc_auc": round(staging_auc, 6)}
    tolerance = limits.auc_tolerance
    passed = auc >= staging_auc - tolerance
    less = f" - {tolerance:g}" if tolerance else ""
    return Gate(
        "auc",
        passed,
        measured,
        f"ROC AUC ≥ staging's{less} on the same window",
        f"ROC AUC {auc:.4f} {'≥' if passed else '<'} staging v{staging_version} "
        f"{staging_auc:.4f}{less} on the newest {window.rows:,} labeled events",
    )


def drift_gate(newest: dict[str, Any] | None, limits: Limits) -> Gate:
    """``staging``: the newest drift result is ``ok`` with a score below the threshold."""
    rule = f"newest drift result ok with score < {limits.drift_threshold}"
    if newest is None:
        return Gate("drift", False, {}, rule, "no drift result yet: run `fraudctl drift`")
    score = newest.get("drift_score")
    measured = {
        "status": newest.get("status"),
        "drift_score": score,
        "measured_at": newest.get("measured_at"),
        "current": newest.get("current"),
    }
    if newest.get("status") == "insufficient_data" or score is None:
        return Gate("drift", False, measured, rule, "the newest drift result had too little data")
    passed = newest.get("status") == "ok" and score < limits.drift_threshold
    worst = max(newest.get("features") or [{}], key=lambda f: f.get("psi", 0.0))
    return Gate(
        "drift",
        passed,
        measured,
        rule,
        f"drift score {score:.4f} {'<' if passed else '≥'} {limits.drift_threshold}"
        + ("" if passed else f" (largest: {worst.get('feature')} {worst.get('psi', 0):.4f})"),
    )


# How the drift status is exported as a number (the ``fraudctl_drift_status`` gauge).
DRIFT_STATUS_CODES = {"ok": 0, "drift": 1, "insufficient_data": 2}


def drift_status(score: float | None, threshold: float) -> str:
    """A drift measurement's status: ``insufficient_data`` without a score, ``drift`` at
    or over the threshold, else ``ok`` (the same comparison the drift gate makes)."""
    if score is None:
        return "insufficient_data"
    return "drift" if score >= threshold else "ok"
