"""Run one job as several worker processes and gather what they report.

Used where one core is the limit and the work splits without coordination: `produce`
(each worker owns a share of the users) and `materialize` (each worker owns a share of
the partitions).  Workers are *spawned*, not forked: the caller may hold threads
(librdkafka's, a test runner's) whose state a forked child would inherit half-copied.

A worker is a picklable ``target(index, *args, stop, report)``: ``stop.is_set()`` says
the parent wants it to finish; ``report(kind, data)`` sends ``"progress"`` (any number
of times) and then ``"final"`` data.  :func:`worker_main` wraps a target so that an
exception is reported with its exit code instead of killing the worker silently.
Ctrl-C reaches the parent only, which sets ``stop`` for every worker.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any

from fraudctl.errors import BackendUnavailable, ExitCode, FraudctlError


class WorkerFailed(FraudctlError):
    """A worker raised: carries the exit code its error maps to."""

    def __init__(self, message: str, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = ExitCode(exit_code)


def worker_main(
    target: Callable[..., None],
    index: int,
    args: tuple[Any, ...],
    stop: Any,
    reports: Any,
    parent: int,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _die_with(parent)

    def report(kind: str, data: Any) -> None:
        reports.put((index, kind, data))

    try:
        target(index, *args, stop=stop, report=report)
    except FraudctlError as exc:
        report("error", (f"worker {index}: {exc.message}", int(exc.exit_code), exc.hint))
    except Exception as exc:  # a bug: exit 1 with what happened
        report("error", (f"worker {index}: {type(exc).__name__}: {exc}", int(ExitCode.BUG), None))


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when its parent dies, even by SIGKILL: an
    orphaned worker would go on writing beside the next run's workers."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def run_workers(
    target: Callable[..., None],
    args: list[tuple[Any, ...]],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_report: Callable[[dict[int, Any]], None] = lambda _latest: None,
) -> dict[int, Any]:
    """Start one process per entry of ``args``; return each worker's final data.

    ``on_report`` gets the latest data of every worker that has reported, after each
    report.  If a worker fails, the others are asked to stop and the first failure is
    raised (with its exit code) once all have ended.
    """
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    reports: multiprocessing.Queue[tuple[int, str, Any]] = context.Queue()
    processes = [
        context.Process(
            target=worker_main, args=(target, k, a, stop, reports, os.getpid()), daemon=True
        )
        for k, a in enumerate(args)
    ]
    for process in processes:
        process.start()
    latest: dict[int, Any] = {}
    done: set[int] = set()
    errors: list[tuple[str, int, str | None]] = []
    while len(done) < len(processes):
        if should_stop():
            stop.set()
        try:
            k, kind, data = reports.get(timeout=0.25)
        except queue.Empty:
            for k, process in enumerate(processes):
                if k not in done and not process.is_alive() and reports.empty():
                    done.add(k)
                    errors.append(
                        (f"worker {k} exited with code {process.exitcode}", ExitCode.BUG, None)
                    )
            continue
        if kind == "error":
            done.add(k)
            errors.append(data)
            stop.set()
            continue
        latest[k] = data
        if kind == "final":
            done.add(k)
        on_report(latest)
    for process in processes:
        process.join(timeout=10)
    if errors:
        message, code, hint = errors[0]
        if code == ExitCode.BACKEND_UNAVAILABLE:
            raise BackendUnavailable(message, hint=hint)
        raise WorkerFailed(message, code, hint)
    return latest


def add_counts(total: Any, part: Any, counts: Iterable[str], tallies: Iterable[str] = ()) -> None:
    """Add one worker's summary into ``total``: the ``counts`` attributes are numbers,
    the ``tallies`` are dicts of numbers by key."""
    for name in counts:
        setattr(total, name, getattr(total, name) + getattr(part, name))
    for name in tallies:
        target = getattr(total, name)
        for key, value in getattr(part, name).items():
            target[key] = target.get(key, 0) + value
