"""``fraudctl train``: a scikit-learn pipeline fitted on the point-in-time training set
(:mod:`fraudctl.services.training_set`), an honest time-based evaluation, and one MLflow
run that registers a new model version under the alias ``candidate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraudctl.adapters.feast_repo import EVENT_FEATURES_VIEW
from fraudctl.errors import Refused
from fraudctl.features import FEATURE_NAMES, FEATURES_VERSION
from fraudctl.gates import Alias
from fraudctl.model import (
    MODEL_INPUTS,
    THRESHOLD_RULE,
    calibrate,
    choose_threshold,
    evaluate,
    make_pipeline,
    trusted_types,
)
from fraudctl.ports import FeatureStore, ModelRegistry, ModelRun, OfflineStore, Registered
from fraudctl.services.provenance import git_commit
from fraudctl.services.training_set import (
    VALIDATION_SHARE,
    LabeledEvents,
    Split,
    check_enough,
    labeled_events,
    split_by_time,
    with_features,
)

CANDIDATE_ALIAS = Alias.CANDIDATE
IMPORTANCE_ROWS = 10_000  # holdout rows sampled for permutation importances
IMPORTANCE_REPEATS = 3

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainOptions:
    model: str = "hgb"
    since: datetime | None = None
    until: datetime | None = None
    test_fraction: float = 0.2
    seed: int = 0


@dataclass
class TrainResult:
    run_id: str
    experiment_id: str
    model_name: str
    version: str
    alias: str
    model: str
    threshold: float
    metrics: dict[str, float]
    rows: dict[str, int]
    splits: dict[str, dict[str, float]]
    time_range: dict[str, str]
    feature_importances: dict[str, float]
    timings: dict[str, float]
    tracking_uri: str
    model_uri: str
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Skipped:
    """A ``--every`` round that did not train: no new labeled data, or too little."""

    watermark: str
    labeled: int
    reason: str = "no new labeled data since the previous run"
    skipped: bool = True
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_once(
    offline: OfflineStore,
    feast: FeatureStore,
    registry: ModelRegistry,
    options: TrainOptions,
    progress: Progress,
    labeled: LabeledEvents | None = None,
) -> TrainResult:
    """One training run, from the snapshots to a registered ``candidate``."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    progress("checking the registry")
    registry.check()
    if labeled is None:
        progress("reading events and labels")
        labeled = labeled_events(offline, options.since, options.until, _as_of(options))
    progress(f"retrieving point-in-time features for {len(labeled.frame):,} labeled events")
    frame, without_features = with_features(feast, labeled)
    timings["retrieval_s"] = time.monotonic() - started
    split = split_by_time(frame, options.test_fraction)
    check_enough(labeled, len(frame), without_features, split)

    fitted = fit_and_evaluate(split, options.model, options.seed, MODEL_INPUTS, progress)
    model, threshold, metrics = fitted.model, fitted.threshold, fitted.metrics
    holdout_labels, holdout_scores = fitted.holdout_labels, fitted.holdout_scores
    timings["fit_s"] = fitted.fit_s
    importances_started = time.monotonic()
    importances = _importances(model, split.holdout, options.seed)
    timings["evaluate_s"] = fitted.evaluate_s + time.monotonic() - importances_started

    rows = {
        "events_in_range": labeled.events_in_range,
        "unlabeled": labeled.unlabeled,
        "without_features": without_features,
        "labeled": len(frame),
        "fit": len(split.fit),
        "validation": len(split.validation),
        "holdout": len(split.holdout),
    }
    time_range = {
        "since": options.since.isoformat() if options.since else "",
        "until": options.until.isoformat() if options.until else "",
        "as_of": labeled.as_of.isoformat(),
        "first_event": frame["event_timestamp"].iloc[0].isoformat(),
        "last_event": frame["event_timestamp"].iloc[-1].isoformat(),
        "holdout_from": split.holdout["event_timestamp"].iloc[0].isoformat(),
    }
    progress("logging the run and registering the model")
    log_started = time.monotonic()
    registered = _log_run(
        registry,
        offline,
        options,
        model,
        split,
        threshold,
        metrics,
        rows,
        time_range,
        importances,
        (holdout_labels, holdout_scores),
        labeled.watermark,
    )
    timings["log_s"] = time.monotonic() - log_started
    timings["total_s"] = time.monotonic() - started
    return TrainResult(
        run_id=registered.run_id,
        experiment_id=registered.experiment_id,
        model_name=registry.model_name,
        version=registered.version,
        alias=CANDIDATE_ALIAS,
        model=options.model,
        threshold=threshold,
        metrics=metrics,
        rows=rows,
        splits=split.counts(),
        time_range=time_range,
        feature_importances=importances,
        timings=timings,
        tracking_uri=registry.where,
        model_uri=f"models:/{registry.model_name}@{CANDIDATE_ALIAS}",
    )


