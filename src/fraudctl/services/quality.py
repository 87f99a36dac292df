"""`fraudctl quality`: how the served models actually perform, from the prediction log
joined with the labels as they arrive (docs/quality.md).

A prediction counts once its label has *matured*: the label arrived (by ``as_of``), or
the prediction is older than the maximum label delay without one — then it is counted as
unlabeled (coverage), never as a negative.  Younger predictions without a label are
pending and left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from fraudctl import quality as q
from fraudctl.errors import UsageError
from fraudctl.gates import QualitySample
from fraudctl.ports import Backends, Gauge, MetricsPusher, ModelRegistry, OfflineStore, RecordLog

QUALITY_LOG = "quality-log"  # in the offline store: one JSON object per run
QUALITY_JOB = "fraudctl_quality"
GROUPINGS = ("variant", "version")
SHADOW = "shadow"


@dataclass(frozen=True)
class QualityOptions:
    start: datetime
    end: datetime
    as_of: datetime
    by: str = "variant"
    top_k: int = 100
    max_label_delay_s: float = 86_400.0
    min_labels: int = 200
    min_positives: int = 5
    confidence: float = q.CONFIDENCE

    def __post_init__(self) -> None:
        if self.by not in GROUPINGS:
            raise UsageError(f"--by {self.by!r} is not known", hint="use variant or version")


@dataclass
class GroupQuality:
    group: str
    status: str  # ok | insufficient_data
    reason: str
    counts: dict[str, int]
    coverage: dict[str, Any]
    figures: dict[str, dict[str, Any]]
    label_delay_s: dict[str, float | None]
    versions: list[str] = field(default_factory=list)


@dataclass
class QualityResult:
    status: str  # ok | insufficient_data
    by: str
    model: str
    window: dict[str, str]
    as_of: str
    rules: dict[str, Any]
    groups: list[GroupQuality]
    pushed_to: str | None = None
    push_error: str | None = None
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_quality(
    backends: Backends, options: QualityOptions, progress: Callable[[str], None] = lambda _m: None
) -> QualityResult:
    started = time.monotonic()
    progress("reading the prediction log and the labels")
    rows = matured_rows(backends.offline, backends.registry, options)
    progress("computing the figures")
    groups = [group_quality(name, part, options) for name, part in _groups(rows, options.by)]
    result = QualityResult(
        status="ok" if groups and all(g.status == "ok" for g in groups) else "insufficient_data",
        by=options.by,
        model=backends.registry.model_name,
        window={"start": options.start.isoformat(), "end": options.end.isoformat()},
        as_of=options.as_of.isoformat(),
        rules={
            "max_label_delay_s": options.max_label_delay_s,
            "min_labels": options.min_labels,
            "min_positives": options.min_positives,
            "top_k": options.top_k,
            "confidence": options.confidence,
        },
        groups=groups,
    )
    result.elapsed_s = round(time.monotonic() - started, 3)
    if backends.pusher.where:
        progress("pushing the gauges")
        _push(backends.pusher, result)
    record(backends.offline, result)
    return result


def matured_rows(offline: OfflineStore, registry: ModelRegistry, options: QualityOptions) -> Any:
    """One row per (served or shadow) prediction in the window, with its label state:
    ``state`` labeled | unlabeled (matured without a label) | pending.  The joins are
    Arrow's (hash joins in C++: a million predictions in about a second)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    where = (ds.field("scored_at") >= options.start) & (ds.field("scored_at") <= options.end)
    columns = ["event_id", "scored_at", "score", "decision", "variant", "model_version",
               "shadow_version", "shadow_score"]  # fmt: skip
    predictions = offline.read("predictions", columns, where)
    if not predictions.num_rows:
        return _empty()
    kept = ["event_id", "scored_at", "score", "flagged", "variant", "model_version"]
    parts = [
        predictions.append_column("flagged", pc.equal(predictions["decision"], "block")).select(
            kept
        )
    ]
    shadow = predictions.filter(pc.is_valid(predictions["shadow_score"])).to_pandas()
    if len(shadow):
        thresholds = {v: _threshold(registry, v) for v in shadow["shadow_version"].unique()}
        limit = shadow["shadow_version"].map(thresholds).astype(float)
        frame = pd.DataFrame({
            "event_id": shadow["event_id"], "scored_at": shadow["scored_at"],
            "score": shadow["shadow_score"], "flagged": shadow["shadow_score"] >= limit,
            "variant": SHADOW, "model_version": shadow["shadow_version"],
        })  # fmt: skip
        parts.append(pa.Table.from_pandas(frame, schema=parts[0].schema, preserve_index=False))
    rows = _first_per(pa.concat_tables(parts), ["event_id", "variant"], "scored_at")
    labels = _first_per(
        offline.read("labels", ["event_id", "label", "event_ts", "label_ts"],
                     ds.field("label_ts") <= options.as_of),
        ["event_id"], "label_ts",
    )  # fmt: skip
    if labels.num_rows:
        rows = rows.join(labels, "event_id", join_type="left outer")
    events = offline.read("events", ["event_id", "user_id"])
    if events.num_rows:
        rows = rows.join(_first_per(events, ["event_id"], None), "event_id", join_type="left outer")
    for name, kind in (
        ("label", pa.int64()),
        ("event_ts", pa.timestamp("us", "UTC")),
        ("label_ts", pa.timestamp("us", "UTC")),
        ("user_id", pa.string()),
    ):
        if name not in rows.column_names:
            rows = rows.append_column(name, pa.nulls(rows.num_rows, kind))
    # The card of an event never materialized is the event itself.  Strings the figures
    # only group by travel as categories (codes, not a million Python strings).
    card = pc.coalesce(rows["user_id"], rows["event_id"])
    rows = rows.drop_columns(["event_id", "user_id"]).append_column("user_id", card)
    for name in ("user_id", "variant", "model_version"):
        index = rows.column_names.index(name)
        rows = rows.set_column(index, name, pc.dictionary_encode(rows[name]))
    frame = rows.to_pandas()
    age = (pd.Timestamp(options.as_of) - frame["scored_at"]).dt.total_seconds()
    frame["state"] = np.where(
        frame["label"].notna(),
        "labeled",
        np.where(age >= options.max_label_delay_s, "unlabeled", "pending"),
    )
    return frame


