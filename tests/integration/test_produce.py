"""`fraudctl produce` against the real native broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from fraudctl.config import load_settings
from fraudctl.contract import validate_bytes
from fraudctl.stack.native import StackState
from tests.conftest import RunCli
from tests.integration.kafka_read import read_topic, wait_until_connected


@pytest.fixture
def topics(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fresh topic names per test, so tests never read each other's records."""
    suffix = uuid.uuid4().hex[:8]
    names = {"tx": f"tx-{suffix}", "labels": f"labels-{suffix}", "dlq": f"dlq-{suffix}"}
    monkeypatch.setenv("FRAUDCTL_TOPIC_TRANSACTIONS", names["tx"])
    monkeypatch.setenv("FRAUDCTL_TOPIC_LABELS", names["labels"])
    monkeypatch.setenv("FRAUDCTL_TOPIC_DLQ", names["dlq"])
    return names


def test_20000_events_and_their_labels_arrive_exactly(
    stack: dict[str, str], topics: dict[str, str], cli: RunCli
) -> None:
    result = cli(
        "produce", "--count", "20000", "--rate", "0", "--label-delay", "0", "--seed", "11", "--json"
    )
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["published"] == summary["acknowledged"] == 20_000
    assert summary["labels_published"] == summary["labels_acknowledged"] == 20_000
    assert summary["not_acknowledged"] == summary["failed"] == 0

    bootstrap = stack["FRAUDCTL_KAFKA_BOOTSTRAP"]
    transactions = read_topic(bootstrap, topics["tx"])
    labels = read_topic(bootstrap, topics["labels"])
    assert len(transactions) == 20_000
    assert len(labels) == 20_000
    ids = [json.loads(m.value())["event_id"] for m in transactions]
    assert len(set(ids)) == 20_000
    for message in transactions:
        assert validate_bytes(message.value()).ok
        assert message.key() == json.loads(message.value())["user_id"].encode()
    truth = {json.loads(m.value())["event_id"]: json.loads(m.value())["label"] for m in labels}
    assert set(truth) == set(ids)
    share = sum(truth.values()) / len(truth)
    assert 0.015 <= share <= 0.025, share  # --fraud-rate 0.02


@pytest.mark.parametrize("rate", [200, 2000])
def test_rate_is_held_within_one_percent(
    stack: dict[str, str], topics: dict[str, str], rate: int
) -> None:
    from fraudctl.adapters.bus import open_bus
    from fraudctl.generator import GeneratorOptions
    from fraudctl.services.produce import ProducePlan, produce

    settings = load_settings().settings
    bus = open_bus(settings)
    bus.ensure_topics([topics["tx"], topics["labels"]], 3)
    producer = bus.producer(delivery_timeout_s=30)
    stamps: list[float] = []
    publish_batch = producer.publish_batch

    def timed_publish(topic: str, messages: list[tuple[bytes, bytes | None]]) -> None:
        if topic == topics["tx"]:
            stamps.extend([time.monotonic()] * len(messages))
        publish_batch(topic, messages)

    producer.publish_batch = timed_publish  # type: ignore[method-assign]
    plan = ProducePlan(
        rate=rate,
        count=None,
        duration=6.0,
        label_delay=0,
        invalid_rate=0,
        start=time.time(),
        topic_transactions=topics["tx"],
        topic_labels=topics["labels"],
        delivery_timeout_s=30,
    )
    summary = produce(producer, GeneratorOptions(seed=1), plan)
    assert summary.acknowledged == summary.published == rate * 6
    t0 = stamps[0]
    for start in (0.0, 0.5, 1.0):  # every 5-second window inside the run
        n = sum(1 for s in stamps if t0 + start <= s < t0 + start + 5.0)
        assert abs(n - rate * 5) <= 0.01 * rate * 5, (start, n)


