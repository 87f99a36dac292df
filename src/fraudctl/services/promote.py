"""`fraudctl promote`: move a registry alias only through its gates, and record every
decision — passed or not — with what each gate measured.

- ``staging`` (for ``candidate`` or ``--version``): the **AUC gate** scores the version
  and the current ``staging`` on the same newest labeled events now (not their training
  numbers) and needs the version's ROC AUC ≥ staging's — or ≥ the configured floor when
  there is no ``staging``; the **drift gate** needs the newest drift result to be ``ok``
  with a score below the drift threshold.
- ``production`` (for ``staging`` or ``--version``): the **canary gate** needs the
  version to have served as canary on the running server for enough requests, with an
  error rate ≤ 1 % and a p95 within the 200 ms SLO; passing also sets the canary share
  to 0.  With no ``production`` yet nothing is being protected: the gate is waived and
  the waiver recorded.

An alias moves by compare-and-set under a lock (a Redis key in ``stack``, a file lock in
``local``): if the alias changed while the gates were evaluated, this promotion lost
and says to whom.  Every decision is appended to the promotion log in the offline store
and tagged on the model version.
"""

from __future__ import annotations

import getpass
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraudctl.config import Settings
from fraudctl.errors import BackendUnavailable, Refused

TARGETS = ("staging", "production")
PROMOTIONS = "promotions"  # in the offline store: one JSON object per decision
MAX_CANARY_ERROR_RATE = 0.01
SLO_P95_MS = 200.0
DRIFT_THRESHOLD = 0.3
MIN_EVAL_ROWS = 200
LOCK_TIMEOUT_S = 30.0
CANARY_WINDOW_S = 3600.0


@dataclass
class Gate:
    name: str
    passed: bool
    measured: dict[str, Any]
    rule: str
    detail: str


@dataclass
class Decision:
    id: str
    model_name: str
    to: str
    version: str
    previous: str | None  # what the alias pointed at before
    outcome: str  # promoted | refused | dry_run | lost
    reason: str
    gates: list[Gate] = field(default_factory=list)
    at: str = ""
    user: str = ""
    git_commit: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failed(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]


# -- gates ----------------------------------------------------------------------------


def evaluation_rows(offline: Any, feast: Any, newest: int) -> Any:
    """The newest ``newest`` labeled events with their point-in-time features."""
    from fraudctl.services.train import labeled_events, with_features

    labeled = labeled_events(offline, None, None, datetime.now(UTC))
    frame, _without = with_features(feast, labeled)
    return frame.tail(newest)


def auc_gate(frame: Any, version_model: Any, staging_model: Any | None, floor: float) -> Gate:
    from sklearn.metrics import roc_auc_score

    labels = frame["label"].to_numpy()
    window = {
        "rows": len(frame),
        "fraud": int(labels.sum()) if len(frame) else 0,
        "first_event": str(frame["event_timestamp"].iloc[0]) if len(frame) else None,
        "last_event": str(frame["event_timestamp"].iloc[-1]) if len(frame) else None,
    }
    if len(frame) < MIN_EVAL_ROWS or len(set(labels.tolist())) < 2:
        return Gate(
            "auc",
            False,
            window,
            f"≥ {MIN_EVAL_ROWS} labeled events of both classes",
            f"too little labeled data to compare: {window['rows']} events, "
            f"{window['fraud']} fraud; materialize more labeled events",
        )
    auc = float(roc_auc_score(labels, version_model.scores(frame)))
    measured = window | {"roc_auc": round(auc, 6)}
    if staging_model is None:
        passed = auc >= floor
        return Gate(
            "auc",
            passed,
            measured,
            f"ROC AUC ≥ floor {floor} (no staging yet)",
            f"ROC AUC {auc:.4f} {'≥' if passed else '<'} floor {floor}",
        )
    staging_auc = float(roc_auc_score(labels, staging_model.scores(frame)))
    measured |= {"staging_version": staging_model.version, "staging_roc_auc": round(staging_auc, 6)}
    passed = auc >= staging_auc
    return Gate(
        "auc",
        passed,
        measured,
        "ROC AUC ≥ staging's on the same window",
        f"ROC AUC {auc:.4f} {'≥' if passed else '<'} staging v{staging_model.version} "
        f"{staging_auc:.4f} on the newest {len(frame):,} labeled events",
    )