def _first_per(table: Any, keys: list[str], order: str | None) -> Any:
    """``table`` with one row per ``keys`` (the earliest by ``order``): a retried
    request, a label delivered twice.  Free when there is nothing to drop."""
    import pyarrow.compute as pc

    if not table.num_rows:
        return table
    key = table[keys[0]] if len(keys) == 1 else pc.binary_join_element_wise(
        *[pc.cast(table[k], "string") for k in keys], "\x1f"
    )  # fmt: skip
    if pc.count_distinct(key).as_py() == table.num_rows:
        return table
    frame = table.to_pandas()
    if order is not None:
        frame = frame.sort_values(order, kind="stable")
    import pyarrow as pa

    return pa.Table.from_pandas(frame.drop_duplicates(keys), schema=table.schema,
                                preserve_index=False)  # fmt: skip


def _empty() -> Any:
    import pandas as pd

    return pd.DataFrame(
        columns=[
            "event_id",
            "scored_at",
            "score",
            "flagged",
            "variant",
            "model_version",
            "label",
            "event_ts",
            "label_ts",
            "user_id",
            "state",
        ]
    )


def _threshold(registry: ModelRegistry, version: str) -> float:
    """A shadow version's own threshold (its tag; scoring used the same)."""
    value = registry.version_tags(str(version)).get("threshold")
    return float(value) if value is not None else float("inf")


def _groups(rows: Any, by: str) -> list[tuple[str, Any]]:
    key = "variant" if by == "variant" else "model_version"
    return [(str(name), part) for name, part in rows.groupby(key, sort=True, observed=True)]


