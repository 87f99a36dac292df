"""Supervision of `fraudctl run`'s long-running children (producer, materialize
--follow, serve): a child that exits is restarted after a backoff, and each restart is
an event; a child that keeps crashing stops the run (exit 3, naming it and its log).
Stopping is in the order the children were given, each with its own signal and grace
time, and killed (its whole process group) past the grace.

The rules, after Erlang/OTP supervisors and systemd's ``Restart=`` /
``StartLimitBurst=``: restart delays double from ``first_s`` up to ``max_s``; more than
``crash_limit`` restarts within ``crash_window_s`` is a crash loop; a child that has run
``crash_window_s`` without exiting starts again from the first delay.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraudctl.errors import BackendUnavailable
from fraudctl.ports import Child, Spawner


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: tuple[str, ...]
    log: Path
    stdout: Path | None = None  # None: with the log
    stop_signal: int = signal.SIGTERM
    stop_grace_s: float = 30.0


@dataclass(frozen=True)
class Backoff:
    first_s: float = 1.0
    max_s: float = 30.0
    crash_limit: int = 5
    crash_window_s: float = 300.0

    def delay(self, restarts_in_window: int) -> float:
        return float(min(self.max_s, self.first_s * 2 ** max(0, restarts_in_window)))


def stop_child(child: Child, signum: int, grace_s: float) -> tuple[int | None, bool]:
    """``signum`` to the child's process group, up to ``grace_s`` for it to exit, then
    SIGKILL: its exit code, and whether it had to be killed."""
    child.signal(signum)
    code = child.wait(grace_s)
    if code is not None:
        return code, False
    child.signal(signal.SIGKILL)
    return child.wait(10.0), True


class CrashLoop(BackendUnavailable):
    """A child restarted more than the limit allows: the run stops (exit 3)."""


@dataclass
class _Running:
    spec: ChildSpec
    child: Child | None
    started_at: float
    restarts: list[float] = field(default_factory=list)  # when each restart happened
    exited_at: float | None = None
    exit_code: int | None = None
    restart_at: float | None = None

    @property
    def total_restarts(self) -> int:
        return len(self.restarts)


class Supervisor:
    def __init__(
        self,
        spawner: Spawner,
        env: Mapping[str, str],
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spawner, self._env, self.backoff, self._clock = spawner, env, backoff, clock
        self._children: dict[str, _Running] = {}

    def start(self, spec: ChildSpec) -> dict[str, Any]:
        child = self._spawner.spawn(spec.argv, spec.log, self._env, spec.stdout)
        self._children[spec.name] = _Running(spec, child, self._clock())
        return {"event": "started", "child": spec.name, "pid": child.pid, "log": str(spec.log)}

    def running(self, name: str) -> bool:
        found = self._children.get(name)
        return found is not None and found.child is not None

    def known(self, name: str) -> bool:
        return name in self._children

    def restarts(self) -> dict[str, int]:
        return {name: r.total_restarts for name, r in self._children.items()}

    def check(self) -> list[dict[str, Any]]:
        """Notice exits, restart what is due; raises :class:`CrashLoop`."""
        events: list[dict[str, Any]] = []
        now = self._clock()
        for name, running in self._children.items():
            if running.child is not None:
                code = running.child.poll()
                if code is None:
                    continue
                running.child, running.exited_at, running.exit_code = None, now, code
                recent = [t for t in running.restarts if now - t < self.backoff.crash_window_s]
                if now - running.started_at >= self.backoff.crash_window_s:
                    recent = []  # it had been running well: a fresh start
                if len(recent) >= self.backoff.crash_limit:
                    raise CrashLoop(
                        f"{name} exited {len(recent) + 1} times in "
                        f"{self.backoff.crash_window_s:g} s (last exit code {code})",
                        hint=f"its log: {running.spec.log}",
                    )
                delay = self.backoff.delay(len(recent))
                running.restart_at = now + delay
                events.append({"event": "exited", "child": name, "exit_code": code,
                               "restart_in_s": delay, "log": str(running.spec.log)})  # fmt: skip
            elif running.restart_at is not None and now >= running.restart_at:
                spec = running.spec
                running.child = self._spawner.spawn(spec.argv, spec.log, self._env, spec.stdout)
                running.restarts.append(now)
                running.started_at, running.restart_at = now, None
                events.append({"event": "restarted", "child": name, "pid": running.child.pid,
                               "restarts": running.total_restarts,
                               "after_exit_code": running.exit_code})  # fmt: skip
        return events

    def stop(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Stop children one at a time, in the given order (default: the order they
        were started): its stop signal, then up to its grace time, then SIGKILL to its
        process group."""
        events: list[dict[str, Any]] = []
        for name in names if names is not None else list(self._children):
            running = self._children.get(name)
            if running is None or running.child is None:
                if running is not None:
                    running.restart_at = None
                continue
            code, killed = stop_child(running.child, running.spec.stop_signal,
                                      running.spec.stop_grace_s)  # fmt: skip
            running.child, running.restart_at = None, None
            events.append({"event": "stopped", "child": name, "exit_code": code,
                           "killed": killed})  # fmt: skip
        return events
