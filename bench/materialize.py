"""Benchmark: `fraudctl materialize` against a raw read of the same topics, same broker.

Starts the native broker, S3 server and Redis on free ports (nothing else), publishes
N transactions and their labels with `fraudctl produce`, then in one run:

1. baseline: a raw confluent-kafka consumer reading both topics from the beginning to
   the end and decoding every value with ``json.loads`` (the read ceiling: no
   validation, features, or writes);
2. batch: `fraudctl materialize --json` exactly as a user runs it (validate, dead-letter,
   deduplicate, compute features, Parquet to S3, windows to Redis through Feast, commit);
   events/s as the command reports it (from its first poll to its last commit) and
   also including process start-up;
3. follow: `fraudctl materialize --follow` (default flush interval) on fresh topics while
   `fraudctl produce --rate 1000 --duration D` publishes; freshness per event (online
   write time minus event time) from the follower's Prometheus histogram, p50/p95
   interpolated within buckets as Prometheus' ``histogram_quantile`` does, and the exact
   share of events within 1 s (a bucket edge).

    .venv/bin/python bench/materialize.py --events 200000 [--out bench/results/materialize.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import emit, fraudctl


def baseline(bootstrap: str, topics: list[str], transactions: int) -> float:
    """Raw confluent-kafka read of every record of ``topics`` + json.loads; events/s."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from fraudctl.adapters.kafka_bus import CONSUMER_FETCH

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-raw",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",  # as fraudctl's consumer: never skip ahead
            **CONSUMER_FETCH,  # the fetch tuning fraudctl's consumer uses
        }
    )
    metadata = consumer.list_topics(timeout=10)
    partitions = [
        TopicPartition(t, p, OFFSET_BEGINNING)
        for t in topics
        for p in metadata.topics[t].partitions
    ]
    consumer.assign(partitions)
    wanted = 2 * transactions  # events and their labels
    seen = 0
    started = last = time.perf_counter()
    while seen < wanted:
        for message in consumer.consume(20_000, 1.0):
            if message.error() is None:
                json.loads(message.value())
                seen += 1
                last = time.perf_counter()
        if time.perf_counter() - last > 60:
            raise RuntimeError(f"baseline: the broker delivered {seen} of {wanted} records")
    elapsed = time.perf_counter() - started
    consumer.close()
    return transactions / elapsed


def histogram(metrics_url: str, name: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of a Prometheus histogram."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    return sorted(buckets)


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket."""
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width)
        lower_bound, lower_count = bound, count
    return lower_bound


def follow_freshness(env: dict[str, str], seconds: int, rate: int) -> dict[str, Any]:
    from fraudctl.stack.native import free_ports

    port = free_ports(("metrics",))["metrics"]
    env = env | {
        "FRAUDCTL_TOPIC_TRANSACTIONS": "follow-tx",
        "FRAUDCTL_TOPIC_LABELS": "follow-labels",
        "FRAUDCTL_TOPIC_DLQ": "follow-dlq",
        "FRAUDCTL_CONSUMER_GROUP": "follow",
    }
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fraudctl",
            "materialize",
            "--follow",
            "--metrics-port",
            str(port),
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    name = "fraudctl_feature_write_delay_seconds"
    try:
        deadline = time.monotonic() + 120
        while True:  # the follower is ready once it serves metrics
            try:
                histogram(url, name)
                break
            except OSError:
                if follower.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the follower did not start") from None
                time.sleep(0.5)
        produced = fraudctl(
            "produce",
            "--rate",
            str(rate),
            "--duration",
            str(seconds),
            "--label-delay",
            "0",
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            buckets = histogram(url, name)
            if buckets and buckets[-1][1] >= produced["acknowledged"]:
                break
            time.sleep(0.5)
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=60)
    total = buckets[-1][1]
    within_1s = next(count for bound, count in buckets if bound == 1.0)
    return {
        "rate": rate,
        "seconds": seconds,
        "produced": produced["acknowledged"],
        "written_online": int(total),
        "p50_s": round(quantile(0.5, buckets), 3),
        "p95_s": round(quantile(0.95, buckets), 3),
        "share_within_1s": round(within_1s / total, 4) if total else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--follow-seconds", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from fraudctl.cli.main import main as fraudctl_main
    from fraudctl.stack.native import private_stack_env

    home = Path(tempfile.mkdtemp(prefix="bench-materialize-"))
    env = private_stack_env(home, ("kafka", "s3", "redis"))
    os.environ.update(env)
    only = [arg for name in ("kafka", "s3", "redis") for arg in ("--only", name)]
    if fraudctl_main(["stack", "up", "--native", *only, "--json"]) != 0:
        return 3
    try:
        from fraudctl.config import load_settings

        settings = load_settings().settings
        fraudctl("produce", "--rate", "0", "--label-delay", "0", "--count", str(args.events))
        raw = baseline(
            settings.kafka_bootstrap,
            [settings.topic_transactions, settings.topic_labels],
            args.events,
        )
        started = time.perf_counter()
        batch = fraudctl("materialize")
        wall = time.perf_counter() - started
        follow = follow_freshness(os.environ.copy(), args.follow_seconds, 1000)
    finally:
        fraudctl_main(["stack", "down", "--native", "--json"])

    result = {
        "benchmark": "materialize",
        "events": args.events,
        "baseline": "raw confluent-kafka read of transactions + labels with json.loads",
        "baseline_events_per_s": round(raw),
        "fraudctl_events_per_s": round(batch["events_per_s"]),
        "fraudctl_events_per_s_with_startup": round(batch["events_read"] / wall),
        "ratio_to_baseline": round(batch["events_per_s"] / raw, 3),
        "batch_summary": {
            k: batch[k] for k in ("events_read", "valid", "rows_written_offline", "batches")
        },
        "follow_freshness": follow,
        "targets": {"events_per_s": 20_000, "freshness_p95_s": 1.0},
        "cpus": os.cpu_count(),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
