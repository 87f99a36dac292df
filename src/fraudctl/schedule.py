"""Jobs on wall-clock intervals (`fraudctl run`): each job is due on a fixed grid
(``first``, ``first + every``, …).  A run that takes longer than its interval is not
stacked: the job is next due on the first grid point after it finished, and the grid
points it overran are counted as skipped, not run in a burst.  Pure: times are the
caller's clock, in seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Every:
    name: str
    every_s: float
    next_at: float
    runs: int = 0
    skipped: int = 0  # grid points that passed while a run was still going

    def __post_init__(self) -> None:
        if self.every_s <= 0:
            raise ValueError(f"{self.name}: the interval must be positive, not {self.every_s}")

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def ran(self, finished: float) -> None:
        """The run that was due at ``next_at`` ended at ``finished`` (well or not: a job
        that failed is retried at its next interval)."""
        self.runs += 1
        passed = max(0, math.floor((finished - self.next_at) / self.every_s))
        self.skipped += passed
        self.next_at += (passed + 1) * self.every_s

    def begin_at(self, now: float) -> None:
        """The grid begins again: first due one interval after ``now``."""
        self.next_at = now + self.every_s

    def wait(self, now: float) -> float:
        """Seconds until due (0 when due)."""
        return max(0.0, self.next_at - now)


def next_due(jobs: list[Every], now: float) -> Every | None:
    """The job that is due and has waited longest (earliest ``next_at``), or None."""
    due = [job for job in jobs if job.due(now)]
    return min(due, key=lambda job: job.next_at) if due else None
