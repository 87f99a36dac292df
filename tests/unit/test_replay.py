"""`produce --from FILE`: the row mapping (pure) and whole replays on the embedded bus."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fraudctl.contract import parse_utc_timestamp, validate_bytes
from fraudctl.errors import UsageError
from fraudctl.ports import DeliveryStats, RowChunk
from fraudctl.replay import (
    BadRow,
    ColumnMap,
    RowMapper,
    Timeline,
    TimeMode,
    parse_label,
    parse_time,
    pseudonym,
)
from fraudctl.services.produce import Clock
from fraudctl.services.replay import ReplayPlan, replay
from tests.conftest import RunCli
from tests.fakes import FakeClock, RecordingScoring
from tests.replay_files import MAP, write_csv, write_jsonl, write_parquet
from tests.unit.test_produce_cli import read_all


def test_times_in_the_forms_files_hold_them() -> None:
    expected = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    for value in ("2024-01-02 03:04:05", "2024-01-02T03:04:05Z", "2024-01-02T04:04:05+01:00",
                  expected, int(expected), str(int(expected)), expected * 1000,
                  datetime(2024, 1, 2, 3, 4, 5)):  # fmt: skip
        assert parse_time(value) == pytest.approx(expected), value
    for value in (None, "", "tomorrow", float("nan"), True):
        with pytest.raises(BadRow, match="event_ts"):
            parse_time(value)


def test_labels_and_pseudonyms() -> None:
    assert [parse_label(v, "c") for v in (0, 1, True, "1", "false", "Yes", "", None)] == [
        0, 1, 1, 1, 0, 1, None, None
    ]  # fmt: skip
    for value in (2, "maybe", 0.5):
        with pytest.raises(BadRow, match="label"):
            parse_label(value, "c")
    assert pseudonym("user-42", b"") == ("user-42", False)
    hashed, was_hashed = pseudonym("4111111111111111", b"k1")
    assert was_hashed and hashed.startswith("user-") and hashed[5:].isdigit()
    assert pseudonym("4111111111111111", b"k1") == (hashed, True)  # stable
    assert pseudonym("4111111111111111", b"k2")[0] != hashed  # keyed
    assert pseudonym(4111111111111111.0, b"k1")[0] == hashed  # a number read as a float
    with pytest.raises(BadRow, match="user_id"):
        pseudonym(" ", b"")


def test_the_mapping_is_checked_against_the_file_before_anything_is_sent() -> None:
    available = ["ts", "cust", "amt", "country", "device", "label"]
    columns = ColumnMap.build(available, map_spec="event_ts=ts,user_id=cust,transaction_amount=amt")
    assert columns.columns["country"] == "country" and columns.label == "label"
    assert columns.source_columns() == ["ts", "cust", "amt", "country", "device", "label"]
    with pytest.raises(UsageError, match="no column 'nope'"):
        ColumnMap.build(available, map_spec="event_ts=nope")
    with pytest.raises(UsageError, match="no column gives user_id, event_ts"):
        ColumnMap.build(["amt", "country", "device"], map_spec="transaction_amount=amt")
    with pytest.raises(UsageError, match="not a field of the contract"):
        ColumnMap.build(available, map_spec="amount=amt")
    with pytest.raises(UsageError, match="both --map and --set"):
        ColumnMap.build(available, map_spec="country=country", set_spec="country=US")
    with pytest.raises(UsageError, match="FIELD=VALUE"):
        ColumnMap.build(available, map_spec="event_ts")


def test_time_modes() -> None:
    assert TimeMode.parse("keep").kind == "keep"
    assert TimeMode.parse("shift-to-now").kind == "shift"
    assert TimeMode.parse("60x") == TimeMode("compress", 60.0)
    assert TimeMode.parse("1.5\u00d7") == TimeMode("compress", 1.5)
    for text in ("fast", "0x", "x"):
        with pytest.raises(UsageError, match="--time"):
            TimeMode.parse(text)
    now = 1_000_000.0
    with pytest.raises(UsageError, match="in the future"):
        Timeline.plan(TimeMode("keep"), now - 10, now + 61, now)
    assert Timeline.plan(TimeMode("keep"), 5.0, now + 59, now).stamp(5.0) == 5.0
    shifted = Timeline.plan(TimeMode("shift"), 100.0, 200.0, now)
    assert (shifted.stamp(200.0), shifted.stamp(150.0)) == (now, now - 50)
    compressed = Timeline.plan(TimeMode("compress", 60.0), 100.0, 3700.0, now)
    assert (compressed.stamp(100.0), compressed.stamp(3700.0)) == (now, now + 60)


def test_a_row_becomes_an_event_and_its_label() -> None:
    columns = ColumnMap.build(["t", "u", "a", "lt", "y"], map_spec="event_ts=t,user_id=u,"
                              "transaction_amount=a", set_spec="country=us,device=WEB",
                              label_column="y", label_ts_column="lt")  # fmt: skip
    mapper = RowMapper(columns, Timeline(0.0, 0.0, 1.0), b"k")
    row = {"t": "2024-01-01 00:00:00", "u": "C1", "a": "12.5", "y": "1",
           "lt": "2024-01-01 00:05:00"}  # fmt: skip
    event, due = mapper.event(7, row)
    assert (event.country, event.device, event.label, event.transaction_amount) == (
        "US", "web", 1, 12.5
    )  # fmt: skip
    assert due == parse_time("2024-01-01 00:05:00") and mapper.last_hashed
    assert mapper.event(7, row)[0].event_id == event.event_id  # derived, stable
    assert mapper.event(8, row)[0].event_id != event.event_id  # another row, another id
    with pytest.raises(BadRow, match="label_ts: before the event"):
        mapper.event(9, row | {"lt": "2023-12-31 23:00:00"})


@pytest.mark.parametrize("kind", ["csv", "parquet", "jsonl"])
def test_a_file_with_bad_rows_is_replayed_exactly(cli: RunCli, tmp_path: Path, kind: str) -> None:
    write = {"csv": write_csv, "parquet": write_parquet, "jsonl": write_jsonl}[kind]
    written = write(tmp_path / f"history.{kind}", 1000)
    home = tmp_path / "home"
    result = cli("--home", str(home), "produce", "--from", str(written.path), *MAP,
                 "--label-delay", "0", "--json")  # fmt: skip
    assert result.code == 0, result.err
    summary = result.json()
    good = written.rows - len(written.bad)
    assert summary["rows_total"] == summary["rows"] == written.rows
    assert summary["published"] == summary["acknowledged"] == good
    assert summary["labels_published"] == summary["labels_acknowledged"] == good
    assert summary["fraud_events"] == written.fraud
    assert summary["dead_lettered"] == summary["dead_letters_acknowledged"] == len(written.bad)
    assert summary["dlq_reasons"] == dict(Counter(written.bad.values()))
    assert summary["users_pseudonymised"] == good and summary["stopped_by"] == "end of file"

    events = read_all(home, "transactions")
    assert len(events) == good and all(validate_bytes(r.value).ok for r in events)
    labels = {json.loads(r.value)["event_id"] for r in read_all(home, "labels")}
    assert labels == {json.loads(r.value)["event_id"] for r in events}
    letters = read_all(home, "transactions.dlq")
    assert {int(r.headers["origin.row"]): r.headers["reason"].decode().split(":")[0]
            for r in letters} == written.bad  # fmt: skip
    assert {r.headers["origin.file"] for r in letters} == {written.path.name.encode()}

    again = cli("--home", str(tmp_path / "again"), "produce", "--from", str(written.path), *MAP,
                "--label-delay", "0", "--json")  # fmt: skip
    assert again.code == 0, again.err
    first = Counter((r.key, r.value) for r in events)
    assert Counter((r.key, r.value) for r in read_all(tmp_path / "again", "transactions")) == first


def test_shift_to_now_ends_at_now_and_label_times_come_from_their_column(
    cli: RunCli, tmp_path: Path
) -> None:
    written = write_parquet(tmp_path / "history.parquet", 300)
    home = tmp_path / "home"
    before = datetime.now(UTC).timestamp()
    result = cli("--home", str(home), "produce", "--from", str(written.path), *MAP,
                 "--label-ts-column", "label_time", "--time", "shift-to-now", "--json")  # fmt: skip
    assert result.code == 0, result.err
    summary = result.json()
    last = parse_utc_timestamp(summary["last_event_ts"]).timestamp()
    assert before - 1 <= last <= datetime.now(UTC).timestamp()
    labels = [json.loads(r.value) for r in read_all(home, "labels")]
    assert len(labels) == summary["published"] > 0
    for label in labels:
        gap = parse_utc_timestamp(label["label_ts"]) - parse_utc_timestamp(label["event_ts"])
        assert gap.total_seconds() == pytest.approx(2, abs=1e-3)


def test_usage_errors_name_the_cause(cli: RunCli, tmp_path: Path) -> None:
    written = write_csv(tmp_path / "history.csv", 50)
    base = ("--home", str(tmp_path / "home"), "produce", "--from", str(written.path))
    cases = {
        ("--count", "5"): "--count: options of the generator",
        ("--map", "event_ts=nope"): "no column 'nope'",
        (): "no column gives user_id, transaction_amount",
        ("--time", "60x", "--rate", "10", *MAP): "--rate cannot pace it too",
        (*MAP, "--label-ts-column", "label_time", "--label-delay", "5"): "not both",
    }
    for args, message in cases.items():
        result = cli(*base, *args)
        assert result.code == 2, (args, result.err)
        assert message in result.err, (args, result.err)
    missing = cli("produce", "--from", str(tmp_path / "nope.csv"))
    assert missing.code == 2 and "no such file" in missing.err
    (tmp_path / "data.xlsx").write_text("x")
    odd = cli("produce", "--from", str(tmp_path / "data.xlsx"))
    assert odd.code == 2 and "cannot tell the format" in odd.err
    generated = cli("--home", str(tmp_path / "g"), "produce", "--count", "5", "--time", "keep")
    assert generated.code == 2 and "--time only apply with --from" in generated.err


class TimedProducer:
    """A bus producer that acknowledges at once and notes the clock of every message."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self.wall = wall
        self.stats = DeliveryStats()
        self.sent: list[tuple[str, float, bytes]] = []

    def publish(self, topic: str, value: bytes, key: bytes | None = None,
                headers: dict[str, bytes] | None = None) -> None:  # fmt: skip
        self.publish_batch(topic, [(value, key)])

    def publish_batch(self, topic: str, messages: list[tuple[bytes, bytes | None]]) -> None:
        self.sent += [(topic, self.wall(), value) for value, _key in messages]
        self.stats.success(topic, len(messages))

    def poll(self) -> None:
        pass

    def flush(self, timeout_s: float) -> int:
        return 0

    def in_flight(self) -> int:
        return 0

    def close(self) -> None:
        pass


