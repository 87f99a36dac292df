"""Where each event id was first accepted: SQLite (`local`) or Redis (`stack`).

An event is a duplicate when its id was first accepted at a *different* origin
(topic/partition/offset): a replay or a second copy.  The same message delivered again
(a rerun of an uncommitted batch) has the same origin, so it is processed again — and
produces the same writes, which replace the earlier attempt.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

from fraudctl.config import RedisConfig, Settings, mask_url
from fraudctl.errors import BackendUnavailable
from fraudctl.ports import DedupeStore

RETENTION_S = 7 * 24 * 3600  # replays older than a week are not recognised


class SqliteDedupe:
    """One connection per thread (the materializer's flusher records while the reader
    looks up); WAL lets them, and other processes, work side by side."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._local = threading.local()
        # A read-only home (a check, a read): open the file as it is, for reading only.
        self._read_only = path.is_file() and not os.access(path.parent, os.W_OK)
        if self._read_only:
            return
        try:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS first_seen (event_id TEXT PRIMARY KEY, origin TEXT)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, value REAL)")
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def _damaged(self, exc: sqlite3.DatabaseError) -> BackendUnavailable:
        if sqlite_code(exc) == sqlite3.SQLITE_READONLY:
            return BackendUnavailable(
                f"the dedupe store {self._path} is read-only ({exc})",
                hint="make it writable, or set FRAUDCTL_HOME to a writable directory",
            )
        return BackendUnavailable(
            f"the dedupe store {self._path} is not a readable SQLite database ({exc})",
            hint=f"move it away (`mv {self._path} {self._path}.damaged`) and rerun: the "
            "stores stay exact for batches replayed from the same offsets, but a replay "
            "from other offsets within the retention would no longer be recognised",
        )

    @property
    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            if self._read_only:
                db = self._open_read_only()
            else:
                db = sqlite3.connect(self._path, isolation_level=None, timeout=30)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def _open_read_only(self) -> sqlite3.Connection:
        """Read the file as it is: with the WAL files a writer left (``mode=ro`` reads
        them), or, when they are gone (checkpointed at the last close, so everything is
        in the file) and cannot be created, as an immutable file."""
        uri = self._path.resolve().as_uri()
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)

    def get_mark(self, name: str) -> float | None:
        row = self._db.execute("SELECT value FROM marks WHERE name = ?", (name,)).fetchone()
        return None if row is None else float(row[0])

    def raise_mark(self, name: str, value: float) -> None:
        self._db.execute(
            "INSERT INTO marks (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
            (name, value),
        )

    def origins(self, event_ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(event_ids), 900):  # SQLite's host-parameter limit
            chunk = event_ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT event_id, origin FROM first_seen WHERE event_id IN ({marks})", chunk
            )
            found.update(dict(rows.fetchall()))
        return found

    def record(self, first_origins: Mapping[str, str]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO first_seen (event_id, origin) VALUES (?, ?)",
                list(first_origins.items()),
            )


RECORD_CHUNK = 20_000
# SET fraudctl:seen:<id> <origin> NX EX <retention> for every (id, origin) pair.
_RECORD_SCRIPT = """
local ttl = ARGV[1]
for i = 2, #ARGV, 2 do
  redis.call('SET', 'fraudctl:seen:' .. ARGV[i], ARGV[i + 1], 'NX', 'EX', ttl)
end
return 1
"""


class RedisDedupe:
    def __init__(self, config: RedisConfig) -> None:
        from fraudctl.adapters.probes import redis_at

        self._redis = redis_at(config.url, config.password)
        self._where = mask_url(config.url)

    def _unavailable(self, exc: Exception) -> BackendUnavailable:
        return BackendUnavailable(
            f"Redis at {self._where} is unavailable ({exc})", hint="`fraudctl doctor`"
        )

    def origins(self, event_ids: list[str]) -> dict[str, str]:
        import redis

        if not event_ids:
            return {}
        try:
            values = self._redis.mget([f"fraudctl:seen:{i}" for i in event_ids])
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc
        return {i: v.decode() for i, v in zip(event_ids, values, strict=True) if v is not None}

    def get_mark(self, name: str) -> float | None:
        import redis

        try:
            value = self._redis.get(f"fraudctl:mark:{name}")
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc
        return None if value is None else float(value)

    def raise_mark(self, name: str, value: float) -> None:
        import redis

        script = (
            "local v = redis.call('GET', KEYS[1]) "
            "if (not v) or tonumber(v) < tonumber(ARGV[1]) then "
            "redis.call('SET', KEYS[1], ARGV[1]) end return 1"
        )
        try:
            self._redis.eval(script, 1, f"fraudctl:mark:{name}", repr(value))
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc

    def record(self, first_origins: Mapping[str, str]) -> None:
        import redis

        if not first_origins:
            return
        args: list[str] = [str(RETENTION_S)]
        for event_id, origin in first_origins.items():
            args += (event_id, origin)
        try:
            # One round trip and one command per chunk: Redis runs the loop, not Python.
            for start in range(1, len(args), 2 * RECORD_CHUNK):
                self._redis.eval(
                    _RECORD_SCRIPT, 0, args[0], *args[start : start + 2 * RECORD_CHUNK]
                )
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc


def open_dedupe(settings: Settings) -> DedupeStore:
    config = settings.backends().dedupe_store
    if isinstance(config, RedisConfig):
        return RedisDedupe(config)
    return SqliteDedupe(config.path)


def sqlite_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of a ``sqlite3`` error (``SQLITE_READONLY``,
    ``SQLITE_FULL``, …): decided by code, not by the message's words."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF
