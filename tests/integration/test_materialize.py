"""`fraudctl materialize` on both profiles: the embedded default and the native stack."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fraudctl.adapters.bus import open_bus
from fraudctl.adapters.offline import open_offline
from fraudctl.adapters.online import OnlineState
from fraudctl.config import load_settings
from fraudctl.contract import parse_utc_timestamp
from fraudctl.features import FEATURE_NAMES, Txn, compute_features
from fraudctl.ports import Record
from tests.conftest import RunCli


def produce(cli: RunCli, *args: str) -> dict[str, Any]:
    result = cli("produce", "--rate", "0", "--label-delay", "0", "--json", *args)
    assert result.code == 0, result.err
    summary: dict[str, Any] = result.json()
    return summary


def materialize(cli: RunCli, *args: str) -> dict[str, Any]:
    result = cli("materialize", "--json", *args)
    assert result.code == 0, result.err
    summary: dict[str, Any] = result.json()
    return summary


def read_topic(topic: str) -> list[Record]:
    settings = load_settings().settings
    consumer = open_bus(settings).consumer("reader-" + uuid.uuid4().hex, [topic])
    records: list[Record] = []
    started = last = time.monotonic()
    try:
        # A group join takes seconds on the stand-in broker: wait for a first record.
        while time.monotonic() - last < 3 or (not records and time.monotonic() - started < 20):
            batch = consumer.poll(50_000, 1.0)
            if batch:
                records += batch
                last = time.monotonic()
    finally:
        consumer.close()
    return records


def raw_events() -> dict[str, list[Txn]]:
    """Every valid event as the offline store holds it, per user, from the events table."""
    table = open_offline(load_settings().settings).read("events").to_pylist()
    by_user: dict[str, list[Txn]] = {}
    for row in table:
        by_user.setdefault(row["user_id"], []).append(
            Txn(
                row["event_ts"].timestamp(),
                row["transaction_amount"],
                row["country"],
                row["device"],
                row["event_id"],
            )
        )
    return by_user


def test_offline_online_and_brute_force_features_agree(
    platform: dict[str, str], cli: RunCli
) -> None:
    produce(cli, "--count", "12000", "--seed", "3", "--users", "800")
    summary = materialize(cli)
    assert summary["valid"] == summary["rows_written_offline"] == 12_000, summary
    settings = load_settings().settings
    offline = open_offline(settings)
    features = {row["event_id"]: row for row in offline.read("features").to_pylist()}
    assert len(features) == 12_000
    by_user = raw_events()
    online = OnlineState(settings, offline.uri)
    sample = random.Random(1).sample(sorted(features), 1000)
    windows = online.read(sorted({features[e]["user_id"] for e in sample}))
    events = {t.event_id: (user, t) for user, txns in by_user.items() for t in txns}
    mismatches = 0
    for event_id in sample:
        user, txn = events[event_id]
        brute = compute_features(sorted(by_user[user]), txn)
        offline_row = {name: features[event_id][name] for name in FEATURE_NAMES}
        online_answer = windows[user].features(txn)
        mismatches += not (offline_row == brute == online_answer)
    assert mismatches == 0


def test_dead_letters_are_exactly_the_invalid_records(
    platform: dict[str, str], cli: RunCli
) -> None:
    produced = produce(cli, "--count", "20000", "--invalid-rate", "0.01", "--seed", "4")
    summary = materialize(cli)
    assert summary["dead_lettered"] == produced["invalid_injected"] > 0
    assert summary["valid"] + summary["dead_lettered"] == produced["published"]
    settings = load_settings().settings
    dead = read_topic(settings.topic_dlq)
    assert len(dead) == produced["invalid_injected"]
    for record in dead:
        assert record.headers["reason"]
        assert record.headers["origin.topic"] == settings.topic_transactions.encode()
        assert int(record.headers["origin.offset"]) >= 0
        assert int(record.headers["origin.partition"]) >= 0


def test_a_second_run_changes_nothing_and_replays_are_skipped(
    platform: dict[str, str], cli: RunCli
) -> None:
    produce(cli, "--count", "3000", "--seed", "5")
    first = materialize(cli)
    assert first["valid"] == 3000, first
    settings = load_settings().settings
    offline = open_offline(settings)
    before = offline.read("features").num_rows
    again = materialize(cli)
    assert again["events_read"] == 0
    assert offline.read("features").num_rows == before

    # Replay the first 500 transactions as new messages: all recognised as duplicates.
    replayed = read_topic(settings.topic_transactions)[:500]
    producer = open_bus(settings).producer(delivery_timeout_s=30)
    producer.publish_batch(settings.topic_transactions, [(r.value, r.key) for r in replayed])
    assert producer.flush(30) == 0
    third = materialize(cli)
    assert third["events_read"] == 500
    assert third["duplicates_skipped"] == 500
    assert offline.read("features").num_rows == before


def test_killed_five_times_ends_exactly_once(
    platform: dict[str, str], cli: RunCli, tmp_path: Path
) -> None:
    produce(cli, "--count", "30000", "--seed", "6", "--users", "2000")
    # The bus holds every event before the kills: a shortfall below is materialize's.
    assert len(read_topic(load_settings().settings.topic_transactions)) == 30_000
    rng = random.Random(7)
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "fraudctl", "materialize", "--max-events", "6000", "--json"],
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(4.0, 9.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = materialize(cli)
    assert final["valid"] <= 30_000
    assert_each_event_once_offline_and_online(30_000, final)


def assert_each_event_once_offline_and_online(expected: int, context: object) -> None:
    """Every valid event is in the offline store exactly once, and every user's online
    window holds exactly that user's offline events."""
    settings = load_settings().settings
    table = open_offline(settings).read("events")
    counts = Counter(table.column("event_id").to_pylist())
    assert len(counts) == expected, json.dumps(context)
    assert max(counts.values()) == 1
    by_user = raw_events()
    windows = OnlineState(settings, open_offline(settings).uri).read(sorted(by_user))
    for user, txns in by_user.items():
        assert sorted(windows[user].events) == sorted(txns)


