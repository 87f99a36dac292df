"""Benchmark: `fraudctl produce --rate 0` against a raw confluent-kafka loop, same broker.

Starts the native Kafka-API broker on a free port (nothing else), then in one run:

1. baseline: a raw idempotent (acks=all) confluent-kafka producer publishing
   pre-serialized transaction bytes, keyed by user, as fast as it can, until flushed;
2. fraudctl: `fraudctl produce --rate 0 --label-delay 0 --count N --json` as a user runs
   it (generate, validate through the contract, serialize, publish events and their
   labels, wait for every acknowledgement).

Prints messages/s of the baseline, acknowledged events/s (and messages/s, labels
included) of fraudctl, and the ratio; writes the figures as JSON with --out.

    .venv/bin/python bench/produce.py --events 500000 [--out bench/results/produce.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit


def baseline(bootstrap: str, topic: str, n: int, *, callbacks: bool = False) -> float:
    """Raw confluent-kafka: pre-serialized payloads, idempotent, acks=all.

    ``callbacks=False`` reports only failed deliveries (what fraudctl does; the fastest
    raw loop); ``callbacks=True`` calls a Python delivery callback per message."""
    from confluent_kafka import Producer

    from fraudctl.adapters.kafka_bus import PRODUCER_TUNING
    from fraudctl.generator import GeneratorOptions, TransactionGenerator, transaction_json

    generator = TransactionGenerator(GeneratorOptions(seed=99), time.time() - n / 100, 100)
    payloads = []
    for _ in range(min(n, 100_000)):
        event = generator.next()
        payloads.append((transaction_json(event), event.user_id.encode()))
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            **PRODUCER_TUNING,  # the same tuning fraudctl's producer uses
            "delivery.report.only.error": not callbacks,
        }
    )
    acked = [0]

    def on_delivery(error: object, _message: object) -> None:
        acked[0] += error is None

    count = len(payloads)
    started = time.perf_counter()
    if callbacks:
        for i in range(n):
            value, key = payloads[i % count]
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.05)
                producer.produce(topic, value, key, on_delivery=on_delivery)
            if i % 10_000 == 0:
                producer.poll(0)
    else:
        produce = producer.produce
        for i in range(n):
            value, key = payloads[i % count]
            try:
                produce(topic, value, key)
            except BufferError:
                producer.poll(0.05)
                produce(topic, value, key)
            if i % 10_000 == 0:
                producer.poll(0)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - started
    if remaining or (callbacks and acked[0] != n):
        raise RuntimeError(f"baseline: {remaining} messages not acknowledged")
    return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from fraudctl.cli.main import main as fraudctl_main
    from fraudctl.stack.native import private_stack_env

    home = Path(tempfile.mkdtemp(prefix="bench-produce-"))
    env = private_stack_env(home, ("kafka",))
    os.environ.update(env)
    if fraudctl_main(["stack", "up", "--native", "--only", "kafka", "--json"]) != 0:
        return 3
    try:
        bootstrap = env["FRAUDCTL_KAFKA_BOOTSTRAP"]
        raw = baseline(bootstrap, "bench-raw", args.events)
        raw_callbacks = baseline(bootstrap, "bench-raw-cb", args.events, callbacks=True)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "fraudctl",
                "produce",
                "--rate",
                "0",
                "--label-delay",
                "0",
                "--count",
                str(args.events),
                "--json",
            ],
            capture_output=True,
            text=True,
            check=False,
            env=os.environ.copy(),
        )
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            return run.returncode
        summary = json.loads(run.stdout)
    finally:
        fraudctl_main(["stack", "down", "--native", "--json"])

    events_per_s = summary["acknowledged"] / summary["elapsed_s"]
    messages_per_s = (summary["acknowledged"] + summary["labels_acknowledged"]) / summary[
        "elapsed_s"
    ]
    result = {
        "benchmark": "produce",
        "events": args.events,
        "baseline": "raw confluent-kafka, pre-serialized, idempotent, acks=all",
        "baseline_msgs_per_s": round(raw),
        "baseline_with_callbacks_msgs_per_s": round(raw_callbacks),
        "ratio_events_to_baseline_with_callbacks": round(events_per_s / raw_callbacks, 3),
        "fraudctl_events_per_s": round(events_per_s),
        "fraudctl_msgs_per_s": round(messages_per_s),
        "ratio_events_to_baseline": round(events_per_s / raw, 3),
        "ratio_msgs_to_baseline": round(messages_per_s / raw, 3),
        "workers": summary.get("workers", 1),
        "target_events_per_s": 100_000,
        "cpus": os.cpu_count(),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
