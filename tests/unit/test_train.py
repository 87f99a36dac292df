"""Training's pieces without services: threshold rule, metrics, time split, the label
join as known at a time, refusals, and the CLI's argument checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudctl.adapters.offline import open_offline
from fraudctl.adapters.tables import events_table, labels_table
from fraudctl.config import load_settings
from fraudctl.contract import LabelRecord, Transaction
from fraudctl.errors import Refused, UsageError
from fraudctl.generator import ulid_from
from fraudctl.model import choose_threshold, evaluate, recall_at_fpr
from fraudctl.ports import Record
from fraudctl.services.training_set import (
    MIN_LABELED_EVENTS,
    LabeledEvents,
    check_enough,
    labeled_events,
    split_by_time,
)
from fraudctl.timespec import parse_duration, parse_time_bound
from tests.conftest import RunCli

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_threshold_maximizes_f1_on_the_given_scores() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    # At 0.35: 2 true positives, 1 false positive → F1 0.8, the best of all cuts.
    assert choose_threshold(labels, scores) == pytest.approx(0.35)


def test_recall_at_one_percent_fpr() -> None:
    labels = np.array([0] * 200 + [1] * 10)
    scores = np.concatenate([np.linspace(0, 0.5, 200), np.linspace(0.3, 1.0, 10)])
    scores[199] = 0.99  # one legitimate event outranks most fraud: 1 FP = 0.5 % FPR
    # Allowed two false positives (1 % of 200): everything above the second-highest legit.
    second = np.sort(scores[:200])[-2]
    expected = float((scores[200:] > second).mean())
    assert recall_at_fpr(labels, scores) == pytest.approx(expected)
    metrics = evaluate(labels, scores, threshold=0.9)
    assert metrics["recall_at_threshold"] == pytest.approx(float((scores[200:] >= 0.9).mean()))
    assert set(metrics) >= {"roc_auc", "pr_auc", "brier", "precision_at_threshold"}


def _frame(rows: int, fraud_every: int = 10) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": [f"e{i:04d}" for i in range(rows)],
            "event_timestamp": [T0 + timedelta(seconds=i) for i in range(rows)],
            "label": [1 if i % fraud_every == 0 else 0 for i in range(rows)],
        }
    )


def test_split_is_by_time_newest_last_never_shuffled() -> None:
    split = split_by_time(_frame(100), 0.2)
    assert (len(split.fit), len(split.validation), len(split.holdout)) == (64, 16, 20)
    assert split.fit["event_timestamp"].max() < split.validation["event_timestamp"].min()
    assert split.validation["event_timestamp"].max() < split.holdout["event_timestamp"].min()
    assert list(split.holdout["event_id"]) == [f"e{i:04d}" for i in range(80, 100)]


def test_too_little_data_and_single_class_splits_are_refused() -> None:
    small = LabeledEvents(_frame(10), events_in_range=30, unlabeled=20, as_of=T0)
    with pytest.raises(Refused) as found:
        check_enough(small, 10, 0, split_by_time(small.frame, 0.2))
    assert "10 labeled events" in found.value.message
    assert f"at least {MIN_LABELED_EVENTS:,}" in found.value.message
    assert "20 without a label yet" in found.value.message

    rows = MIN_LABELED_EVENTS + 500
    frame = _frame(rows)
    frame.loc[frame.index >= rows - 400, "label"] = 0  # no fraud in the newest rows
    labeled = LabeledEvents(frame, rows, 0, T0)
    with pytest.raises(Refused, match=r"the holdout split .* has no fraud"):
        check_enough(labeled, rows, 0, split_by_time(frame, 0.2))


def test_labels_are_joined_as_known_at_a_time_and_counted_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FRAUDCTL_HOME", str(tmp_path))
    offline = open_offline(load_settings().settings)
    ids = [ulid_from(int(T0.timestamp() * 1000) + i, i) for i in range(3)]
    events = [
        Transaction(
            event_id=ids[i],
            user_id="user-1",
            transaction_amount=10.0,
            country="US",
            device="ios",
            event_ts=T0 + timedelta(minutes=i),
            label=None,
        )
        for i in range(3)
    ]
    records = [Record("transactions", 0, i, None, b"", {}, 0) for i in range(3)]
    offline.write_snapshot("events", "date=2026-11-01/hour=12", "a", events_table(events, records))

    def label(i: int, value: int, minutes: int) -> LabelRecord:
        return LabelRecord(
            event_id=ids[i],
            label=value,
            event_ts=T0 + timedelta(minutes=i),
            label_ts=T0 + timedelta(minutes=minutes),
        )

    # Event 0: labelled at +5 min, re-delivered as fraud at +50 min; event 1 at +30 min;
    # event 2 never.
    rows = [label(0, 0, 5), label(1, 1, 30), label(0, 1, 50), label(0, 1, 50)]
    offline.write_snapshot("labels", "date=2026-11-01/hour=12", "a", labels_table(rows))

    early = labeled_events(offline, None, None, T0 + timedelta(minutes=20))
    assert early.events_in_range == 3 and early.unlabeled == 2
    assert early.frame.set_index("event_id")["label"].to_dict() == {ids[0]: 0}

    late = labeled_events(offline, None, None, T0 + timedelta(hours=1))
    assert late.unlabeled == 1
    assert late.frame.set_index("event_id")["label"].to_dict() == {ids[0]: 1, ids[1]: 1}
    assert late.watermark != early.watermark

    ranged = labeled_events(
        offline, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2), T0 + timedelta(hours=1)
    )
    assert ranged.events_in_range == 1 and list(ranged.frame["event_id"]) == [ids[1]]


def test_duration_and_time_bounds() -> None:
    assert parse_duration("--every", "1h30m") == 5400
    assert parse_duration("--every", "90s") == 90
    assert parse_duration("--every", "2d") == 172800
    for bad in ("", "abc", "1x", "0s", "-1h"):
        with pytest.raises(UsageError):
            parse_duration("--every", bad)
    assert parse_time_bound("--since", "2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    end = parse_time_bound("--backfill END", "2026-11-01", end_of_day=True)
    assert end == datetime(2026, 11, 1, 23, 59, 59, 999999, tzinfo=UTC)
    with pytest.raises(UsageError, match="no time zone"):
        parse_time_bound("--until", "2026-11-01T10:00:00")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--model", "xgb"], "not a known model"),
        (["--every", "soon"], "not a duration"),
        (["--every", "1h", "--until", "2026-11-01"], "--every"),
        (["--since", "2026-11-02", "--until", "2026-11-01"], "not after --since"),
        (["--test-fraction", "0.9"], "--test-fraction"),
    ],
)
def test_bad_arguments_exit_2_before_touching_anything(
    cli: RunCli, args: list[str], says: str, tmp_path: Path
) -> None:
    result = cli("--home", str(tmp_path / "home"), "train", *args)
    assert result.code == 2, result.err
    assert says in result.err
    assert not (tmp_path / "home" / "mlflow.db").exists()
