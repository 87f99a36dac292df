"""`fraudctl drift`: compare a current window of model inputs and scores with a reference
window, per feature (PSI, `fraudctl.adapters.drift_psi`), write an Evidently report, and record the
result where `promote` and Prometheus find it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fraudctl.adapters.drift_psi import FeatureDrift, feature_drift
from fraudctl.errors import Refused, UsageError
from fraudctl.gates import BASELINE_ALIASES, DRIFT_STATUS_CODES, baseline_alias, drift_status
from fraudctl.model import CATEGORIES, MODEL_INPUTS
from fraudctl.ports import Backends, Gauge, MetricsPusher, ModelRegistry, RecordLog

SOURCES = ("predictions", "events")
MONITORED: tuple[str, ...] = (*MODEL_INPUTS, "score")
DRIFT_LOG = "drift-log"  # in the offline store: one JSON object per run


@dataclass(frozen=True)
class WindowSpec:
    """``training`` (the baseline model's training window), ``last:DURATION`` (ending
    now) or ``START/END`` (ISO timestamps or dates, end inclusive)."""

    kind: str  # "training" | "range"
    start: datetime | None = None
    end: datetime | None = None

    @staticmethod
    def parse(option: str, text: str, *, now: datetime, training_allowed: bool) -> WindowSpec:
        from fraudctl.timespec import parse_duration, parse_time_bound

        cleaned = text.strip()
        if cleaned == "training":
            if not training_allowed:
                raise UsageError(
                    f"{option} training is only a reference", hint="use last:1h or START/END"
                )
            return WindowSpec("training")
        match = re.fullmatch(r"last:(.+)", cleaned)
        if match:
            seconds = parse_duration(option, match.group(1))
            return WindowSpec("range", now - timedelta(seconds=seconds), now)
        if "/" in cleaned:
            first, last = cleaned.split("/", 1)
            start = parse_time_bound(option, first)
            end = parse_time_bound(option, last, end_of_day=True)
            if end <= start:
                raise UsageError(f"{option} {text!r} ends before it starts", hint="START/END")
            return WindowSpec("range", start, end)
        examples = "training, last:1h, 2026-11-01/2026-11-02" if training_allowed else "last:1h"
        raise UsageError(f"{option} {text!r} is not a window", hint=f"e.g. {examples}")


@dataclass
class DriftOptions:
    reference: WindowSpec
    current: WindowSpec
    source: str = "predictions"
    threshold: float = 0.3
    min_rows: int = 500
    report: Path | None = None


@dataclass
class DriftResult:
    status: str  # ok | drift | insufficient_data
    drift_score: float | None
    threshold: float
    min_rows: int
    source: str
    model: dict[str, str]
    reference: dict[str, Any]
    current: dict[str, Any]
    features: list[dict[str, Any]] = field(default_factory=list)
    report: str | None = None
    report_uri: str | None = None
    run_id: str | None = None
    pushed_to: str | None = None  # the Pushgateway the gauges went to
    push_error: str | None = None
    measured_at: str = ""
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rows(offline: Any, source: str, start: datetime, end: datetime) -> Any:
    """Model inputs (and the served score for the prediction log) of one window, as a
    pandas frame; events are joined with their features by event id."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    if source == "predictions":
        where = (ds.field("scored_at") >= start) & (ds.field("scored_at") <= end)
        table = offline.read("predictions", [*MODEL_INPUTS, "score"], where)
        return table.to_pandas() if table.num_rows else None
    where = (ds.field("event_ts") >= start) & (ds.field("event_ts") <= end)
    events = offline.read("events", ["event_id", "transaction_amount", "country", "device"], where)
    if events.num_rows == 0:
        return None
    features = offline.read(
        "features",
        ["event_id", *[n for n in MODEL_INPUTS if n not in events.column_names]],
        (pc.field("event_timestamp") >= start) & (pc.field("event_timestamp") <= end),
    )
    joined = events.join(features, "event_id", join_type="inner")
    return joined.select(list(MODEL_INPUTS)).to_pandas() if joined.num_rows else None


def _training_window(registry: ModelRegistry, version: str) -> tuple[datetime, datetime]:
    from fraudctl.contract import parse_utc_timestamp

    tags = registry.lineage(version)
    try:
        first = parse_utc_timestamp(tags["fraudctl.time.first_event"])
        last = parse_utc_timestamp(tags["fraudctl.time.last_event"])
    except KeyError as exc:
        raise Refused(
            f"version {version} of {registry.model_name} has no training window in its "
            f"lineage (tag {exc.args[0]} is missing)",
            hint="pass --reference START/END",
        ) from exc
    return first, last


