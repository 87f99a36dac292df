"""`fraudctl promote`: move a registry alias only through its gates, and record every
decision — passed or not — with what each gate measured.

- ``staging`` (for ``candidate`` or ``--version``): the **AUC gate** scores the version
  and the current ``staging`` on the same newest labeled events now (not their training
  numbers) and needs the version's ROC AUC ≥ staging's — or ≥ the configured floor when
  there is no ``staging``; the **drift gate** needs the newest drift result to be ``ok``
  with a score below the drift threshold.
- ``production`` (for ``staging`` or ``--version``): the **canary gate** needs the
  version to have served as canary on the running server for enough requests, within
  the error-rate and p95 limits (settings ``canary_max_error_rate``,
  ``canary_max_p95_ms``); the **quality gate** needs the canary's served predictions,
  judged on their matured labels, to be no worse than the baseline's over the same time
  range (settings ``promote_quality_*``; pass, fail or *inconclusive* — too few labels
  yet, which refuses without failing: outcome ``inconclusive``, the canary keeps
  running).  Passing also sets the canary share to 0.  With no ``production`` yet
  nothing is being protected: both are waived and the waiver recorded.

An alias moves by compare-and-set under a lock (a Redis key in ``stack``, a file lock in
``local``): if the alias changed while the gates were evaluated, this promotion lost
and says to whom.  Every decision is appended to the promotion log in the offline store
and tagged on the model version.  The verdicts themselves are pure functions in
:mod:`fraudctl.gates`; this module measures and moves.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraudctl.errors import BackendUnavailable, Refused
from fraudctl.gates import (
    PROMOTION_TARGETS,
    SHOWN,
    Alias,
    AucWindow,
    CanaryWindow,
    Gate,
    Limits,
    auc_gate,
    canary_gate,
    drift_gate,
    production_waived,
    promotion_source,
    quality_gate,
)
from fraudctl.ports import Backends, FeatureStore, Lock, ModelRegistry, OfflineStore, RecordLog

TARGETS = tuple(str(a) for a in PROMOTION_TARGETS)
PROMOTIONS = "promotions"  # in the offline store: one JSON object per decision
CANARY_WINDOW_S = 3600.0


@dataclass
class Decision:
    id: str
    model_name: str
    to: str
    version: str
    previous: str | None  # what the alias pointed at before
    outcome: str  # promoted | refused | inconclusive | dry_run | lost
    reason: str
    gates: list[Gate] = field(default_factory=list)
    at: str = ""
    user: str = ""
    git_commit: str | None = None

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        for gate, shown in zip(self.gates, found["gates"], strict=True):
            shown["verdict"] = gate.verdict
        return found

    def failed(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]

    @classmethod
    def new(cls, model_name: str, to: str, version: str, previous: str | None, outcome: str,
            reason: str = "", gates: list[Gate] | None = None,
            at: datetime | None = None) -> Decision:  # fmt: skip
        """A decision made now (or ``at``), by this user at this commit, with an id of
        its own."""
        from fraudctl.services.provenance import git_commit

        return cls(
            id=uuid.uuid4().hex[:12], model_name=model_name, to=to, version=version,
            previous=previous, outcome=outcome, reason=reason, gates=gates or [],
            at=(at or datetime.now(UTC)).isoformat(), user=getpass.getuser(),
            git_commit=git_commit(),
        )  # fmt: skip


# -- measuring for the gates (the verdicts are fraudctl.gates) ------------------------


def evaluation_rows(offline: OfflineStore, feast: FeatureStore, newest: int) -> Any:
    """The newest ``newest`` labeled events with their point-in-time features."""
    from fraudctl.services.training_set import labeled_events, with_features

    labeled = labeled_events(offline, None, None, datetime.now(UTC))
    frame, _without = with_features(feast, labeled)
    return frame.tail(newest)


def measure_auc(frame: Any, version_model: Any, staging_model: Any | None, limits: Limits) -> Gate:
    """Score the version (and staging) on the same labeled rows; the AUC gate decides."""
    from sklearn.metrics import roc_auc_score

    labels = frame["label"].to_numpy()
    window = AucWindow(
        rows=len(frame),
        fraud=int(labels.sum()) if len(frame) else 0,
        first_event=str(frame["event_timestamp"].iloc[0]) if len(frame) else None,
        last_event=str(frame["event_timestamp"].iloc[-1]) if len(frame) else None,
    )
    if not window.comparable(limits):
        return auc_gate(window, None, None, limits)
    auc = float(roc_auc_score(labels, version_model.scores(frame)))
    staging = None
    if staging_model is not None:
        staging_auc = float(roc_auc_score(labels, staging_model.scores(frame)))
        staging = (str(staging_model.version), staging_auc)
    return auc_gate(window, auc, staging, limits)


def measure_quality_gate(backends: Backends, version: str, limits: Limits) -> Gate:
    """The canary's (``version``) and the baseline's matured labels over the same time
    range of served traffic; the quality gate decides."""
    from fraudctl.services.quality import canary_samples

    samples = canary_samples(
        backends,
        version,
        limits.quality.metric,
        backends.settings.promote_quality_window_s,
        datetime.now(UTC),
    )
    gate = quality_gate(samples.baseline, samples.canary, limits.quality)
    gate.measured["window"] = samples.window
    return gate


# -- the lock and the log -------------------------------------------------------------


def history(log: RecordLog, model_name: str) -> list[dict[str, Any]]:
    # In decision order: records are named by when they were written, and a decision
    # that waited on the lock is written after a later one.
    decisions = [d for d in log.records(PROMOTIONS) if d.get("model_name") == model_name]
    return sorted(decisions, key=lambda d: str(d.get("at", "")))


def _record(log: RecordLog, registry: ModelRegistry, decision: Decision) -> None:
    log.add_record(PROMOTIONS, decision.as_dict())
    gates = "; ".join(f"{g.name} {SHOWN[g.verdict]}: {g.detail}" for g in decision.gates)
    prefix = f"fraudctl.promote.{decision.to}"
    registry.tag_version(
        decision.version,
        {
            prefix: decision.outcome,
            f"{prefix}.at": decision.at,
            f"{prefix}.id": decision.id,
            f"{prefix}.by": decision.user,
            f"{prefix}.gates": gates[:4900] or "none",
        },
    )


def record_canary_decision(
    backends: Backends, version: str, outcome: str, reason: str, gates: list[Gate],
    at: datetime | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A progressive-delivery transition (``fraudctl run``: the canary ``stepped`` to a
    weight, or ``rolled_back``), recorded like a promotion: in the promotion log (so
    ``promote --history`` lists it) and on the version's tags (``to`` is ``canary``)."""
    decision = Decision.new(backends.registry.model_name, "canary", version, None, outcome,
                            reason, gates, at)  # fmt: skip
    _record(backends.offline, backends.registry, decision)
    return decision.as_dict()