def test_backfill_rebuilds_a_lost_online_store(
    platform: dict[str, str], cli: RunCli, tmp_path: Path
) -> None:
    produce(cli, "--count", "4000", "--seed", "11", "--users", "300")
    materialize(cli)
    settings = load_settings().settings
    if platform["profile"] == "stack":
        from fraudctl.adapters.probes import redis_client

        redis_client(settings).flushdb()  # Redis lost everything
    else:
        (settings.home / "feast" / "online.db").unlink()
    by_user = raw_events()
    user = next(iter(by_user))
    lost = cli("features", "get", user, "--json")
    assert lost.code == 0, lost.err
    assert lost.json()["window_events"] == 0

    refused = cli("materialize", "--backfill", "2026-01-02", "2026-01-01", "--json")
    assert refused.code == 2
    assert "before START" in refused.err

    summary = materialize(cli, "--backfill", "2000-01-01", "2100-01-01")
    assert summary["users_restored"] == len(by_user)
    windows = OnlineState(settings, open_offline(settings).uri).read(sorted(by_user))
    for name, txns in by_user.items():
        assert sorted(windows[name].events) == sorted(txns)
    fresh = cli("materialize", "--check-freshness", "--json")
    assert fresh.code == 0, fresh.out


def test_features_get_answers_from_the_online_store(platform: dict[str, str], cli: RunCli) -> None:
    produce(cli, "--count", "2000", "--seed", "8", "--users", "50")
    materialize(cli)
    by_user = raw_events()
    user, txns = max(by_user.items(), key=lambda item: len(item[1]))
    newest = max(t.ts for t in txns)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(newest + 10))
    result = cli(
        "features",
        "get",
        user,
        "--at",
        at,
        "--amount",
        "50",
        "--country",
        "US",
        "--device",
        "web",
        "--json",
    )
    assert result.code == 0, result.err
    answer = json.loads(result.out)
    at_ts = parse_utc_timestamp(at).timestamp()
    expected = compute_features(sorted(txns), Txn(at_ts, 50.0, "US", "web"))
    assert answer["features"] == expected
    assert answer["window_events"] == len(txns)


def test_follow_serves_fresh_features_and_metrics(
    cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embedded profile only for now: on the stand-in Kafka broker the p95 write delay
    measured 1-2 s (the fetch latency and the offline flush on the same thread), above
    the 1 s target; see docs/materialize.md."""
    monkeypatch.setenv("FRAUDCTL_HOME", str(tmp_path / "home"))
    import urllib.request

    from fraudctl.stack.native import port_is_free

    produce(cli, "--count", "10", "--seed", "9")  # creates the topics
    port = next(p for p in range(29400, 29600) if port_is_free(p))
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fraudctl",
            "materialize",
            "--follow",
            "--flush-interval",
            "1",
            "--metrics-port",
            str(port),
            "--json",
        ],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        live = cli(
            "produce",
            "--rate",
            "1000",
            "--duration",
            "4",
            "--label-delay",
            "0",
            "--seed",
            "10",
            "--json",
        )
        assert live.code == 0, live.err
        wanted = b'fraudctl_materialize_events_total{outcome="valid"} 4010.0'
        deadline = time.monotonic() + 60
        text = b""
        while wanted not in text and time.monotonic() < deadline:
            time.sleep(0.5)
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    metrics = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.decode().splitlines()
        if line.startswith("fraudctl_")
    }
    assert metrics['fraudctl_materialize_events_total{outcome="valid"}'] == 4010
    # Every write's delay is measured from its event's time: the 4,000 live events within
    # seconds (the 10 produced before the follower started wait for it).  The 1 s p95 target
    # itself is a benchmark's (bench/materialize.py, `follow_freshness`): a test sharing
    # the cores with another worker's tests checks behaviour, not wall time.
    delay = "fraudctl_feature_write_delay_seconds"
    assert metrics[f"{delay}_count"] == metrics[f'{delay}_bucket{{le="+Inf"}}'] == 4010
    assert metrics[f'{delay}_bucket{{le="30.0"}}'] >= 4000
    summary = json.loads(out)
    assert summary["events_read"] == 4010
    table = open_offline(load_settings().settings).read("events")
    assert sorted(Counter(table.column("event_id").to_pylist()).values()) == [1] * 4010


def test_check_freshness_measures_from_event_timestamps(
    platform: dict[str, str], cli: RunCli
) -> None:
    produce(cli, "--count", "200", "--seed", "11")  # --rate 0: the newest event is now
    never = cli("materialize", "--check-freshness", "--json")
    assert never.code == 4  # events on the stream, nothing online yet
    assert never.json()["lag_s"] is None
    materialize(cli)
    fresh = cli("materialize", "--check-freshness", "--json")
    assert fresh.code == 0, fresh.out
    assert fresh.json()["lag_s"] == 0.0
    # New events, stamped seconds after the newest one online, not yet materialized.
    time.sleep(2)
    produce(cli, "--count", "5", "--seed", "12")
    stale = cli("materialize", "--check-freshness", "--freshness-slo", "1", "--json")
    assert stale.code == 4
    report = stale.json()
    assert report["lag_s"] == pytest.approx(
        report["stream_newest_event_ts"] - report["online_newest_event_ts"]
    )
    assert report["lag_s"] > 1
    assert report["status"] == "breach"