def run_drift(
    backends: Backends, options: DriftOptions, progress: Callable[[str], None] = lambda _m: None
) -> DriftResult:
    started = time.monotonic()
    offline, registry = backends.offline, backends.registry
    progress("finding the baseline model")
    found = registry.aliases(BASELINE_ALIASES)
    alias = baseline_alias(found)
    if alias is None:
        raise Refused(
            f"no model to compare with: {registry.model_name} has none of the aliases "
            f"{', '.join(BASELINE_ALIASES)} in {registry.where}",
            hint="train one first: `fraudctl train`",
        )
    version = str(found[alias])
    model = registry.load(version, alias)
    if options.reference.kind == "training":
        ref_start, ref_end = _training_window(registry, version)
        ref_label = f"training window of version {version}"
    else:
        assert options.reference.start and options.reference.end
        ref_start, ref_end = options.reference.start, options.reference.end
        ref_label = "range"
    assert options.current.start and options.current.end
    cur_start, cur_end = options.current.start, options.current.end
    progress("reading the windows")
    # The reference is what the model learned from: its events, scored by the model.
    reference = _rows(offline, "events", ref_start, ref_end)
    current = _rows(offline, options.source, cur_start, cur_end)
    for frame in (reference, current):
        if frame is not None and "score" not in frame.columns:
            frame["score"] = model.scores(frame)
    ref_rows = 0 if reference is None else len(reference)
    cur_rows = 0 if current is None else len(current)
    result = DriftResult(
        status="insufficient_data",
        drift_score=None,
        threshold=options.threshold,
        min_rows=options.min_rows,
        source=options.source,
        model={"name": registry.model_name, "version": version, "alias": alias},
        reference={
            "what": ref_label,
            "start": ref_start.isoformat(),
            "end": ref_end.isoformat(),
            "rows": ref_rows,
        },
        current={
            "what": f"{options.source}",
            "start": cur_start.isoformat(),
            "end": cur_end.isoformat(),
            "rows": cur_rows,
        },
        measured_at=datetime.now(UTC).isoformat(),
    )
    if ref_rows >= options.min_rows and cur_rows >= options.min_rows:
        progress(f"PSI of {len(MONITORED)} features")
        drifts: list[FeatureDrift] = [
            feature_drift(
                name,
                reference[name].to_numpy(),
                current[name].to_numpy(),
                categorical=name in CATEGORIES,
                threshold=options.threshold,
            )
            for name in MONITORED
        ]
        result.features = [d.as_dict() for d in drifts]
        result.drift_score = max(d.psi for d in drifts)
        result.status = drift_status(result.drift_score, options.threshold)
        progress("writing the Evidently report")
        home = backends.settings.home
        report = options.report or home / "drift" / f"drift-{int(time.time())}.html"
        backends.drift_reporter.write_report(
            reference, current, report, result.features, options.threshold
        )
        result.report = str(report)
        result.report_uri = offline.copy_file(report, f"drift-reports/{report.name}")
        result.run_id = log_to_mlflow(registry, result, report)
    result.elapsed_s = round(time.monotonic() - started, 3)
    if backends.pusher.where:
        progress("pushing the gauges")
        _push(backends.pusher, result)
    record(offline, result)
    return result


DRIFT_JOB = "fraudctl_drift"


def drift_gauges(result: DriftResult) -> list[Gauge]:
    """A drift result as Prometheus gauges (job ``fraudctl_drift``, grouped by model):
    ``fraudctl_drift_psi{feature}``, ``fraudctl_drift_score``, ``fraudctl_drift_status``
    (:data:`~fraudctl.gates.DRIFT_STATUS_CODES`) and the time of the run."""
    gauges = [
        Gauge(
            "fraudctl_drift_psi", "PSI per monitored feature.", f["psi"], {"feature": f["feature"]}
        )
        for f in result.features
    ]
    if result.drift_score is not None:
        gauges.append(Gauge("fraudctl_drift_score", "Largest PSI.", result.drift_score))
    gauges.append(
        Gauge(
            "fraudctl_drift_status",
            "0 ok, 1 drift, 2 insufficient data.",
            DRIFT_STATUS_CODES[result.status],
        )
    )
    gauges.append(
        Gauge("fraudctl_drift_last_run_timestamp_seconds", "When drift last ran.", time.time())
    )
    return gauges


def _push(pusher: MetricsPusher, result: DriftResult) -> None:
    """The gauges to the Pushgateway; a push that fails is reported, the verdict stands."""
    error = pusher.push(DRIFT_JOB, {"model": result.model["name"]}, drift_gauges(result))
    if error is None:
        result.pushed_to = pusher.where
    else:
        result.push_error = error


def log_to_mlflow(registry: ModelRegistry, result: DriftResult, report: Path) -> str:
    """One run in the ``<model>-drift`` experiment: the PSI per feature, the drift score,
    the status, the windows, and the HTML report."""
    return registry.log_run(
        f"{registry.model_name}-drift",
        f"drift {result.current['start']}",
        params={
            "source": result.source,
            "threshold": result.threshold,
            "min_rows": result.min_rows,
            "reference": f"{result.reference['start']}/{result.reference['end']}",
            "current": f"{result.current['start']}/{result.current['end']}",
            "model_version": result.model["version"],
        },
        metrics={"drift_score": float(result.drift_score or 0.0)}
        | {f"psi.{f['feature']}": f["psi"] for f in result.features},
        tags={"fraudctl.drift.status": result.status},
        artifacts={report: "drift"},
    )


def record(offline: RecordLog, result: DriftResult) -> None:
    """Append the result to the drift log in the offline store (``promote``'s drift gate
    reads the newest; in ``stack`` every machine sees the same log)."""
    offline.add_record(DRIFT_LOG, result.as_dict())


def latest(log: RecordLog) -> dict[str, Any] | None:
    """The newest drift result recorded, if any."""
    found = log.records(DRIFT_LOG, newest=1)
    return found[0] if found else None