# -- the command ----------------------------------------------------------------------


@dataclass
class PromoteOptions:
    to: str = "staging"
    version: str | None = None
    dry_run: bool = False
    serve_url: str = "http://127.0.0.1:8000"


def promote(
    backends: Backends,
    options: PromoteOptions,
    progress: Callable[[str], None] = lambda _m: None,
) -> Decision:
    offline, registry = backends.offline, backends.registry
    settings = backends.settings
    limits = Limits.of(settings)
    progress("reading the aliases")
    decision, production = _decision(registry, options)
    server = backends.server(options.serve_url)
    if options.to == Alias.STAGING:
        decision.gates = _staging_gates(backends, decision, progress, limits)
    elif production is None:
        decision.gates = production_waived()
    else:
        progress("reading the canary's serving metrics")
        status = server.status(CANARY_WINDOW_S)
        canary = (status.get("models") or {}).get("canary") or {}
        window = CanaryWindow.of((status.get("variants") or {}).get("canary"),
                                 status.get("window_s"))  # fmt: skip
        decision.gates = [
            canary_gate(window, canary.get("model_version"), decision.version, limits)
        ]
        progress("judging the canary on its matured labels")
        decision.gates.append(measure_quality_gate(backends, decision.version, limits))
    failed = decision.failed()
    if failed:
        decision.reason = "; ".join(
            f"{g.name} gate{' (inconclusive)' if g.inconclusive else ''}: {g.detail}"
            for g in failed
        )
        if all(g.inconclusive for g in failed):
            decision.outcome = "inconclusive"
            decision.reason += "; the canary keeps running"
    elif options.dry_run:
        decision.outcome, decision.reason = "dry_run", "every gate passed; nothing moved"
    else:
        progress(f"moving '{options.to}' to version {decision.version}")
        _move(backends.promotion_lock, registry, decision)
        if decision.outcome == "promoted" and options.to == Alias.PRODUCTION and production:
            reason = f"version {decision.version} promoted to production"
            try:
                server.set_canary(0.0, reason)
                decision.reason += "; canary share set to 0"
            except BackendUnavailable as exc:
                decision.reason += f"; the canary share could not be reset ({exc.message})"
    _record(offline, registry, decision)
    return decision


def _decision(registry: ModelRegistry, options: PromoteOptions) -> tuple[Decision, str | None]:
    """The decision to make (version, what the alias points at now) and the current
    production version."""
    source = promotion_source(Alias(options.to))
    found = registry.aliases({source, Alias(options.to), Alias.PRODUCTION})
    version = options.version or found[source]
    previous, production = found[options.to], found[Alias.PRODUCTION]
    if version is None:
        raise Refused(
            f"nothing to promote: {registry.model_name} has no '{source}' alias",
            hint="`fraudctl train` registers a candidate; or pass --version",
        )
    if not registry.has_version(version):
        raise Refused(
            f"{registry.model_name} has no version {version}",
            hint="see `fraudctl promote --history`",
        )
    if previous == str(version):
        raise Refused(f"version {version} already is '{options.to}'", hint="nothing to do")
    decision = Decision.new(registry.model_name, options.to, str(version), previous, "refused")
    return decision, production


def _move(lock: Lock, registry: ModelRegistry, decision: Decision) -> None:
    """Compare-and-set the alias under the promotion lock."""
    with lock.hold():
        now = registry.aliases([decision.to])[decision.to]
        if now != decision.previous:
            decision.outcome = "lost"
            decision.reason = (
                f"'{decision.to}' moved from {decision.previous or 'nothing'} to {now} while "
                "this promotion was evaluated (another promote won); nothing changed"
            )
            return
        registry.set_alias(decision.to, decision.version)
        decision.outcome = "promoted"
        decision.reason = f"'{decision.to}' now points at version {decision.version}"


def _staging_gates(
    backends: Backends, decision: Decision, progress: Callable[[str], None], limits: Limits
) -> list[Gate]:
    from fraudctl.services.drift import latest

    registry = backends.registry
    progress("loading the models")
    model = registry.load(decision.version, Alias.CANDIDATE)
    staging = None
    if decision.previous is not None:
        staging = registry.load(decision.previous, Alias.STAGING)
    progress("scoring the newest labeled events")
    frame = evaluation_rows(
        backends.offline, backends.features, backends.settings.promote_eval_events
    )
    return [
        measure_auc(frame, model, staging, limits),
        drift_gate(latest(backends.offline), limits),
    ]
