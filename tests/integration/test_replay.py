"""`fraudctl produce --from FILE` on the native stack: a user's CSV and Parquet files
with mapped columns, labels and 2 % bad rows onto the real broker, exactly; then
materialize and train on what was replayed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fraudctl.contract import validate_bytes
from tests.conftest import RunCli
from tests.integration.conftest import REDIS_DBS, private_corner
from tests.integration.kafka_read import read_topic
from tests.integration.test_train import materialize_all, train
from tests.replay_files import MAP, Written, write_csv, write_parquet


def replay(cli: RunCli, written: Written, *args: str) -> dict[str, Any]:
    result = cli("produce", "--from", str(written.path), *MAP, "--label-delay", "0", "--json",
                 *args)  # fmt: skip
    assert result.code == 0, result.err
    summary: dict[str, Any] = result.json()
    return summary


def check_topics(bootstrap: str, env: dict[str, str], written: Written) -> list[Any]:
    """Events, labels and dead letters on the broker are exactly what the file held."""
    good = written.rows - len(written.bad)
    events = read_topic(bootstrap, env["FRAUDCTL_TOPIC_TRANSACTIONS"])
    assert len(events) == good
    assert all(validate_bytes(m.value()).ok for m in events)
    ids = {json.loads(m.value())["event_id"] for m in events}
    assert len(ids) == good
    labels = read_topic(bootstrap, env["FRAUDCTL_TOPIC_LABELS"])
    assert {json.loads(m.value())["event_id"] for m in labels} == ids
    assert sum(json.loads(m.value())["label"] for m in labels) == written.fraud
    letters = read_topic(bootstrap, env["FRAUDCTL_TOPIC_DLQ"])
    found = {}
    for message in letters:
        headers = {k: v.decode() for k, v in message.headers()}
        assert headers["origin.file"] == written.path.name
        found[int(headers["origin.row"])] = headers["reason"].split(":")[0]
    assert found == written.bad
    return events


def test_a_csv_file_replayed_onto_the_broker_then_materialized_and_trained(
    stack: dict[str, str], cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    base_url = stack["FRAUDCTL_REDIS_URL"].rsplit("/", 1)[0]
    env = private_corner(monkeypatch, tmp_path / "home", f"{base_url}/{next(REDIS_DBS) % 16}")
    written = write_csv(tmp_path / "card_history.csv", 3000)
    summary = replay(cli, written)
    good = written.rows - len(written.bad)
    assert summary["published"] == summary["acknowledged"] == good
    assert summary["labels_published"] == summary["labels_acknowledged"] == good
    assert summary["dead_lettered"] == summary["dead_letters_acknowledged"] == len(written.bad)
    assert summary["dlq_reasons"] == dict(Counter(written.bad.values()))
    check_topics(stack["FRAUDCTL_KAFKA_BOOTSTRAP"], env, written)

    materialize_all(cli, 2 * good)
    outcome = train(cli)
    assert outcome["rows"]["events_in_range"] == good, outcome["rows"]
    assert outcome["rows"]["labeled"] >= good * 0.9, outcome["rows"]
    assert outcome["metrics"]["roc_auc"] > 0.5, outcome["metrics"]


def test_a_parquet_file_replayed_twice_publishes_identical_records(
    stack: dict[str, str], cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    base_url = stack["FRAUDCTL_REDIS_URL"].rsplit("/", 1)[0]
    bootstrap = stack["FRAUDCTL_KAFKA_BOOTSTRAP"]
    written = write_parquet(tmp_path / "card_history.parquet", 2000)
    runs = []
    for name in ("first", "second"):
        env = private_corner(monkeypatch, tmp_path / name, f"{base_url}/{next(REDIS_DBS) % 16}")
        summary = replay(cli, written)
        assert summary["dead_lettered"] == len(written.bad)
        events = check_topics(bootstrap, env, written)
        runs.append(Counter((m.key(), m.value()) for m in events))
    assert runs[0] == runs[1]
