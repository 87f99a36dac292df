"""A user's transaction file, read in constant memory: CSV and Parquet through pyarrow's
streaming readers, JSON Lines line by line.  A row the reader cannot make into values
(a CSV row with the wrong number of fields, a line that is not a JSON object) is handed
on as a :class:`BrokenRow`, never dropped."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, cast

from fraudctl.errors import UsageError
from fraudctl.ports import BrokenRow, RowChunk, RowSource

CHUNK_ROWS = 10_000
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
           ".pq": "parquet"}  # fmt: skip


def open_source(path: Path) -> RowSource:
    """The reader for ``path`` by its suffix (``.gz`` after a CSV or JSONL one is read
    compressed)."""
    if not path.is_file():
        raise UsageError(f"--from {path}: no such file")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise UsageError(
            f"--from {path}: cannot tell the format from its name",
            hint="name it .csv, .jsonl (or .ndjson) or .parquet (.csv.gz and .jsonl.gz too)",
        )
    if fmt == "csv":
        return CsvSource(path)
    if fmt == "parquet":
        return ParquetSource(path)
    return JsonLinesSource(path)


class CsvSource:
    """Every column read as text (types are the replay's to judge, row by row), quoted
    newlines allowed; a row with the wrong number of fields is a broken row."""

    format = "csv"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name

    def _reader(self, columns: list[str] | None, broken: list[BrokenRow]) -> Any:
        import pyarrow as pa
        from pyarrow import csv

        def invalid(row: Any) -> str:
            number = (row.number - 1) if row.number is not None else 0  # without the header
            broken.append(BrokenRow(number, row.text.encode(), f"(record): {row.actual_columns}"
                                    f" fields, the header has {row.expected_columns}"))  # fmt: skip
            return "skip"

        convert = csv.ConvertOptions(
            column_types={c: pa.string() for c in columns or []},
            include_columns=columns or [],
            strings_can_be_null=True,
        )
        try:
            return csv.open_csv(
                str(self.path),
                read_options=csv.ReadOptions(use_threads=False, block_size=1 << 20),
                parse_options=csv.ParseOptions(
                    newlines_in_values=True, invalid_row_handler=invalid
                ),
                convert_options=convert,
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise UsageError(f"--from {self.path}: not a readable CSV file ({exc})") from exc

    def columns(self) -> list[str]:
        return list(self._reader(None, []).schema.names)

    def chunks(self, columns: list[str]) -> Iterator[RowChunk]:
        import pyarrow as pa

        broken: list[BrokenRow] = []
        skipped: set[int] = set()
        row = 0
        reader = self._reader(columns, broken)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise UsageError(f"--from {self.path}: unreadable after row {row:,} "
                                 f"({exc})") from exc  # fmt: skip
            found, broken[:] = list(broken), []
            skipped.update(b.row for b in found)
            numbers = []
            for _ in range(batch.num_rows):
                row += 1
                while row in skipped:
                    row += 1
                numbers.append(row)
            values = {name: batch.column(name).to_pylist() for name in columns}
            yield RowChunk(numbers, values, found)
        if broken:
            yield RowChunk([], {name: [] for name in columns}, list(broken))


class ParquetSource:
    format = "parquet"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name

    def _file(self) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self.path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise UsageError(f"--from {self.path}: not a readable Parquet file ({exc})") from exc

    def columns(self) -> list[str]:
        return list(self._file().schema_arrow.names)

    def chunks(self, columns: list[str]) -> Iterator[RowChunk]:
        row = 0
        for batch in self._file().iter_batches(batch_size=CHUNK_ROWS, columns=columns):
            numbers = list(range(row + 1, row + batch.num_rows + 1))
            row += batch.num_rows
            yield RowChunk(numbers, {name: batch.column(name).to_pylist() for name in columns})


class JsonLinesSource:
    """One JSON object per line; blank lines are not rows; row number = line number."""

    format = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name

    def _open(self) -> IO[bytes]:
        if self.path.suffix.lower() == ".gz":
            return cast(IO[bytes], gzip.open(self.path, "rb"))
        return self.path.open("rb")

    def _objects(self) -> Iterable[tuple[int, bytes, dict[str, Any] | str]]:
        with self._open() as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError as exc:
                    yield number, line, f"(record): not JSON ({exc.__class__.__name__})"
                    continue
                if not isinstance(value, dict):
                    yield number, line, f"(record): a JSON {type(value).__name__}, not an object"
                    continue
                yield number, line, value

    def columns(self) -> list[str]:
        for _number, _line, value in self._objects():
            if isinstance(value, dict):
                return list(value)
        return []

    def chunks(self, columns: list[str]) -> Iterator[RowChunk]:
        numbers: list[int] = []
        values: dict[str, list[Any]] = {name: [] for name in columns}
        broken: list[BrokenRow] = []
        for number, line, value in self._objects():
            if isinstance(value, str):
                broken.append(BrokenRow(number, line.rstrip(b"\r\n"), value))
                continue
            numbers.append(number)
            for name in columns:
                values[name].append(value.get(name))
            if len(numbers) >= CHUNK_ROWS:
                yield RowChunk(numbers, values, broken)
                numbers, values, broken = [], {name: [] for name in columns}, []
        if numbers or broken:
            yield RowChunk(numbers, values, broken)
