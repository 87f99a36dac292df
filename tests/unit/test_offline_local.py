"""The local offline store's writes, seen by a reader listing the table meanwhile: a file
being written is hidden from it (a reader that listed one and opened it after its rename
failed with FileNotFoundError: seen once in `demo --live`'s read of the predictions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraudctl.adapters.offline import open_offline
from fraudctl.config import load_settings


def test_a_file_being_written_is_hidden_from_readers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings({"home": str(tmp_path)}, environ={}, cwd=tmp_path).settings
    store = open_offline(settings)
    folder = tmp_path / "offline" / "predictions" / "date=2026-12-03" / "hour=16"
    seen_while_writing: list[list[str]] = []
    write = pq.write_table

    def write_then_look(table: Any, where: Any, **options: Any) -> None:
        write(table, where, **options)
        # Before the rename: what a reader listing the folder (pyarrow, Dask) would take.
        visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith((".", "_")))
        seen_while_writing.append(visible)
        assert store.read("predictions").num_rows == 0

    monkeypatch.setattr(pq, "write_table", write_then_look)
    store.write_snapshot("predictions", "date=2026-12-03/hour=16", "a", pa.table({"x": [1, 2]}))
    assert seen_while_writing == [[]]
    assert [p.name for p in folder.iterdir()] == ["a.parquet"]  # nothing left beside it
    assert store.read("predictions")["x"].to_pylist() == [1, 2]
