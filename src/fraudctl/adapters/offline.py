"""The offline store: Parquet snapshots partitioned by event hour, on a local directory
(`localfs`) or any S3 API (`s3`), through pyarrow's filesystems.

Layout under the root (``$FRAUDCTL_HOME/offline`` or ``s3://BUCKET/offline``)::

    <table>/date=YYYY-MM-DD/hour=HH/p<partition>-<first offset>.parquet
    _manifests/<topic>/p<partition>-<first offset>.json

A batch read from the bus writes, per source partition, one file per table and event
hour, named by the partition and the first offset of the batch in it.  Before writing,
the batch records the files it is about to write in a manifest; a batch that starts at
the same place again (a rerun after a crash, before its offsets were committed) first
deletes what the manifest lists, then writes.  So a re-delivered batch replaces its
earlier, possibly partial, attempt instead of adding to it.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fraudctl.config import S3OfflineConfig, Settings
from fraudctl.errors import BackendUnavailable

MANIFESTS = "_manifests"


def hour_partition(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return f"date={moment:%Y-%m-%d}/hour={moment:%H}"


class HourPartitions:
    """``hour_partition`` for many timestamps: one string per distinct hour, cached."""

    def __init__(self) -> None:
        self._cache: dict[int, str] = {}

    def of(self, ts: float) -> str:
        hour = int(ts // 3600)
        found = self._cache.get(hour)
        if found is None:
            found = self._cache[hour] = hour_partition(hour * 3600)
        return found


@dataclass(frozen=True)
class PlannedFile:
    table: str
    hour: str
    name: str

    def path(self, root: str) -> str:
        return posixpath.join(root, self.table, self.hour, self.name)


class ParquetStore:
    def __init__(self, filesystem: Any, root: str, uri: str, describe: str) -> None:
        self.fs = filesystem
        self.root = root
        self.uri = uri  # what other tools (Feast, MLflow lineage) use to find the data
        self.describe = describe

    def table_uri(self, table: str) -> str:
        return posixpath.join(self.uri, table)

    def _guard(self, action: str, exc: Exception) -> BackendUnavailable:
        return BackendUnavailable(
            f"offline store {self.describe}: {action} failed ({type(exc).__name__}: {exc})",
            hint="is the S3 server up? `fraudctl doctor`",
        )

    def replace_batch(
        self, topic: str, partition: int, first_offset: int, tables: dict[PlannedFile, Any]
    ) -> list[str]:
        """Write one batch's files for one source partition, replacing an earlier attempt
        of the same batch; return the paths written."""
        manifest = posixpath.join(
            self.root, MANIFESTS, topic, f"p{partition}-{first_offset:012d}.json"
        )
        paths = [planned.path(self.root) for planned in tables]
        try:
            for stale in self._read_manifest(manifest):
                if stale not in paths:
                    self._delete(stale)
            self._write_bytes(manifest, json.dumps(paths).encode())
            for planned, table in tables.items():
                self._write_table(planned.path(self.root), table)
        except OSError as exc:
            raise self._guard("write", exc) from exc
        return paths

    def write_snapshot(self, table: str, hour: str, name: str, rows: Any) -> str:
        """Write one file that no rerun needs to replace (a snapshot named by content)."""
        path = PlannedFile(table, hour, f"{name}.parquet").path(self.root)
        try:
            self._write_table(path, rows)
        except OSError as exc:
            raise self._guard("write", exc) from exc
        return path

    def copy_file(self, local: Any, key: str) -> str:
        """Copy a local file into the store under ``key``; return its URI."""
        path = posixpath.join(self.root, key)
        try:
            self.fs.create_dir(posixpath.dirname(path), recursive=True)
            with open(local, "rb") as source, self.fs.open_output_stream(path) as sink:
                sink.write(source.read())
        except OSError as exc:
            raise self._guard("write", exc) from exc
        return posixpath.join(self.uri, key)

    def add_record(self, prefix: str, record: dict[str, Any]) -> str:
        """Append one JSON record under ``prefix``: a new object named by the time and a
        random suffix, never a rewrite, so concurrent writers cannot lose each other's."""
        import time
        import uuid

        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        path = posixpath.join(self.root, prefix, name)
        try:
            self._write_bytes(path, json.dumps(record, default=str).encode())
        except OSError as exc:
            raise self._guard("write", exc) from exc
        return posixpath.join(self.uri, prefix, name)

    def records(self, prefix: str, newest: int | None = None) -> list[dict[str, Any]]:
        """The records under ``prefix``, oldest first (only the ``newest`` few if set)."""
        import pyarrow.fs as pafs

        base = posixpath.join(self.root, prefix)
        try:
            if self.fs.get_file_info(base).type != pafs.FileType.Directory:
                return []
            found = self.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
            paths = sorted(i.path for i in found if i.path.endswith(".json"))
            if newest is not None:
                paths = paths[-newest:]
            out = []
            for path in paths:
                with self.fs.open_input_stream(path) as handle:
                    out.append(json.loads(handle.read()))
            return out
        except OSError as exc:
            raise self._guard("read", exc) from exc

    def forget_batch(self, topic: str, partition: int, first_offset: int) -> None:
        """Drop a batch's manifest once its offsets are committed (it can't rerun)."""
        manifest = posixpath.join(
            self.root, MANIFESTS, topic, f"p{partition}-{first_offset:012d}.json"
        )
        try:
            self._delete(manifest)
        except OSError as exc:
            raise self._guard("delete", exc) from exc

    def _write_table(self, path: str, table: Any) -> None:
        """Readers never see a half-written file: an S3 object appears whole; on a local
        disk the file is written beside its final name, hidden (a leading dot: what
        pyarrow's and Dask's dataset readers skip, so a reader listing the folder meanwhile
        never tries to open it after the rename), and renamed."""
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        self.fs.create_dir(posixpath.dirname(path), recursive=True)
        if isinstance(self.fs, pafs.LocalFileSystem):
            folder, name = posixpath.split(path)
            staging = posixpath.join(folder, f".{name}.writing")
            try:
                pq.write_table(table, staging, filesystem=self.fs, compression="zstd")
                self.fs.move(staging, path)
            except OSError:
                with contextlib.suppress(OSError):  # a full disk keeps no half-written file
                    self.fs.delete_file(staging)
                raise
        else:
            pq.write_table(table, path, filesystem=self.fs, compression="zstd")

    def _read_manifest(self, path: str) -> list[str]:
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            return []
        with self.fs.open_input_stream(path) as handle:
            listed: list[str] = json.loads(handle.read())
        return listed

    def _write_bytes(self, path: str, data: bytes) -> None:
        self.fs.create_dir(posixpath.dirname(path), recursive=True)
        with self.fs.open_output_stream(path) as handle:
            handle.write(data)

    def _delete(self, path: str) -> None:
        import pyarrow.fs as pafs

        if self.fs.get_file_info(path).type == pafs.FileType.File:
            self.fs.delete_file(path)

    def read(self, table: str, columns: Iterable[str] | None = None, where: Any = None) -> Any:
        """The rows of a table matching ``where`` (a ``pyarrow.dataset`` expression; all
        rows when None), as a pyarrow Table; empty when nothing was written."""
        import pyarrow as pa
        import pyarrow.dataset as ds
        import pyarrow.fs as pafs

        base = posixpath.join(self.root, table)
        try:
            if self.fs.get_file_info(base).type != pafs.FileType.Directory:
                return pa.table({})
            dataset = ds.dataset(base, filesystem=self.fs, format="parquet", partitioning="hive")
            return dataset.to_table(columns=list(columns) if columns else None, filter=where)
        except OSError as exc:
            raise self._guard("read", exc) from exc


def open_offline(settings: Settings) -> ParquetStore:
    import pyarrow.fs as pafs

    config = settings.backends().offline_store
    if isinstance(config, S3OfflineConfig):
        parts = urlsplit(config.endpoint)
        filesystem = pafs.S3FileSystem(
            access_key=settings.require_secret("s3_access_key"),
            secret_key=settings.require_secret("s3_secret_key"),
            endpoint_override=parts.netloc,
            scheme=parts.scheme,
            region="us-east-1",
            connect_timeout=3,
            request_timeout=10,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2),
        )
        root = f"{config.bucket}/{config.prefix}"
        return ParquetStore(filesystem, root, offline_uri(settings), config.endpoint)
    config.path.mkdir(parents=True, exist_ok=True)
    directory = str(config.path)
    return ParquetStore(pafs.LocalFileSystem(), directory, offline_uri(settings), directory)


def offline_uri(settings: Settings) -> str:
    """Where the offline store is, as other tools (Feast, MLflow lineage) name it:
    ``s3://BUCKET/PREFIX`` or the local directory; no connection is made."""
    config = settings.backends().offline_store
    if isinstance(config, S3OfflineConfig):
        return f"s3://{config.bucket}/{config.prefix}"
    return str(config.path)