def group_quality(name: str, rows: Any, options: QualityOptions) -> GroupQuality:
    labeled = rows[rows["state"] == "labeled"]
    counts = {
        "predictions": len(rows),
        "labeled": len(labeled),
        "unlabeled_matured": int((rows["state"] == "unlabeled").sum()),
        "pending": int((rows["state"] == "pending").sum()),
        "fraud": int(labeled["label"].sum()) if len(labeled) else 0,
        "alerts": int(rows["flagged"].sum()),
    }
    matured = counts["labeled"] + counts["unlabeled_matured"]
    coverage = q.wilson(counts["labeled"], matured, options.confidence).as_dict()
    delays = (labeled["label_ts"] - labeled["event_ts"]).dt.total_seconds() if len(labeled) else []
    reason = _insufficient(counts, options)
    figures: dict[str, dict[str, Any]] = {}
    if not reason:
        figures = {k: v.as_dict() for k, v in figures_of(labeled, rows, options).items()}
    return GroupQuality(
        group=name,
        status="insufficient_data" if reason else "ok",
        reason=reason,
        counts=counts,
        coverage=coverage,
        figures=figures,
        label_delay_s=q.quantiles(delays),
        versions=sorted({str(v) for v in rows["model_version"].dropna().unique()}),
    )


def _insufficient(counts: dict[str, int], options: QualityOptions) -> str:
    labeled, fraud = counts["labeled"], counts["fraud"]
    if labeled < options.min_labels:
        return f"{labeled} matured labels < {options.min_labels} (pending: {counts['pending']})"
    if fraud < options.min_positives:
        return f"{fraud} fraud among the matured labels < {options.min_positives}"
    if fraud == labeled:
        return "every matured label is fraud: no legitimate event to compare with"
    return ""


def figures_of(labeled: Any, rows: Any, options: QualityOptions) -> dict[str, q.Estimate]:
    """Every figure of one group: on its labeled predictions, except the alert rate (on
    every prediction of the window)."""
    import numpy as np

    y = labeled["label"].to_numpy(dtype=int)
    s = labeled["score"].to_numpy(dtype=float)
    flagged = labeled["flagged"].to_numpy(dtype=bool)
    c = options.confidence
    true_alerts = int((flagged & (y == 1)).sum())
    days = labeled["scored_at"].dt.floor("D")
    return {
        "roc_auc": q.roc_auc(y, s, c),
        "pr_auc": q.average_precision(y, s, c),
        "precision_at_threshold": q.wilson(true_alerts, int(flagged.sum()), c),
        "recall_at_threshold": q.wilson(true_alerts, int(y.sum()), c),
        "alert_rate": q.wilson(int(rows["flagged"].sum()), len(rows), c),
        "brier": q.brier(y, s, c),
        "calibration_error": q.calibration_error(y, s, c),
        "top_k_precision": q.top_k_precision(days, labeled["user_id"], y, s, options.top_k, c),
        "fraud_share": q.wilson(int(np.sum(y)), len(y), c),
    }


def options_of(settings: Any, start: datetime, end: datetime, **overrides: Any) -> QualityOptions:
    """The quality options the settings give for a window (``as_of`` = its end)."""
    values: dict[str, Any] = {
        "start": start,
        "end": end,
        "as_of": end,
        "top_k": settings.quality_top_k,
        "max_label_delay_s": settings.quality_max_label_delay_s,
        "min_labels": settings.quality_min_labels,
        "min_positives": settings.quality_min_positives,
    }
    return QualityOptions(**(values | overrides))


@dataclass(frozen=True)
class CanarySamples:
    """What the quality gate compares: each variant's matured labels over one window."""

    baseline: QualitySample
    canary: QualitySample
    window: dict[str, str | None]


def canary_samples(
    backends: Backends, canary_version: str | None, metric: str, window_s: float, now: datetime
) -> CanarySamples:
    """The canary's served predictions (of ``canary_version`` when given) over the last
    ``window_s``, and the baseline's over the same time range — from the canary's first
    such prediction to its last — each with its matured labels, the figure ``metric``
    and the variance of its estimate."""
    from datetime import timedelta

    options = options_of(backends.settings, now - timedelta(seconds=window_s), now)
    rows = matured_rows(backends.offline, backends.registry, options)
    canary = rows[rows["variant"] == "canary"]
    if canary_version is not None:
        canary = canary[canary["model_version"].astype(str) == str(canary_version)]
    if len(canary):
        first, last = canary["scored_at"].min(), canary["scored_at"].max()
        in_range = (rows["scored_at"] >= first) & (rows["scored_at"] <= last)
        baseline = rows[(rows["variant"] == "baseline") & in_range]
        window = {"start": first.isoformat(), "end": last.isoformat()}
    else:
        baseline = rows.iloc[0:0]
        window = {"start": None, "end": None}
    return CanarySamples(
        variant_sample("baseline", baseline, metric),
        variant_sample("canary", canary, metric),
        window,
    )


