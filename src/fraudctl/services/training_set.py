"""The point-in-time training set of `train`, and the evaluation window of `promote`
(:func:`labeled_events`, :func:`with_features`):

1. accepted events with ``since <= event_ts < until`` from the ``events`` snapshots;
2. their true labels from the ``labels`` snapshots, as known at ``as_of`` (``until``
   when given, else the start of the run): a label whose ``label_ts`` is later had not
   arrived, and its event is left out and counted as unlabeled.  A re-delivered label
   counts once (the newest before ``as_of`` wins);
3. the features of each labeled event retrieved *point-in-time* through Feast's
   historical retrieval from the ``event_features`` view: the entity rows are
   ``(event_id, event_timestamp)`` plus the event's own fields, and Feast joins the
   newest feature row at or before each event's time.  Those rows were computed by
   materialize from strictly earlier events only, so no feature sees its own event or
   anything after it.

Split by time, never shuffled: the newest ``test_fraction`` of the labeled events is the
holdout; of the rest, the newest 20 % is the validation slice on which the decision
threshold is chosen, and the older 80 % is what the model is fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fraudctl.adapters.feast_repo import EVENT_FEATURES_VIEW
from fraudctl.errors import Refused
from fraudctl.features import FEATURE_NAMES
from fraudctl.ports import FeatureStore, OfflineStore

MIN_LABELED_EVENTS = 1_000
VALIDATION_SHARE = 0.2
EVENT_COLUMNS = ("event_id", "event_ts", "transaction_amount", "country", "device")


@dataclass
class LabeledEvents:
    """Labeled events of the requested range as known at ``as_of`` (no features yet)."""

    frame: Any  # pandas: event_id, event_timestamp, raw fields, label
    events_in_range: int
    unlabeled: int
    as_of: datetime

    @property
    def watermark(self) -> str:
        """Changes whenever a retraining could learn something new."""
        if not len(self.frame):
            return "0"
        return f"{len(self.frame)}:{self.frame['label_ts'].max().isoformat()}"


@dataclass
class Split:
    fit: Any
    validation: Any
    holdout: Any

    def parts(self) -> list[tuple[str, Any]]:
        return [("fit", self.fit), ("validation", self.validation), ("holdout", self.holdout)]

    def counts(self) -> dict[str, dict[str, float]]:
        return {
            name: {"rows": len(part), "fraud_share": float(part["label"].mean())}
            for name, part in self.parts()
        }


def labeled_events(
    offline: OfflineStore,
    since: datetime | None,
    until: datetime | None,
    as_of: datetime,
) -> LabeledEvents:
    """Events of ``[since, until)`` joined with the labels that had arrived by ``as_of``."""
    import pyarrow.dataset as ds

    condition = None
    if since is not None:
        condition = ds.field("event_ts") >= since
    if until is not None:
        upper = ds.field("event_ts") < until
        condition = upper if condition is None else condition & upper
    events = _one_per_id(offline.read("events", EVENT_COLUMNS, condition), "event_ts")
    arrived = ds.field("label_ts") <= as_of
    # A re-delivered label counts once: the newest that had arrived.
    labels = _one_per_id(
        offline.read("labels", ("event_id", "label", "label_ts"), arrived), "label_ts"
    )
    if not events.num_rows or not labels.num_rows:
        return LabeledEvents(_empty_labeled(), events.num_rows, events.num_rows, as_of)
    joined = events.join(labels, "event_id", join_type="inner")
    joined = joined.rename_columns(
        ["event_timestamp" if name == "event_ts" else name for name in joined.column_names]
    )
    return LabeledEvents(
        joined.to_pandas(), events.num_rows, events.num_rows - joined.num_rows, as_of
    )


def _one_per_id(table: Any, newest_by: str) -> Any:
    """``table`` with one row per ``event_id``: the one with the largest ``newest_by``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not table.num_rows or pc.count_distinct(table["event_id"]).as_py() == table.num_rows:
        return table
    table = table.sort_by([("event_id", "ascending"), (newest_by, "descending")])
    ids = table["event_id"].combine_chunks()
    changed = pc.not_equal(ids[1:], ids[:-1])
    return table.filter(pa.concat_arrays([pa.array([True]), changed]))


def _empty_labeled() -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "event_id": pd.Series(dtype="string"),
            "event_timestamp": pd.Series(dtype="datetime64[us, UTC]"),
            "label": pd.Series(dtype="int64"),
            "label_ts": pd.Series(dtype="datetime64[us, UTC]"),
        }
    )


def with_features(feast: FeatureStore, labeled: LabeledEvents) -> tuple[Any, int]:
    """Feast's point-in-time join of the ``event_features`` view onto the labeled events;
    returns the rows sorted by event time and how many labeled events had no features
    (labels can arrive before materialize has written their event's features)."""
    if not len(labeled.frame):
        return labeled.frame, 0
    # Feast gets only the entity keys and times (carrying the other columns through its
    # join doubles its time); they are joined back by event_id, one row per event.
    entity = labeled.frame[["event_id", "event_timestamp"]]
    found = feast.historical_features(entity, EVENT_FEATURES_VIEW, FEATURE_NAMES)
    frame = labeled.frame.drop(columns=["label_ts"]).merge(
        found.drop(columns=["event_timestamp"]), on="event_id", how="left"
    )
    missing = frame[list(FEATURE_NAMES)].isna().any(axis=1)
    frame = frame.loc[~missing]
    frame = frame.sort_values(["event_timestamp", "event_id"], kind="stable").reset_index(drop=True)
    return frame, int(missing.sum())


def split_by_time(frame: Any, test_fraction: float) -> Split:
    """Newest ``test_fraction`` → holdout; of the rest, newest 20 % → validation."""
    rows = len(frame)
    holdout_rows = math.ceil(rows * test_fraction)
    train_rows = rows - holdout_rows
    validation_rows = math.ceil(train_rows * VALIDATION_SHARE)
    fit_rows = train_rows - validation_rows
    return Split(
        frame.iloc[:fit_rows],
        frame.iloc[fit_rows:train_rows],
        frame.iloc[train_rows:],
    )


def check_enough(labeled: LabeledEvents, rows: int, without_features: int, split: Split) -> None:
    """Exit 4 with what was found and what is needed."""
    if rows < MIN_LABELED_EVENTS:
        raise Refused(
            f"too little data: {rows:,} labeled events with features "
            f"({labeled.events_in_range:,} events in range, {labeled.unlabeled:,} without a "
            f"label yet, {without_features:,} without features); training needs at least "
            f"{MIN_LABELED_EVENTS:,}",
            hint="produce and materialize more (e.g. `fraudctl produce --rate 0 --count 20000 "
            "--label-delay 0 && fraudctl materialize`), or widen --since/--until",
        )
    for name, part in split.parts():
        classes = sorted(int(c) for c in part["label"].unique())
        if len(classes) < 2:
            present = "only fraud" if classes == [1] else "no fraud"
            raise Refused(
                f"too little data: the {name} split ({len(part):,} rows) has {present}; "
                "every split needs both classes",
                hint="train on a longer time range or more events, or change --test-fraction",
            )
