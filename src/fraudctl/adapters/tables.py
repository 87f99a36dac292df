"""Arrow schemas and builders of the offline tables (one definition, used by every
writer, so every file of a table has the same column types)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fraudctl.contract import LabelRecord, Transaction
from fraudctl.features import FEATURE_NAMES, UserWindow
from fraudctl.ports import Record


def _timestamp() -> Any:
    import pyarrow as pa

    return pa.timestamp("us", tz="UTC")


def events_table(events: Sequence[Transaction], records: Sequence[Record]) -> Any:
    """Raw accepted events with where they were read from."""
    import pyarrow as pa

    return pa.table(
        {
            "event_id": pa.array([e.event_id for e in events], pa.string()),
            "user_id": pa.array([e.user_id for e in events], pa.string()),
            "transaction_amount": pa.array([e.transaction_amount for e in events], pa.float64()),
            "country": pa.array([e.country for e in events], pa.string()),
            "device": pa.array([e.device for e in events], pa.string()),
            "event_ts": pa.array([e.event_ts for e in events], _timestamp()),
            "origin_partition": pa.array([r.partition for r in records], pa.int64()),
            "origin_offset": pa.array([r.offset for r in records], pa.int64()),
        }
    )


def features_table(rows: Sequence[dict[str, Any]], events: Sequence[Transaction]) -> Any:
    """One row per event: its features as of its own time (``event_timestamp``)."""
    import pyarrow as pa

    columns: dict[str, Any] = {
        "event_id": pa.array([r["event_id"] for r in rows], pa.string()),
        "user_id": pa.array([r["user_id"] for r in rows], pa.string()),
    }
    for name in FEATURE_NAMES:
        columns[name] = pa.array([r[name] for r in rows], pa.float64())
    columns["event_timestamp"] = pa.array([e.event_ts for e in events], _timestamp())
    return pa.table(columns)


def labels_table(labels: Sequence[LabelRecord]) -> Any:
    import pyarrow as pa

    return pa.table(
        {
            "event_id": pa.array([x.event_id for x in labels], pa.string()),
            "label": pa.array([x.label for x in labels], pa.int64()),
            "event_ts": pa.array([x.event_ts for x in labels], _timestamp()),
            "label_ts": pa.array([x.label_ts for x in labels], _timestamp()),
        }
    )


def predictions_table(rows: Sequence[dict[str, Any]]) -> Any:
    """The prediction log: one row per scored request (every replica, with or without a
    shadow, writes this schema, so the files read back as one table)."""
    import pyarrow as pa

    def column(name: str, kind: Any) -> Any:
        return pa.array([row[name] for row in rows], kind)

    columns: dict[str, Any] = {
        "event_id": column("event_id", pa.string()),
        "scored_at": column("scored_at", _timestamp()),
        "transaction_amount": column("transaction_amount", pa.float64()),
        "country": column("country", pa.string()),
        "device": column("device", pa.string()),
    }
    for name in FEATURE_NAMES:
        columns[name] = column(name, pa.float64())
    columns |= {
        "score": column("score", pa.float64()),
        "decision": column("decision", pa.string()),
        "variant": column("variant", pa.string()),
        "model_version": column("model_version", pa.string()),
        "trace_id": column("trace_id", pa.string()),
        "shadow_version": column("shadow_version", pa.string()),
        "shadow_score": column("shadow_score", pa.float64()),
    }
    return pa.table(columns)


def state_frame(windows: dict[str, UserWindow]) -> Any:
    """One row per user: the window as JSON and its newest event time."""
    import pandas as pd

    users = list(windows)
    newest = [windows[u].newest or 0.0 for u in users]
    return pd.DataFrame(
        {
            "user_id": users,
            "window": [windows[u].to_json() for u in users],
            "newest_ts": newest,
            "state_ts": pd.to_datetime(newest, unit="s", utc=True),
            # Breaks ties between snapshots of one state time (a late event changes the
            # window without moving its newest event): the later write wins.
            "created_ts": pd.Timestamp.now(tz="UTC"),
        }
    )
