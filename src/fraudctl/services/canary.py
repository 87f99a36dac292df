"""`fraudctl canary watch`: check the running canary on an interval; with
``auto_rollback``, send it no traffic on the first breach and say what was seen.

Two rules, both in :mod:`fraudctl.gates`: the serving breach (error rate or p95 over the
limits, from the server's live figures over a trailing window, :func:`canary_breach`)
and the quality breach (the canary significantly worse than the baseline on its matured
labels, the production quality gate's own comparison, :func:`quality_breach`).  The
quality check reads the prediction log and the labels, so it runs on its own, slower
cadence (``quality_every_s``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraudctl.gates import CanaryWindow, Limits, canary_breach, quality_breach
from fraudctl.ports import Backends


@dataclass(frozen=True)
class WatchOptions:
    url: str
    limits: Limits
    window_s: float = 300.0
    every_s: float = 5.0
    for_s: float | None = None
    auto_rollback: bool = False
    quality_every_s: float = 300.0  # 0: no quality check
    quality_window_s: float = 86_400.0


@dataclass
class WatchResult:
    checks: int = 0
    quality_checks: int = 0
    rolled_back: bool = False
    breach: str | None = None
    change: dict[str, Any] | None = None
    seen: dict[str, Any] = field(default_factory=dict)  # the last serving and quality figures

    def as_dict(self) -> dict[str, Any]:
        return {"rolled_back": self.rolled_back, "breach": self.breach, "change": self.change,
                "checks": self.checks, "quality_checks": self.quality_checks,
                "seen": self.seen}  # fmt: skip


def watch_canary(
    backends: Backends,
    options: WatchOptions,
    should_stop: Callable[[], bool],
    on_breach: Callable[[str], None] = lambda _b: None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WatchResult:
    """Watch until ``should_stop``, ``for_s`` passes, or — with ``auto_rollback`` — the
    first breach (the canary is then set to 0 % with the breach as the reason).  Without
    ``auto_rollback`` each breach is reported to ``on_breach`` and watching goes on."""
    server = backends.server(options.url)
    result = WatchResult()
    started = clock()
    next_quality = started
    while not should_stop() and (options.for_s is None or clock() - started < options.for_s):
        status = server.status(options.window_s)
        result.checks += 1
        seen = CanaryWindow.of((status.get("variants") or {}).get("canary"),
                               status.get("window_s"))  # fmt: skip
        weight = float(status.get("canary_weight") or 0.0)
        result.seen["serving"] = {"canary_weight": weight, "requests": seen.requests,
                                  "error_rate": seen.error_rate, "p95_ms": seen.p95_ms}  # fmt: skip
        breach = canary_breach(seen, weight, options.limits)
        if breach is None and options.quality_every_s > 0 and clock() >= next_quality:
            breach = _quality(backends, status, weight, options, result)
            next_quality = clock() + options.quality_every_s
        if breach is not None:
            if not options.auto_rollback:
                on_breach(breach)
            else:
                result.rolled_back, result.breach = True, breach
                result.change = server.set_canary(0.0, f"auto-rollback: {breach}")
                return result
        deadline = clock() + options.every_s
        while clock() < deadline and not should_stop():
            sleep(min(0.1, max(deadline - clock(), 0.0)))
    return result


def _quality(backends: Backends, status: dict[str, Any], weight: float, options: WatchOptions,
             result: WatchResult) -> str | None:  # fmt: skip
    """The quality breach of the version the server serves as the canary, if any."""
    from fraudctl.services.quality import canary_samples

    version = ((status.get("models") or {}).get("canary") or {}).get("model_version")
    if weight <= 0 or version is None:
        return None
    rule = options.limits.quality
    samples = canary_samples(backends, str(version), rule.metric, options.quality_window_s,
                             datetime.now(UTC))  # fmt: skip
    result.quality_checks += 1
    result.seen["quality"] = {"metric": rule.metric, "window": samples.window,
                              "baseline": samples.baseline.as_dict(),
                              "canary": samples.canary.as_dict()}  # fmt: skip
    return quality_breach(samples.baseline, samples.canary, weight, rule)
