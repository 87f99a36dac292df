"""The MetricsScraper port's contract, against the real adapter (prometheus_client's own
HTTP exposition on a loopback port) and the fake the run's tests use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fraudctl.errors import BackendUnavailable
from fraudctl.ports import MetricsScraper, Sample
from tests.fakes import FakeScraper

EXPECTED = [
    Sample("fraudctl_materialize_events_total", {"outcome": "valid"}, 42.0),
    Sample("fraudctl_feature_write_delay_seconds_bucket", {"le": "0.5"}, 3.0),
    Sample("fraudctl_feature_write_delay_seconds_bucket", {"le": "+Inf"}, 4.0),
]


@pytest.fixture(params=["prometheus", "memory"])
def endpoint(request: pytest.FixtureRequest) -> Iterator[tuple[MetricsScraper, str]]:
    if request.param == "memory":
        yield FakeScraper({"http://fake/metrics": EXPECTED}), "http://fake/metrics"
        return
    from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

    from fraudctl.adapters.metrics import PrometheusScraper

    registry = CollectorRegistry()
    Counter("fraudctl_materialize_events", "", ["outcome"], registry=registry).labels("valid").inc(
        42
    )
    delay = Histogram("fraudctl_feature_write_delay_seconds", "", buckets=(0.5,),
                      registry=registry)  # fmt: skip
    for seconds in (0.1, 0.2, 0.3, 2.0):
        delay.observe(seconds)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield PrometheusScraper(), f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        thread.join(5)


def test_a_scrape_returns_counters_and_histogram_buckets(endpoint: Any) -> None:
    scraper, url = endpoint
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in scraper.scrape(url)}
    for sample in EXPECTED:
        assert found[(sample.name, tuple(sorted(sample.labels.items())))] == sample.value


def test_an_endpoint_that_does_not_answer_is_backend_unavailable(endpoint: Any) -> None:
    scraper, _url = endpoint
    from fraudctl.stack.native import free_ports

    with pytest.raises(BackendUnavailable, match="do not answer"):
        scraper.scrape(f"http://127.0.0.1:{free_ports(('x',))['x']}/metrics")