def drift_gate(newest: dict[str, Any] | None) -> Gate:
    rule = f"newest drift result ok with score < {DRIFT_THRESHOLD}"
    if newest is None:
        return Gate("drift", False, {}, rule, "no drift result yet: run `fraudctl drift`")
    score = newest.get("drift_score")
    measured = {
        "status": newest["status"],
        "drift_score": score,
        "measured_at": newest.get("measured_at"),
        "current": newest.get("current"),
    }
    if newest["status"] == "insufficient_data":
        return Gate("drift", False, measured, rule, "the newest drift result had too little data")
    passed = newest["status"] == "ok" and score is not None and score < DRIFT_THRESHOLD
    worst = max(newest.get("features") or [{}], key=lambda f: f.get("psi", 0.0))
    return Gate(
        "drift",
        passed,
        measured,
        rule,
        f"drift score {score:.4f} {'<' if passed else '≥'} {DRIFT_THRESHOLD}"
        + ("" if passed else f" (largest: {worst.get('feature')} {worst.get('psi', 0):.4f})"),
    )


def canary_gate(status: dict[str, Any], version: str, min_requests: int) -> Gate:
    rule = (
        f"served as canary for ≥ {min_requests} requests, error rate ≤ "
        f"{MAX_CANARY_ERROR_RATE:.0%}, p95 ≤ {SLO_P95_MS:.0f} ms"
    )
    canary = (status.get("models") or {}).get("canary") or {}
    stats = (status.get("variants") or {}).get("canary") or {}
    measured = {
        "serving_version": canary.get("model_version"),
        "requests": stats.get("requests", 0),
        "error_rate": stats.get("error_rate"),
        "p95_ms": stats.get("p95_ms"),
        "window_s": status.get("window_s"),
    }
    if canary.get("model_version") != version:
        return Gate(
            "canary",
            False,
            measured,
            rule,
            f"version {version} is not the canary on the server "
            f"(canary: {canary.get('model_version') or 'none'})",
        )
    problems = []
    if measured["requests"] < min_requests:
        problems.append(f"{measured['requests']} requests < {min_requests}")
    if (measured["error_rate"] or 0.0) > MAX_CANARY_ERROR_RATE:
        problems.append(f"error rate {measured['error_rate']:.2%} > {MAX_CANARY_ERROR_RATE:.0%}")
    if measured["p95_ms"] is not None and measured["p95_ms"] > SLO_P95_MS:
        problems.append(f"p95 {measured['p95_ms']:.1f} ms > {SLO_P95_MS:.0f} ms")
    detail = "; ".join(problems) or (
        f"{measured['requests']} requests, error rate {measured['error_rate']:.2%}, "
        f"p95 {measured['p95_ms']:.1f} ms"
    )
    return Gate("canary", not problems, measured, rule, detail)


# -- the lock and the log -------------------------------------------------------------


@contextmanager
def promotion_lock(settings: Settings) -> Iterator[None]:
    """One alias move at a time per model: a Redis key in ``stack`` (every machine), an
    exclusive file lock in ``local``."""
    if settings.online_store == "redis":
        from fraudctl.adapters.probes import redis_client

        client = redis_client(settings)
        key = f"fraudctl:promote-lock:{settings.model_name}"
        token = uuid.uuid4().hex
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while not client.set(key, token, nx=True, px=int(LOCK_TIMEOUT_S * 1000)):
            if time.monotonic() > deadline:
                raise BackendUnavailable(f"the promotion lock {key} stayed taken")
            time.sleep(0.05)
        try:
            yield
        finally:
            if client.get(key) == token.encode():
                client.delete(key)
        return
    import fcntl

    path = settings.home / "promote.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def history(offline: Any, model_name: str) -> list[dict[str, Any]]:
    # In decision order: records are named by when they were written, and a decision
    # that waited on the lock is written after a later one.
    decisions = [d for d in offline.records(PROMOTIONS) if d.get("model_name") == model_name]
    return sorted(decisions, key=lambda d: str(d.get("at", "")))


def _record(offline: Any, registry: Any, decision: Decision) -> None:
    offline.add_record(PROMOTIONS, decision.as_dict())
    gates = "; ".join(
        f"{g.name} {'pass' if g.passed else 'FAIL'}: {g.detail}" for g in decision.gates
    )
    with registry.session() as mlflow:
        client = mlflow.MlflowClient()
        prefix = f"fraudctl.promote.{decision.to}"
        for key, value in {
            prefix: decision.outcome,
            f"{prefix}.at": decision.at,
            f"{prefix}.id": decision.id,
            f"{prefix}.by": decision.user,
            f"{prefix}.gates": gates[:4900] or "none",
        }.items():
            client.set_model_version_tag(registry.model_name, decision.version, key, value)


# -- the command ----------------------------------------------------------------------


@dataclass
class PromoteOptions:
    to: str = "staging"
    version: str | None = None
    dry_run: bool = False
    serve_url: str = "http://127.0.0.1:8000"


