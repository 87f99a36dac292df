"""Child processes of the OS for :class:`fraudctl.ports.Spawner`: each in a session (and
so a process group) of its own, so a signal reaches everything it started (a Ray
server's workers, a producer's worker processes) and a Ctrl-C on the terminal reaches
only the parent, which stops its children in order."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


class OsChild:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self.pid = process.pid

    def poll(self) -> int | None:
        return self._process.poll()

    def signal(self, signum: int) -> None:
        if self._process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None


class OsSpawner:
    def spawn(
        self, argv: Sequence[str], log: Path, env: Mapping[str, str], stdout: Path | None = None
    ) -> OsChild:
        log.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as files:
            err = files.enter_context(log.open("ab"))
            out = files.enter_context(stdout.open("ab")) if stdout is not None else err
            process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env=dict(env), start_new_session=True,
            )  # fmt: skip
        return OsChild(process)