class ListSource:
    name, format = "rows.jsonl", "jsonl"

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def columns(self) -> list[str]:
        return list(self.rows[0])

    def chunks(self, columns: list[str]) -> Iterator[RowChunk]:
        yield RowChunk(list(range(1, len(self.rows) + 1)),
                       {c: [r.get(c) for r in self.rows] for c in columns})  # fmt: skip


def test_a_compressed_timeline_publishes_each_event_when_its_time_comes() -> None:
    ticks = FakeClock()
    base = 1_800_000_000.0
    clock = Clock(monotonic=ticks, wall=lambda: base + ticks(), sleep=ticks.sleep)
    rows = [{"event_ts": 1_700_000_000 + 2 * i, "user_id": f"user-{i % 3}", "label": i % 2,
             "transaction_amount": 10.0 + i, "country": "US", "device": "ios"}
            for i in range(21)]  # fmt: skip
    producer = TimedProducer(clock.wall)
    plan = ReplayPlan(ColumnMap.build(list(rows[0])), TimeMode.parse("20x"), 0.0, 0.5,
                      "tx", "labels", "dlq", 10.0)  # fmt: skip
    summary = replay(ListSource(rows), producer, plan, clock=clock)
    assert summary.published == summary.labels_published == 21
    events = [(t, json.loads(v)) for topic, t, v in producer.sent if topic == "tx"]
    stamps = [parse_utc_timestamp(e["event_ts"]).timestamp() for _t, e in events]
    # 40 s of the file in 2 s, from when the run started
    assert stamps[0] == pytest.approx(base) and stamps[-1] == pytest.approx(base + 2.0)
    assert all(sent >= stamp - 1e-6 for (sent, _e), stamp in zip(events, stamps, strict=True))
    labels = [(t, json.loads(v)) for topic, t, v in producer.sent if topic == "labels"]
    due = {e["event_id"]: s + 0.5 for (_t, e), s in zip(events, stamps, strict=True)}
    assert all(sent >= due[label["event_id"]] - 1e-6 for sent, label in labels)


def test_with_score_every_published_event_is_scored_and_nothing_else() -> None:
    rows = [{"event_ts": 1_700_000_000 + i, "user_id": f"user-{i}", "transaction_amount": 5.0,
             "country": "US" if i % 4 else "XX", "device": "web"} for i in range(40)]  # fmt: skip
    producer = TimedProducer(time.time)
    scoring = RecordingScoring()
    plan = ReplayPlan(ColumnMap.build(list(rows[0])), TimeMode("keep"), 0.0, 0.0,
                      "tx", "labels", "dlq", 10.0)  # fmt: skip
    summary = replay(ListSource(rows), producer, plan, scoring=scoring)
    published = [v for topic, _t, v in producer.sent if topic == "tx"]
    assert scoring.submitted == published and len(published) == 30 and scoring.closed
    assert (summary.scored, summary.dead_lettered, summary.unlabelled) == (30, 10, 30)
