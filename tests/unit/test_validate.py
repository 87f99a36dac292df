from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pytest

from tests.conftest import RunCli

GOOD = {
    "event_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "user_id": "user-7",
    "transaction_amount": 12.5,
    "country": "DE",
    "device": "ios",
    "event_ts": "2026-01-01T10:00:00Z",
    "label": None,
}


def jsonl(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_all_valid_exits_0(cli: RunCli, tmp_path: Path) -> None:
    source = jsonl(tmp_path / "ok.jsonl", [json.dumps(GOOD)] * 3)
    result = cli("validate", source, "--json")
    assert result.code == 0
    assert result.json() == {"errors": [], "records": 3, "valid": 3, "invalid": 0, "status": "ok"}


def test_reports_every_invalid_line_with_field_and_reason(cli: RunCli, tmp_path: Path) -> None:
    source = jsonl(
        tmp_path / "mixed.jsonl",
        [
            json.dumps(GOOD),
            json.dumps(GOOD | {"country": "XX"}),
            "",
            "not json at all",
            json.dumps(GOOD | {"transaction_amount": -1, "device": "fax"}),
            json.dumps(GOOD),
        ],
    )
    result = cli("validate", source, "--json")
    assert result.code == 4
    report = result.json()
    assert (report["valid"], report["invalid"], report["status"]) == (2, 3, "invalid")
    assert [(e["line"], e["field"]) for e in report["errors"]] == [
        (2, "country"),
        (4, "(record)"),
        (5, "transaction_amount"),
        (5, "device"),
    ]
    text = cli("validate", source)
    assert text.code == 4
    assert "line 2: country:" in text.out
    assert "line 4: (record): is not JSON" in text.out
    assert "2 valid" in text.out and "3 invalid" in text.out


def test_not_json_lines_at_all_exits_2(cli: RunCli, tmp_path: Path) -> None:
    source = jsonl(tmp_path / "data.csv", ["event_id,user_id", "1,2"])
    result = cli("validate", source)
    assert result.code == 2
    assert "is not JSON Lines" in result.err
    missing = cli("validate", str(tmp_path / "nope.jsonl"))
    assert missing.code == 2
    assert "no such file" in missing.err


def test_now_option_controls_the_future_check(cli: RunCli, tmp_path: Path) -> None:
    source = jsonl(tmp_path / "f.jsonl", [json.dumps(GOOD)])
    assert cli("validate", source, "--now", "2026-01-01T09:00:00Z").code == 4
    assert cli("validate", source, "--now", "2026-01-01T09:59:30Z").code == 0
    assert cli("validate", source, "--now", "yesterday").code == 2


def test_reads_stdin(cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    data = (json.dumps(GOOD) + "\n" + json.dumps(GOOD | {"label": 3}) + "\n").encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    result = cli("validate", "-", "--json")
    assert result.code == 4
    assert result.json()["errors"] == [
        {"line": 2, "field": "label", "reason": "must be 0, 1 or null"}
    ]


def test_large_file_in_bounded_memory(cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    good, bad = json.dumps(GOOD), json.dumps(GOOD | {"country": "XX"})
    n = 50_000
    with path.open("w") as handle:
        for i in range(n):
            handle.write((bad if i % 10 == 0 else good) + "\n")
    size = path.stat().st_size
    warm = tmp_path / "warm.jsonl"
    warm.write_text(good + "\n")
    assert cli("validate", str(warm)).code == 0  # imports done: only the reading is traced
    tracemalloc.start()
    result = cli("validate", str(path), "--show", "5")
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.code == 4
    assert f"{n:,} records" in result.out
    assert "5,000 invalid" in result.out
    assert peak < size / 4, (peak, size)
