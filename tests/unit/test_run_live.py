"""`fraudctl run`'s live view: the figures from the materializer's scrapes and the
server's status (fraudctl.services.live), the run's snapshot mid-rollout on fakes, and
the screen drawn from it (fraudctl.cli.run_view)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from fraudctl.cli.run_view import render
from fraudctl.config import Settings
from fraudctl.ports import Sample
from fraudctl.services.live import (
    EVENTS,
    WRITE_DELAY,
    Observer,
    bucket_quantile,
    serving_figures,
    stream_figures,
)
from tests.fakes import FakeClock, FakeScraper, FakeServer, ScriptedSpawner
from tests.unit.test_run_loop import a_run, good_candidate, jobs, settings

__all__ = ["settings"]  # the fixture, shared with the loop's tests

INF = math.inf


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.95, [(0.5, 3.0), (1.0, 4.0), (INF, 4.0)], 0.5 + 0.5 * 0.8),  # within (0.5, 1]
        (0.5, [(0.5, 3.0), (1.0, 4.0), (INF, 4.0)], 0.5 * (2 / 3)),  # the first bucket from 0
        (0.95, [(0.5, 1.0), (1.0, 1.0), (INF, 4.0)], 1.0),  # in +Inf: the highest bound
        (1.0, [(0.5, 2.0), (INF, 2.0)], 0.5),
        (0.95, [(0.5, 0.0), (INF, 0.0)], None),  # nothing observed
        (0.95, [], None),
    ],
)
def test_bucket_quantile_is_promqls_histogram_quantile(
    q: float, buckets: list[tuple[float, float]], expected: float | None
) -> None:
    found = bucket_quantile(q, buckets)
    assert found == (None if expected is None else pytest.approx(expected))


def scrape(valid: float, delays: dict[str, float]) -> list[Sample]:
    return [Sample(EVENTS, {"outcome": "valid"}, valid),
            Sample(EVENTS, {"outcome": "dead_lettered"}, 7.0)] + [
        Sample(WRITE_DELAY, {"le": le}, count) for le, count in delays.items()]  # fmt: skip


def test_stream_figures_are_the_difference_of_two_scrapes() -> None:
    before = scrape(100, {"0.5": 90, "1.0": 100, "+Inf": 100})
    after = scrape(300, {"0.5": 100, "1.0": 290, "+Inf": 300})
    figures = stream_figures(before, after, 10.0)
    assert figures["events_per_s"] == 20.0
    # of the 200 new writes 10 within 0.5 s, 190 within 1 s: p95 (rank 190) is 1.0 s
    assert figures["freshness_p95_s"] == pytest.approx(1.0)
    idle = stream_figures(after, after, 10.0)
    assert idle == {"events_per_s": 0.0, "freshness_p95_s": None}


def test_serving_figures_per_variant() -> None:
    status = {"window_s": 60.0, "variants": {
        "canary": {"requests": 120, "p95_ms": 14.0, "error_rate": 0.0},
        "baseline": {"requests": 1080, "p95_ms": 11.0, "error_rate": 0.01}}}  # fmt: skip
    assert serving_figures(status) == {
        "baseline": {"per_s": 18.0, "p95_ms": 11.0, "error_rate": 0.01},
        "canary": {"per_s": 2.0, "p95_ms": 14.0, "error_rate": 0.0},
    }


def test_the_observer_reads_at_most_once_per_interval_and_survives_silence() -> None:
    clock, counted = FakeClock(), iter([0.0, 50.0, 100.0])
    url = "http://127.0.0.1:1/metrics"
    scraper = FakeScraper({url: lambda: scrape(next(counted), {"1.0": 0, "+Inf": 0})})
    status = {"window_s": 60.0, "variants": {"baseline": {"requests": 60}}}
    observer = Observer(scraper, url, FakeServer(answer=lambda: status), 2.0, clock)
    observer.observe(serving=False)
    observer.observe(serving=False)  # within the interval: not read again
    assert "stream" not in observer.figures and "serving" not in observer.figures
    clock.sleep(2.0)
    observer.observe(serving=True)
    assert observer.figures["stream"]["events_per_s"] == 25.0
    assert observer.figures["serving"]["baseline"]["per_s"] == 1.0
    scraper.endpoints.clear()  # the materializer restarts: no figure from across the gap
    clock.sleep(2.0)
    observer.observe(serving=True)
    scraper.endpoints[url] = scrape(500.0, {})
    clock.sleep(2.0)
    observer.observe(serving=True)
    assert observer.figures["stream"]["events_per_s"] == 25.0  # the last one seen


def test_the_snapshot_mid_rollout_draws_every_part_of_the_screen(
    settings: Settings, tmp_path: Path
) -> None:
    clock, _server, backends = good_candidate(settings)
    metrics = "http://127.0.0.1:7/metrics"
    moved = iter(range(0, 10**9, 40))
    backends.scraper.endpoints[metrics] = lambda: scrape(
        float(next(moved)), {"0.5": 0.0, "+Inf": 0.0})  # fmt: skip
    snapshots: list[dict[str, Any]] = []

    def seen(run: Any) -> None:
        if run.rollout() is not None and run.rollout()["step"] == 2 and not snapshots:
            snapshots.append(run.snapshot())

    run = a_run(backends, ScriptedSpawner(jobs("2")), clock, tmp_path, for_s=600.0,
                metrics_port=7, observe_every_s=2.0)  # fmt: skip
    run._on_tick = seen  # what the CLI's live view hooks in
    run.run()
    (snapshot,) = snapshots
    assert snapshot["rollout"] == {"version": "2", "step": 2, "weight": 25.0}
    assert set(snapshot["children"]) == {"materialize", "serve", "produce"}
    assert snapshot["children"]["serve"]["ready"] is True
    assert snapshot["last"]["train"]["result"]["version"] == "2"
    assert set(snapshot["next"]) == {"train", "drift", "quality"}
    assert [d["outcome"] for d in snapshot["decisions"]] == ["promoted", "stepped", "stepped"]
    assert snapshot["figures"]["stream"]["events_per_s"] == pytest.approx(20.0)
    assert "canary" in snapshot["figures"]["serving"]
    console = Console(record=True, width=140)
    console.print(render(snapshot, "fraudctl run · local"))
    screen = console.export_text()
    for expected in ("fraudctl run · local", "materialize", "stream 20.0 ev/s",
                     "canary: version 2 at step 2 (25 % of users)", "train", "stepped",
                     "scoring (last 60 s)", "last decisions"):  # fmt: skip
        assert expected in screen, (expected, screen)
    started = [" ".join(a[3:7]) for a in run._spawner.argvs if "materialize" in a]  # type: ignore[attr-defined]
    assert started[0] == "materialize --follow --metrics-port 7"


def test_demo_live_counts_full_cycles_and_rollbacks() -> None:
    from fraudctl.cli.demo_live import _report

    def decision(to: str, version: str, outcome: str) -> dict[str, Any]:
        return {"to": to, "version": version, "outcome": outcome, "reason": ""}

    summary = {"seconds": 300.0, "restarts": {}, "decisions": [
        decision("staging", "1", "promoted"), decision("production", "1", "promoted"),  # waived
        decision("staging", "2", "promoted"), decision("canary", "2", "stepped"),
        decision("canary", "2", "stepped"), decision("production", "2", "promoted"),
        decision("staging", "3", "promoted"), decision("canary", "3", "stepped"),
        decision("canary", "3", "rolled_back")]}  # fmt: skip
    report = _report(summary, Path("/h"))
    assert report["cycles"] == ["2"] and report["rolled_back"] == ["3"]
    assert report["logs"] == "/h/run-logs"


def test_demo_live_is_for_the_embedded_default(cli: Any) -> None:
    result = cli("--profile", "stack", "demo", "--live", "--json")
    assert result.code == 2 and "local profile" in result.json()["error"]["message"]
