"""Files of "a user's own" transactions for `produce --from` tests: the generator's events
under another column layout (customer ids, not user-N), with a known set of bad rows."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fraudctl.generator import GeneratorOptions, TransactionGenerator

COLUMNS = ("trans_time", "customer", "amt", "merchant_country", "channel", "is_fraud",
           "label_time")  # fmt: skip
MAP = ("--map", "event_ts=trans_time,user_id=customer,transaction_amount=amt,"
       "country=merchant_country,device=channel", "--label-column", "is_fraud")  # fmt: skip
# One defect per bad row, in turn; the field the DLQ reason must name.
DEFECTS = (
    ("amt", "abc", "transaction_amount"),
    ("merchant_country", "XX", "country"),
    ("trans_time", "not a time", "event_ts"),
    ("amt", "-5.0", "transaction_amount"),
    ("customer", "", "user_id"),
    ("is_fraud", "maybe", "label"),
)


@dataclass
class Written:
    path: Path
    rows: int  # data rows, the broken one included
    bad: dict[int, str]  # row number → the field its reason names ("(record)": broken)
    fraud: int  # fraud among the good rows


def rows(count: int, seed: int = 5, bad_every: int = 50) -> tuple[list[dict[str, str]], Written]:
    """``count`` rows, every ``bad_every``-th with a defect; times end an hour ago."""
    now = datetime.now(UTC).timestamp()
    generator = TransactionGenerator(GeneratorOptions(fraud_rate=0.05, seed=seed),
                                     now - 3600 - count / 20, 20.0)  # fmt: skip
    out: list[dict[str, str]] = []
    bad: dict[int, str] = {}
    fraud = 0
    for number, event in enumerate(generator.batch(count), 1):
        row = {
            "trans_time": datetime.fromtimestamp(event.event_ts, UTC).strftime(
                "%Y-%m-%d %H:%M:%S.%f"
            ),
            "customer": f"C{int(event.user_id.removeprefix('user-')):07d}",
            "amt": repr(event.transaction_amount),
            "merchant_country": event.country,
            "channel": event.device,
            "is_fraud": str(event.label),
            "label_time": datetime.fromtimestamp(event.event_ts + 2, UTC).isoformat(),
        }
        if number % bad_every == 0:
            column, value, field = DEFECTS[(number // bad_every) % len(DEFECTS)]
            row[column] = value
            bad[number] = field
        else:
            fraud += event.label
        out.append(row)
    return out, Written(Path(), count, bad, fraud)


def write_csv(path: Path, count: int, seed: int = 5) -> Written:
    """A CSV file; one extra row has the wrong number of fields (a broken row)."""
    table, written = rows(count, seed)
    broken_at = count // 2
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for number, row in enumerate(table, 1):
            writer.writerow([row[c] for c in COLUMNS])
            if number == broken_at:
                handle.write("2024-01-01 00:00:00,C1,5.0\n")
    # The broken line is data row broken_at + 1; the rows after it move down one.
    renumbered = {(n if n <= broken_at else n + 1): f for n, f in written.bad.items()}
    renumbered[broken_at + 1] = "(record)"
    return Written(path, count + 1, renumbered, written.fraud)


def write_parquet(path: Path, count: int, seed: int = 7) -> Written:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table, written = rows(count, seed)
    pq.write_table(pa.table({c: [row[c] for row in table] for c in COLUMNS}), path,
                   row_group_size=max(count // 3, 1))  # fmt: skip
    written.path = path
    return written


def write_jsonl(path: Path, count: int, seed: int = 9) -> Written:
    """JSON Lines with numbers as numbers; one line is not JSON."""
    table, written = rows(count, seed)
    with path.open("w") as handle:
        for number, row in enumerate(table, 1):
            if number == 3:
                handle.write("{not json\n")
            record: dict[str, object] = dict(row)
            if number not in written.bad:
                record["amt"] = float(row["amt"])
                record["is_fraud"] = int(row["is_fraud"])
            handle.write(json.dumps(record) + "\n")
    bad = {(n if n < 3 else n + 1): f for n, f in written.bad.items()} | {3: "(record)"}
    return Written(path, count + 1, bad, written.fraud)