@dataclass
class Fitted:
    model: Any  # the calibrated pipeline
    threshold: float
    holdout_labels: Any
    holdout_scores: Any
    metrics: dict[str, float]
    fit_s: float
    evaluate_s: float


def fit_and_evaluate(
    split: Split,
    kind: str,
    seed: int,
    inputs: Sequence[str] = MODEL_INPUTS,
    progress: Progress | None = None,
) -> Fitted:
    """Fit ``kind`` on the fit slice, calibrate it and choose the threshold on the
    validation slice, and measure it on the holdout — over the columns ``inputs`` (the
    raw-fields baseline of the quality bar passes :data:`~fraudctl.model.RAW_FIELDS`)."""
    say = progress or (lambda _message: None)
    columns = list(inputs)
    say(f"fitting {kind} on {len(split.fit):,} rows")
    started = time.monotonic()
    pipeline = make_pipeline(kind, seed, columns)
    pipeline.fit(split.fit[columns], split.fit["label"].to_numpy())
    fit_s = time.monotonic() - started

    say("calibrating and choosing the threshold on the validation slice")
    started = time.monotonic()
    validation_labels = split.validation["label"].to_numpy()
    model = calibrate(pipeline, split.validation[columns], validation_labels)
    threshold = choose_threshold(
        validation_labels, model.predict_proba(split.validation[columns])[:, 1]
    )
    say("evaluating on the time-based holdout")
    holdout_labels = split.holdout["label"].to_numpy()
    holdout_scores = model.predict_proba(split.holdout[columns])[:, 1]
    metrics = evaluate(holdout_labels, holdout_scores, threshold)
    return Fitted(
        model, threshold, holdout_labels, holdout_scores, metrics, fit_s,
        time.monotonic() - started,
    )  # fmt: skip


def _as_of(options: TrainOptions) -> datetime:
    return options.until if options.until is not None else datetime.now(UTC)


def _importances(pipeline: Any, holdout: Any, seed: int) -> dict[str, float]:
    """Permutation importance (drop in ROC AUC) on a sample of the holdout: the same
    measure for every model kind, on data the model never saw."""
    from sklearn.inspection import permutation_importance

    sample = holdout
    if len(sample) > IMPORTANCE_ROWS:
        sample = holdout.sample(IMPORTANCE_ROWS, random_state=seed)
    if sample["label"].nunique() < 2:
        return dict.fromkeys(MODEL_INPUTS, 0.0)
    found = permutation_importance(
        pipeline,
        sample[list(MODEL_INPUTS)],
        sample["label"].to_numpy(),
        scoring="roc_auc",
        n_repeats=IMPORTANCE_REPEATS,
        random_state=seed,
    )
    pairs = zip(MODEL_INPUTS, found.importances_mean.tolist(), strict=True)
    return dict(sorted(((name, float(value)) for name, value in pairs), key=lambda p: -p[1]))


