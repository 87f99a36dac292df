"""Benchmark: `fraudctl produce --from FILE` (CSV and Parquet, 1,000,000 rows) against a
plain pyarrow read + confluent-kafka publish of the same file, same broker, same run.

Starts the native Kafka-API broker on a free port (nothing else), writes a CSV and a
Parquet file of the generator's events under another column layout (customer ids, text
times, a label column), then for each file:

1. baseline: pyarrow's streaming reader (CSV: `open_csv`; Parquet: `iter_batches`), each
   row turned into a JSON value with one f-string (no mapping, no validation) and
   published keyed by its customer by a raw idempotent (acks=all) confluent-kafka
   producer, until flushed: the ceiling of reading and publishing in Python;
2. fraudctl: `fraudctl produce --from FILE --map … --label-column is_fraud --label-delay 0
   --json` as a user runs it (both passes, mapping, pseudonyms, contract validation,
   events and their labels, every acknowledgement).

Prints rows/s of both and the ratio; writes the figures as JSON with --out.

    .venv/bin/python bench/replay.py --rows 1000000 [--out bench/results/replay.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit, fraudctl

MAP = (
    "event_ts=trans_time,user_id=customer,transaction_amount=amt,country=merchant_country,"
    "device=channel"
)


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from fraudctl.generator import GeneratorOptions, TransactionGenerator

    generator = TransactionGenerator(GeneratorOptions(seed=21), time.time() - 3600 - rows / 50, 50)
    columns: dict[str, list[Any]] = {name: [] for name in
                                     ("trans_time", "customer", "amt", "merchant_country",
                                      "channel", "is_fraud")}  # fmt: skip
    done = 0
    while done < rows:
        for event in generator.batch(min(100_000, rows - done)):
            columns["trans_time"].append(event.event_ts_text.replace("T", " ").rstrip("Z"))
            columns["customer"].append(f"C{event.user_id[5:]:0>7}")
            columns["amt"].append(event.transaction_amount)
            columns["merchant_country"].append(event.country)
            columns["channel"].append(event.device)
            columns["is_fraud"].append(event.label)
            done += 1
    table = pa.table(columns)
    csv_path, parquet_path = folder / "history.csv", folder / "history.parquet"
    pa_csv.write_csv(table, csv_path)
    pq.write_table(table, parquet_path, row_group_size=100_000)
    return csv_path, parquet_path


def baseline(bootstrap: str, topic: str, path: Path) -> tuple[float, int]:
    """Rows/s of read + one f-string per row + publish, and the rows published."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq
    from confluent_kafka import Producer

    from fraudctl.adapters.kafka_bus import PRODUCER_TUNING

    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_TUNING,
                         "delivery.report.only.error": True})  # fmt: skip
    started = time.perf_counter()
    if path.suffix == ".csv":
        batches: Any = pa_csv.open_csv(str(path))
    else:
        batches = pq.ParquetFile(path).iter_batches(batch_size=10_000)
    rows = 0
    produce = producer.produce
    for batch in batches:
        data = batch.to_pydict()
        for t, c, a, country, device in zip(data["trans_time"], data["customer"], data["amt"],
                                            data["merchant_country"], data["channel"],
                                            strict=True):  # fmt: skip
            value = (f'{{"user_id":"{c}","transaction_amount":{a},"country":"{country}",'
                     f'"device":"{device}","event_ts":"{t}"}}').encode()  # fmt: skip
            try:
                produce(topic, value, c.encode())
            except BufferError:
                producer.poll(0.05)
                produce(topic, value, c.encode())
            rows += 1
        producer.poll(0)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - started
    if remaining:
        raise RuntimeError(f"baseline: {remaining} messages not acknowledged")
    return rows / elapsed, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from fraudctl.cli.main import main as fraudctl_main
    from fraudctl.stack.native import private_stack_env

    home = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    env = private_stack_env(home, ("kafka",))
    os.environ.update(env)
    csv_path, parquet_path = write_files(home, args.rows)
    if fraudctl_main(["stack", "up", "--native", "--only", "kafka", "--json"]) != 0:
        return 3
    figures: dict[str, Any] = {}
    try:
        bootstrap = env["FRAUDCTL_KAFKA_BOOTSTRAP"]
        for kind, path in (("csv", csv_path), ("parquet", parquet_path)):
            raw, published = baseline(bootstrap, f"bench-raw-{kind}", path)
            run_env = os.environ | {"FRAUDCTL_TOPIC_TRANSACTIONS": f"tx-{kind}",
                                    "FRAUDCTL_TOPIC_LABELS": f"labels-{kind}"}  # fmt: skip
            summary = fraudctl("produce", "--from", str(path), "--map", MAP, "--label-column",
                               "is_fraud", "--label-delay", "0", env=run_env)  # fmt: skip
            if summary["acknowledged"] != published or summary["dead_lettered"]:
                raise RuntimeError(f"fraudctl {kind}: {summary}")
            rows_per_s = summary["rows"] / summary["elapsed_s"]
            figures[kind] = {
                "file_mb": round(path.stat().st_size / 1e6, 1),
                "baseline_rows_per_s": round(raw),
                "fraudctl_rows_per_s": round(rows_per_s),
                "fraudctl_msgs_per_s": round(
                    (summary["acknowledged"] + summary["labels_acknowledged"])
                    / summary["elapsed_s"]
                ),
                "ratio_to_baseline": round(rows_per_s / raw, 3),
                "fraudctl_elapsed_s": round(summary["elapsed_s"], 1),
            }
    finally:
        fraudctl_main(["stack", "down", "--native", "--json"])
    result = {
        "benchmark": "replay",
        "rows": args.rows,
        "baseline": "pyarrow streaming read + one f-string per row + raw confluent-kafka "
        "publish (idempotent, acks=all), events only",
        "fraudctl": "produce --from: two passes, mapping, pseudonyms, contract validation, "
        "events and labels",
        **figures,
        "cpus": os.cpu_count(),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
