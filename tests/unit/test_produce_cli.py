"""`fraudctl produce` on the embedded default (the durable file log)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fraudctl.adapters.filelog import FileLogBus
from fraudctl.contract import parse_utc_timestamp, validate_bytes
from fraudctl.generator import GeneratorOptions
from fraudctl.ports import Record
from fraudctl.services.produce import Clock, ProducePlan, produce
from tests.conftest import RunCli

START = "2026-05-01T00:00:00Z"


def read_all(home: Path, topic: str) -> list[Record]:
    consumer = FileLogBus(home / "bus").consumer("test-reader", [topic])
    records: list[Record] = []
    while batch := consumer.poll(100_000, 0.05):
        records += batch
    return records


def test_produces_events_and_labels_to_the_embedded_bus(cli: RunCli, tmp_path: Path) -> None:
    result = cli(
        "--home",
        str(tmp_path),
        "produce",
        "--count",
        "3000",
        "--rate",
        "0",
        "--label-delay",
        "0",
        "--json",
    )
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["bus"] == "filelog"
    assert summary["published"] == summary["acknowledged"] == 3000
    assert summary["labels_acknowledged"] == 3000
    transactions = read_all(tmp_path, "transactions")
    labels = read_all(tmp_path, "labels")
    assert len(transactions) == len(labels) == 3000
    assert all(validate_bytes(r.value).ok for r in transactions)
    assert len({json.loads(r.value)["event_id"] for r in transactions}) == 3000
    newest = max(parse_utc_timestamp(json.loads(r.value)["event_ts"]) for r in transactions)
    assert abs(newest.timestamp() - time.time()) < 60  # --rate 0 runs end now


def test_same_seed_and_start_give_identical_topics(cli: RunCli, tmp_path: Path) -> None:
    runs = []
    for name, start in (("a", START), ("b", START), ("c", "2026-05-02T00:00:00Z")):
        home = tmp_path / name
        args = (
            "--home",
            str(home),
            "produce",
            "--count",
            "2000",
            "--rate",
            "0",
            "--seed",
            "5",
            "--start",
            start,
            "--label-delay",
            "0",
            "--json",
        )
        assert cli(*args).code == 0
        runs.append([json.loads(r.value) for r in read_all(home, "transactions")])
    key = lambda r: r["event_id"][10:]  # noqa: E731 - ULID randomness, not its time
    a, b, c = (sorted(run, key=key) for run in runs)
    assert a == b
    strip = [{k: v for k, v in r.items() if k not in ("event_ts", "event_id")} for r in a]
    assert strip == [{k: v for k, v in r.items() if k not in ("event_ts", "event_id")} for r in c]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--count", "5", "--duration", "1"), "not both"),
        (("--rate", "0"), "--rate 0 needs --count"),
        (("--count", "5", "--start", "2999-01-01T00:00:00Z"), "in the future"),
        (("--count", "5", "--start", "yesterday"), "--start"),
        (("--count", "5", "--drift", "amount=-2"), "--drift"),
        (("--count", "5", "--invalid-rate", "1.5"), "invalid-rate"),
        (("--count", "0"), "count"),
    ],
)
def test_bad_options_exit_2_naming_the_cause(
    cli: RunCli, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = cli("--home", str(tmp_path), "produce", *args)
    assert result.code == 2
    assert message in result.err


def test_labels_follow_after_the_delay(cli: RunCli, tmp_path: Path) -> None:
    started = time.monotonic()
    result = cli(
        "--home",
        str(tmp_path),
        "produce",
        "--count",
        "200",
        "--rate",
        "400",
        "--label-delay",
        "1.5",
        "--json",
    )
    assert result.code == 0
    assert time.monotonic() - started >= 1.5  # waited for the truth it owed
    labels = [json.loads(r.value) for r in read_all(tmp_path, "labels")]
    assert len(labels) == 200
    for label in labels:
        lag = parse_utc_timestamp(label["label_ts"]) - parse_utc_timestamp(label["event_ts"])
        assert lag.total_seconds() == pytest.approx(1.5)


def test_interrupt_stops_flushes_and_reports(tmp_path: Path) -> None:
    bus = FileLogBus(tmp_path / "bus")
    bus.ensure_topics(["transactions", "labels"], 2)
    producer = bus.producer(delivery_timeout_s=5)
    calls = {"n": 0}

    def stop_after_a_while() -> bool:
        calls["n"] += 1
        return calls["n"] > 20

    plan = ProducePlan(
        rate=1000,
        count=None,
        duration=None,
        label_delay=3600,
        invalid_rate=0,
        start=time.time(),
        topic_transactions="transactions",
        topic_labels="labels",
        delivery_timeout_s=5,
    )
    summary = produce(producer, GeneratorOptions(), plan, should_stop=stop_after_a_while)
    assert summary.stopped_by == "interrupt"
    assert summary.published == summary.acknowledged > 0
    assert summary.labels_pending == summary.published  # not due: reported, not faked
    assert summary.labels_published == 0
    assert len(read_all(tmp_path, "transactions")) == summary.published


def test_drift_option_shifts_the_stream(cli: RunCli, tmp_path: Path) -> None:
    result = cli(
        "--home",
        str(tmp_path),
        "produce",
        "--count",
        "5000",
        "--rate",
        "0",
        "--label-delay",
        "0",
        "--drift",
        "country=BR:0.5",
        "--json",
    )
    assert result.code == 0
    assert result.json()["drift"] == "country=BR:0.5"
    records = [json.loads(r.value) for r in read_all(tmp_path, "transactions")]
    assert sum(r["country"] == "BR" for r in records) / len(records) > 0.5


def test_duration_hands_over_every_event_due_before_the_deadline(tmp_path: Path) -> None:
    """A late last tick must not cut the run short: rate x duration events, exactly."""
    bus = FileLogBus(tmp_path / "bus")
    bus.ensure_topics(["transactions", "labels"], 2)
    ticks = iter([0.0, 0.5, 1.7, 2.9, 3.2] + [3.3] * 1000)  # the clock jumps past the end
    clock = Clock(monotonic=lambda: next(ticks), wall=time.time, sleep=lambda _s: None)
    plan = ProducePlan(
        rate=1000,
        count=None,
        duration=3.0,
        label_delay=0,
        invalid_rate=0,
        start=time.time() - 10,
        topic_transactions="transactions",
        topic_labels="labels",
        delivery_timeout_s=5,
    )
    summary = produce(bus.producer(delivery_timeout_s=5), GeneratorOptions(), plan, clock=clock)
    assert summary.published == 3000
    assert summary.stopped_by == "duration"