def promote(
    settings: Settings,
    options: PromoteOptions,
    progress: Callable[[str], None] = lambda _m: None,
    *,
    canary_status: Callable[[str], dict[str, Any]] | None = None,
    set_canary: Callable[[str, float, str], Any] | None = None,
) -> Decision:
    from fraudctl.adapters.offline import open_offline
    from fraudctl.adapters.registry import Registry

    offline = open_offline(settings)
    registry = Registry(settings)
    progress("reading the aliases")
    decision, production = _decision(registry, options)
    if options.to == "staging":
        decision.gates = _staging_gates(settings, offline, registry, decision, progress)
    elif production is None:
        decision.gates = [
            Gate("canary", True, {}, "waived", "no production model yet: nothing to protect")
        ]
    else:
        progress("reading the canary's serving metrics")
        status = (canary_status or _canary_status)(options.serve_url)
        decision.gates = [
            canary_gate(status, decision.version, settings.promote_canary_min_requests)
        ]
    failed = decision.failed()
    if failed:
        decision.reason = "; ".join(f"{g.name} gate: {g.detail}" for g in failed)
    elif options.dry_run:
        decision.outcome, decision.reason = "dry_run", "every gate passed; nothing moved"
    else:
        progress(f"moving '{options.to}' to version {decision.version}")
        _move(settings, registry, decision)
        if decision.outcome == "promoted" and options.to == "production" and production:
            reason = f"version {decision.version} promoted to production"
            try:
                (set_canary or _set_canary)(options.serve_url, 0.0, reason)
                decision.reason += "; canary share set to 0"
            except BackendUnavailable as exc:
                decision.reason += f"; the canary share could not be reset ({exc.message})"
    _record(offline, registry, decision)
    return decision


def _decision(registry: Any, options: PromoteOptions) -> tuple[Decision, str | None]:
    """The decision to make (version, what the alias points at now) and the current
    production version."""
    from fraudctl.adapters.registry import resolve_alias
    from fraudctl.services.train import git_commit

    source = "candidate" if options.to == "staging" else "staging"
    with registry.session() as mlflow:
        version = options.version or resolve_alias(registry, mlflow, source)
        previous = resolve_alias(registry, mlflow, options.to)
        production = resolve_alias(registry, mlflow, "production")
        if version is None:
            raise Refused(
                f"nothing to promote: {registry.model_name} has no '{source}' alias",
                hint="`fraudctl train` registers a candidate; or pass --version",
            )
        try:
            mlflow.MlflowClient().get_model_version(registry.model_name, version)
        except Exception as exc:
            if isinstance(exc, BackendUnavailable):
                raise
            raise Refused(
                f"{registry.model_name} has no version {version}",
                hint="see `fraudctl promote --history`",
            ) from exc
    if previous == str(version):
        raise Refused(f"version {version} already is '{options.to}'", hint="nothing to do")
    decision = Decision(
        id=uuid.uuid4().hex[:12],
        model_name=registry.model_name,
        to=options.to,
        version=str(version),
        previous=previous,
        outcome="refused",
        reason="",
        at=datetime.now(UTC).isoformat(),
        user=getpass.getuser(),
        git_commit=git_commit(),
    )
    return decision, production


def _move(settings: Settings, registry: Any, decision: Decision) -> None:
    """Compare-and-set the alias under the promotion lock."""
    from fraudctl.adapters.registry import resolve_alias

    with promotion_lock(settings), registry.session() as mlflow:
        now = resolve_alias(registry, mlflow, decision.to)
        if now != decision.previous:
            decision.outcome = "lost"
            decision.reason = (
                f"'{decision.to}' moved from {decision.previous or 'nothing'} to {now} while "
                "this promotion was evaluated (another promote won); nothing changed"
            )
            return
        registry.set_alias(mlflow, decision.to, decision.version)
        decision.outcome = "promoted"
        decision.reason = f"'{decision.to}' now points at version {decision.version}"


def _staging_gates(
    settings: Settings, offline: Any, registry: Any, decision: Decision, progress: Any
) -> list[Gate]:
    from fraudctl.adapters.online import OnlineState
    from fraudctl.adapters.registry import load_version
    from fraudctl.services.drift import latest

    progress("loading the models")
    with registry.session() as mlflow:
        model = load_version(registry, mlflow, decision.version, "candidate")
        staging = None
        if decision.previous is not None:
            staging = load_version(registry, mlflow, decision.previous, "staging")
    progress("scoring the newest labeled events")
    feast = OnlineState(settings, offline.uri)
    frame = evaluation_rows(offline, feast, settings.promote_eval_events)
    return [
        auc_gate(frame, model, staging, settings.promote_auc_floor),
        drift_gate(latest(settings)),
    ]


def _canary_status(url: str) -> dict[str, Any]:
    from fraudctl.serving.client import call_server

    status: dict[str, Any] = call_server(url, "GET", f"/v1/canary?window={CANARY_WINDOW_S}")
    return status


def _set_canary(url: str, weight: float, reason: str) -> Any:
    from fraudctl.serving.client import call_server

    return call_server(url, "POST", "/v1/canary", {"weight": weight, "reason": reason})
