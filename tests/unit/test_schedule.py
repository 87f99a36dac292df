"""Wall-clock job intervals (fraudctl.schedule): on a fixed grid, a run that overruns is
not stacked, the grid points it overran are counted as skipped."""

from __future__ import annotations

import pytest

from fraudctl.schedule import Every, next_due


def test_on_time_runs_follow_the_grid() -> None:
    job = Every("train", 60.0, next_at=100.0)
    assert not job.due(99.9) and job.due(100.0) and job.wait(90.0) == 10.0
    job.ran(finished=130.0)
    assert (job.next_at, job.runs, job.skipped) == (160.0, 1, 0)


@pytest.mark.parametrize(
    ("finished", "next_at", "skipped"),
    [(100.0, 160.0, 0), (159.9, 160.0, 0), (160.0, 220.0, 1), (161.0, 220.0, 1),
     (400.0, 460.0, 5)],
)  # fmt: skip
def test_an_overrun_is_not_stacked(finished: float, next_at: float, skipped: int) -> None:
    job = Every("drift", 60.0, next_at=100.0)
    job.ran(finished)
    assert (job.next_at, job.skipped) == (next_at, skipped)
    assert job.next_at > finished  # never due again the moment it ends
    assert not job.due(finished)


def test_the_job_that_waited_longest_goes_first() -> None:
    jobs = [Every("train", 3600.0, 50.0), Every("drift", 900.0, 10.0),
            Every("quality", 300.0, 200.0)]  # fmt: skip
    assert next_due(jobs, 5.0) is None
    assert next_due(jobs, 60.0) is jobs[1]
    jobs[1].ran(61.0)
    assert next_due(jobs, 62.0) is jobs[0]


def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Every("x", 0.0, 0.0)