def produce_in_background(out: Path, *args: str) -> subprocess.Popen[bytes]:
    """`fraudctl produce --json …` as its own process, its summary going to ``out``."""
    return subprocess.Popen(
        [sys.executable, "-m", "fraudctl", "produce", "--label-delay", "0", "--json", *args],
        stdout=out.open("w"),
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )


def the_broker() -> int:
    return StackState.load(load_settings().settings).services["kafka"].pid


def test_broker_paused_mid_run_loses_and_duplicates_nothing(
    stack: dict[str, str], topics: dict[str, str], tmp_path: Path
) -> None:
    broker = the_broker()
    out = tmp_path / "summary.json"
    proc = produce_in_background(out, "--count", "50000", "--rate", "5000")
    time.sleep(3)
    os.kill(broker, signal.SIGSTOP)
    try:
        time.sleep(10)
    finally:
        os.kill(broker, signal.SIGCONT)
    _, err = proc.communicate(timeout=240)
    summary = json.loads(out.read_text())
    assert proc.returncode == 0, (err, summary)
    assert summary["acknowledged"] == 50_000
    transactions = read_topic(stack["FRAUDCTL_KAFKA_BOOTSTRAP"], topics["tx"])
    counts = Counter(json.loads(m.value())["event_id"] for m in transactions)
    assert len(counts) == 50_000
    assert max(counts.values()) == 1  # exactly once: the idempotent producer held


def test_invalid_records_on_the_topic_are_exactly_the_injected_ones(
    stack: dict[str, str], topics: dict[str, str], cli: RunCli
) -> None:
    result = cli(
        "produce",
        "--count",
        "20000",
        "--rate",
        "0",
        "--label-delay",
        "0",
        "--invalid-rate",
        "0.05",
        "--json",
    )
    assert result.code == 0, result.err
    summary = result.json()
    assert 800 < summary["invalid_injected"] < 1200
    transactions = read_topic(stack["FRAUDCTL_KAFKA_BOOTSTRAP"], topics["tx"])
    assert len(transactions) == 20_000
    invalid = [m for m in transactions if not validate_bytes(m.value()).ok]
    assert len(invalid) == summary["invalid_injected"]
    assert len(summary["invalid_by_kind"]) == 7
    labels = read_topic(stack["FRAUDCTL_KAFKA_BOOTSTRAP"], topics["labels"])
    assert len(labels) == 20_000 - summary["invalid_injected"]  # truth only for real events


def test_unreachable_broker_exits_3_naming_the_address(
    stack: dict[str, str], cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUDCTL_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    result = cli("produce", "--count", "10", "--json")
    assert result.code == 3
    assert "127.0.0.1:9" in result.json()["error"]["message"]


def test_broker_gone_past_the_delivery_timeout_is_reported_exactly(
    stack: dict[str, str], topics: dict[str, str], tmp_path: Path
) -> None:
    broker = the_broker()
    out = tmp_path / "summary.json"
    proc = produce_in_background(
        out, "--count", "8000", "--rate", "1000", "--delivery-timeout", "2"
    )
    # Stopped once the producer has reached the broker (its start-up took more than a
    # fixed 1.5 s on a loaded machine: the broker was gone before the run began).
    wait_until_connected(proc.pid, int(stack["FRAUDCTL_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1]))
    time.sleep(1.0)  # a second of the 8 s run acknowledged, the rest not
    os.kill(broker, signal.SIGSTOP)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        os.kill(broker, signal.SIGCONT)
    summary = json.loads(out.read_text())
    assert proc.returncode == 3, err
    assert summary["not_acknowledged"] > 0
    assert summary["published"] == 8000
    assert summary["acknowledged"] + summary["not_acknowledged"] >= 8000 - summary["failed"]
    assert b"not acknowledged" in err
    transactions = read_topic(stack["FRAUDCTL_KAFKA_BOOTSTRAP"], topics["tx"])
    assert len(transactions) >= summary["acknowledged"]  # nothing acknowledged was lost