def _log_run(
    registry: ModelRegistry,
    offline: OfflineStore,
    options: TrainOptions,
    model: Any,
    split: Split,
    threshold: float,
    metrics: dict[str, float],
    rows: dict[str, int],
    time_range: dict[str, str],
    importances: dict[str, float],
    holdout: tuple[Any, Any],
    watermark: str,
) -> Registered:
    """One tracked run: params, metrics, plots, the model with its input example, lineage
    tags; a new registered version aliased ``candidate``."""
    from fraudctl.services import train_plots

    inputs = list(MODEL_INPUTS)
    classifier = model.estimator.estimator.named_steps["classify"]  # calibrated(frozen(pipeline))
    shares = {name: part["fraud_share"] for name, part in split.counts().items()}
    labels, scores = holdout
    figures = train_plots.figures(labels, scores, threshold, importances)
    run = ModelRun(
        model=model,
        trusted_types=trusted_types(options.model),
        example=split.holdout[inputs].head(5),
        params={
            "model": options.model,
            "test_fraction": options.test_fraction,
            "validation_share": VALIDATION_SHARE,
            "seed": options.seed,
            "threshold_rule": THRESHOLD_RULE,
            "threshold": threshold,
            "since": time_range["since"] or "(all)",
            "until": time_range["until"] or "(all)",
            "classifier": type(classifier).__name__,
            **{
                f"classifier.{key}": value
                for key, value in sorted(classifier.get_params().items())
                if isinstance(value, (int, float, str, bool)) or value is None
            },
        },
        metrics={
            **metrics,
            **{f"rows_{name}": float(value) for name, value in rows.items()},
            **{f"fraud_share_{name}": share for name, share in shares.items()},
        },
        tags=_lineage(offline, rows, time_range, watermark),
        metadata={
            "threshold": threshold,
            "threshold_rule": THRESHOLD_RULE,
            "inputs": inputs,
            "features_version": FEATURES_VERSION,
        },
        version_tags={
            "threshold": str(threshold),
            "roc_auc": str(metrics["roc_auc"]),
            "features_version": FEATURES_VERSION,
        },
        figures=figures,
        documents={"feature_importances.json": importances},
        # The holdout's scores as training saw them: what a reloaded model must
        # reproduce, and the rows to compare another model on.
        datasets={
            context: part[["event_id", "event_timestamp", *inputs, "label"]]
            for context, part in (
                ("training", split.fit),
                ("validation", split.validation),
                ("test", split.holdout),
            )
        },
        tables={
            "predictions/holdout.parquet": split.holdout[
                ["event_id", "event_timestamp", "label"]
            ].assign(score=scores)
        },
    )
    try:
        registered = registry.register(run)
    finally:
        for figure in figures.values():
            train_plots.close(figure)
    registry.set_alias(CANDIDATE_ALIAS, registered.version)
    return registered


def _lineage(
    offline: OfflineStore, rows: dict[str, int], time_range: dict[str, str], watermark: str
) -> dict[str, str]:
    tags = {
        "fraudctl.snapshots.events": offline.table_uri("events"),
        "fraudctl.snapshots.labels": offline.table_uri("labels"),
        "fraudctl.snapshots.features": offline.table_uri("features"),
        "fraudctl.feature_view": EVENT_FEATURES_VIEW,
        "fraudctl.feature_names": ",".join(FEATURE_NAMES),
        "fraudctl.features_version": FEATURES_VERSION,
        "fraudctl.model_inputs": ",".join(MODEL_INPUTS),
        "fraudctl.labels_watermark": watermark,
        **{f"fraudctl.time.{key}": value for key, value in time_range.items() if value},
        **{f"fraudctl.rows.{key}": str(value) for key, value in rows.items()},
    }
    commit = git_commit()
    if commit:
        tags["fraudctl.git_commit"] = commit
    return tags


def retrain_every(
    offline: OfflineStore,
    feast: FeatureStore,
    registry: ModelRegistry,
    options: TrainOptions,
    interval_s: float,
    progress: Progress,
    report: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool],
) -> int:
    """Train now, then every ``interval_s`` seconds when labeled data has changed since
    the previous run (a round without new labels is reported as skipped, as is a round
    with too little data).  Stops between rounds when ``should_stop()``; returns the
    number of runs that registered a version.  A backend outage ends the loop (exit 3)."""
    trained = 0
    previous: str | None = None
    while not should_stop():
        progress("reading events and labels")
        labeled = labeled_events(offline, options.since, None, datetime.now(UTC))
        if previous is not None and labeled.watermark == previous:
            report(Skipped(labeled.watermark, len(labeled.frame)).as_dict())
        else:
            try:
                result = train_once(offline, feast, registry, options, progress, labeled)
            except Refused as exc:
                report(Skipped(labeled.watermark, len(labeled.frame), exc.message).as_dict())
            else:
                trained += 1
                report(result.as_dict())
            previous = labeled.watermark
        deadline = time.monotonic() + interval_s
        upcoming = datetime.fromtimestamp(time.time() + interval_s, UTC)
        progress(f"next round at {upcoming.isoformat(timespec='seconds')} (Ctrl-C stops)")
        while time.monotonic() < deadline and not should_stop():
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
    return trained