def variant_sample(variant: str, rows: Any, metric: str) -> QualitySample:
    """One variant's rows (``matured_rows``' shape) as the quality gate's sample."""
    labeled = rows[rows["state"] == "labeled"]
    y = labeled["label"].to_numpy(dtype=int)
    found = q.VARIANCES[metric](y, labeled["score"].to_numpy(dtype=float)) if len(y) else None
    versions = sorted({str(v) for v in rows["model_version"].dropna().unique()})
    return QualitySample(
        variant=variant,
        version=",".join(versions) or None,
        labeled=len(labeled),
        positives=int(y.sum()),
        value=found[0] if found else None,
        variance=found[1] if found else None,
    )


def quality_gauges(result: QualityResult) -> list[Gauge]:
    """Per group: ``fraudctl_quality_<figure>{by, group, bound}`` (bound value|low|high),
    ``fraudctl_quality_labeled``, ``fraudctl_quality_coverage``,
    ``fraudctl_quality_label_delay_seconds{quantile}`` (p50, p99),
    ``fraudctl_quality_status`` (0 ok, 2 insufficient data) and the time of the run."""
    gauges: list[Gauge] = []
    for group in result.groups:
        labels = {"by": result.by, "group": group.group}
        status = 0.0 if group.status == "ok" else 2.0
        gauges.append(
            Gauge("fraudctl_quality_status", "0 ok, 2 insufficient data.", status, labels)
        )
        gauges.append(
            Gauge(
                "fraudctl_quality_labeled",
                "Matured labels.",
                float(group.counts["labeled"]),
                labels,
            )
        )
        if group.coverage["value"] is not None:
            gauges.append(
                Gauge(
                    "fraudctl_quality_coverage",
                    "Matured predictions labeled.",
                    group.coverage["value"],
                    labels,
                )
            )
        for quantile in ("p50", "p99"):
            delay = group.label_delay_s[quantile]
            if delay is not None:
                name, text = "fraudctl_quality_label_delay_seconds", "Label delay (event → label)."
                gauges.append(Gauge(name, text, delay, labels | {"quantile": quantile}))
        for figure, estimate in group.figures.items():
            for bound in ("value", "low", "high"):
                if estimate[bound] is not None:
                    gauges.append(
                        Gauge(
                            f"fraudctl_quality_{figure}",
                            f"{figure} of the group, its 95 % interval by bound.",
                            float(estimate[bound]),
                            labels | {"bound": bound},
                        )
                    )
    gauges.append(
        Gauge("fraudctl_quality_last_run_timestamp_seconds", "When quality last ran.", time.time())
    )
    return gauges


def _push(pusher: MetricsPusher, result: QualityResult) -> None:
    error = pusher.push(QUALITY_JOB, {"model": result.model}, quality_gauges(result))
    if error is None:
        result.pushed_to = pusher.where
    else:
        result.push_error = error


def record(log: RecordLog, result: QualityResult) -> None:
    """Append the run to the quality log in the offline store (read back with
    ``fraudctl quality --history``)."""
    log.add_record(QUALITY_LOG, result.as_dict())


def history(log: RecordLog, newest: int | None = None) -> list[dict[str, Any]]:
    return log.records(QUALITY_LOG, newest=newest)


def follow_quality(
    backends: Backends,
    options_at: Callable[[datetime], QualityOptions],
    every_s: float,
    on_result: Callable[[QualityResult], None],
    should_stop: Callable[[], bool],
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Measure now, then on every ``every_s`` of the wall clock (a run that overruns its
    interval is not stacked: the next starts at the next slot), until ``should_stop``.
    ``options_at(now)`` gives each run its window.  Returns the number of runs."""
    from datetime import UTC

    started, runs = clock(), 0
    while not should_stop():
        now = clock()
        on_result(measure_quality(backends, options_at(datetime.fromtimestamp(now, UTC))))
        runs += 1
        slot = started + (int((clock() - started) // every_s) + 1) * every_s
        while not should_stop() and clock() < slot:
            sleep(min(0.2, max(slot - clock(), 0.0)))
    return runs
