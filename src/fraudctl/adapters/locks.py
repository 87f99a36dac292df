"""Exclusive run leases: one holder at a time, the others refused with the holder named.

A lease is an ``flock`` on a file under the home, so it dies with its holder (a killed
run never leaves a stale lease) and costs nothing to check.  It protects one home: on
the embedded bus that is the whole bus; on Kafka it is one host's runs (runs on other
hosts are coordinated by the broker's group protocol, see docs/materialize.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from fraudctl.config import FileLockConfig, Settings
from fraudctl.errors import BackendUnavailable, UsageError

LOCK_TIMEOUT_S = 30.0


@contextmanager
def run_lease(path: Path, what: str, *, wait: bool = False) -> Iterator[None]:
    """Hold the lease at ``path`` for the block, or raise :class:`UsageError` (exit 2)
    naming the process that holds it; ``wait``: wait for the holder instead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            raise UsageError(
                f"{what} is already running ({_holder(handle.read())}); one run at a time, "
                "or two would process the same records twice",
                hint="wait for it to finish or stop it, then run again",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "command": " ".join(["fraudctl", *sys.argv[1:]])[:200],
                    "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
        )
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(text: str) -> str:
    try:
        holder = json.loads(text)
        where = f"pid {holder['pid']} on {holder['host']}"
        return f"{where}, `{holder['command']}`, since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "by a process that has not written its name yet"


class FileLock:
    """:class:`fraudctl.ports.Lock` as a file lease (one host; a holder is waited for)."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what

    def hold(self) -> AbstractContextManager[None]:
        return run_lease(self.path, self.what, wait=True)


class RedisLock:
    """:class:`fraudctl.ports.Lock` as a Redis key with an expiry (every host of the
    stack); waits at most ``timeout_s`` for a holder, released only by its own token."""

    def __init__(self, client: Any, key: str, timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.client, self.key, self.timeout_s = client, key, timeout_s

    @contextmanager
    def hold(self) -> Iterator[None]:
        import uuid

        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.timeout_s
        while not self.client.set(self.key, token, nx=True, px=int(self.timeout_s * 1000)):
            if time.monotonic() > deadline:
                raise BackendUnavailable(f"the lock {self.key} stayed taken")
            time.sleep(0.05)
        try:
            yield
        finally:
            if self.client.get(self.key) == token.encode():
                self.client.delete(self.key)


def promotion_lock(settings: Settings) -> FileLock | RedisLock:
    """One alias move at a time per model (setting ``promote_lock``): a Redis key (every
    machine of the stack), or a file lease under the home (one host; waited for)."""
    config = settings.backends().promote_lock
    if isinstance(config, FileLockConfig):
        return FileLock(config.path, "promote")
    from fraudctl.adapters.probes import redis_at

    return RedisLock(redis_at(config.url, config.password), config.key)
