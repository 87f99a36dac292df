"""The ScoringClient port (`produce --score`): the HTTP client against a real local HTTP
server, and the recording fake, under one contract; then produce feeding it."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fraudctl.ports import ScoringClient
from tests.conftest import RunCli
from tests.fakes import RecordingScoring


class Server:
    """A stand-in payment-facing endpoint: 200 for every body, 500 for one holding
    "fail"; records what it was sent and how many requests were in flight at most."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.received: list[bytes] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with owner.lock:
                    owner.in_flight += 1
                    owner.most_in_flight = max(owner.most_in_flight, owner.in_flight)
                time.sleep(delay_s)
                with owner.lock:
                    owner.in_flight -= 1
                    owner.received.append(body)
                ok = self.path == "/v1/score" and b"fail" not in body
                # An answer names the variant that gave it, as fraudctl serve's does.
                answer = json.dumps({"score": 0.1, "variant": "baseline"}).encode()
                self.send_response(200 if ok else 500)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.close()


@pytest.fixture(params=["http", "memory"])
def client(request: pytest.FixtureRequest, server: Server) -> tuple[ScoringClient, Any]:
    from fraudctl.adapters.serve_client import HttpScoring

    if request.param == "memory":
        fake = RecordingScoring()
        return fake, lambda: fake.submitted
    return HttpScoring(server.url, concurrency=4), lambda: server.received


def test_every_submitted_transaction_is_sent_once_and_answered(client: Any) -> None:
    scoring, received = client
    bodies = [json.dumps({"event_id": f"e{i}"}).encode() for i in range(300)]
    for body in bodies:
        scoring.submit(body)
    stats = scoring.close(30)
    assert sorted(received()) == sorted(bodies)
    assert (stats.answered, stats.failed) == (300, 0) and not stats.errors
    assert len(stats.latency_ms) == 300 and all(ms >= 0 for ms in stats.latency_ms)
    assert stats.variants == {"baseline": 300}


def test_the_http_client_bounds_what_is_in_flight_and_counts_errors() -> None:
    from fraudctl.adapters.serve_client import HttpScoring

    slow = Server(delay_s=0.02)
    try:
        scoring = HttpScoring(slow.url, concurrency=3)
        for i in range(60):
            scoring.submit(b'{"fail": 1}' if i % 10 == 0 else b'{"ok": 1}')
        stats = scoring.close(30)
    finally:
        slow.close()
    assert slow.most_in_flight <= 3
    assert (stats.answered, stats.failed) == (54, 6) and stats.errors == {"HTTP 500": 6}


def test_nothing_listening_counts_failures_and_never_raises() -> None:
    from fraudctl.adapters.serve_client import HttpScoring
    from fraudctl.stack.native import free_ports

    port = free_ports(("kafka",))["kafka"]
    scoring = HttpScoring(f"http://127.0.0.1:{port}", concurrency=2)
    for _ in range(5):
        scoring.submit(b"{}")
    stats = scoring.close(30)
    assert stats.answered == 0 and stats.failed == 5 and stats.errors == {"ConnectError": 5}


def test_produce_scores_every_valid_event_and_only_those(tmp_path: Path) -> None:
    from fraudctl.adapters.filelog import FileLogBus
    from fraudctl.generator import GeneratorOptions
    from fraudctl.services.produce import ProducePlan, produce

    bus = FileLogBus(tmp_path / "bus")
    bus.ensure_topics(["tx", "labels"], 2)
    plan = ProducePlan(rate=0, count=2000, duration=None, label_delay=0, invalid_rate=0.05,
                       start=time.time() - 60, topic_transactions="tx", topic_labels="labels",
                       delivery_timeout_s=30)  # fmt: skip
    scoring = RecordingScoring()
    summary = produce(bus.producer(delivery_timeout_s=30), GeneratorOptions(seed=3), plan,
                      scoring=scoring)  # fmt: skip
    consumer = bus.consumer("g", ["tx"])
    published: list[str] = []
    while batch := consumer.poll(5000, 0.2):
        for record in batch:
            with contextlib.suppress(ValueError, KeyError, TypeError):  # injected invalid
                published.append(json.loads(record.value)["event_id"])
    consumer.close()
    scored = [json.loads(body)["event_id"] for body in scoring.submitted]
    assert summary.invalid_injected > 0 and scoring.closed
    assert len(scored) == 2000 - summary.invalid_injected == summary.scored
    assert set(scored) <= set(published) and len(set(scored)) == len(scored)


def test_produce_score_through_the_cli(cli: RunCli, tmp_path: Path, server: Server) -> None:
    result = cli("--home", str(tmp_path), "produce", "--rate", "0", "--count", "500",
                 "--label-delay", "0", "--score", server.url, "--json")  # fmt: skip
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["scored"] == 500 and summary["score_failed"] == 0
    assert summary["score_url"] == server.url and summary["score_p95_ms"] is not None
    assert summary["workers"] == 1  # one client: --score keeps one producer by default
    assert summary["score_variants"] == {"baseline": 500}
    sent = {json.loads(body)["event_id"] for body in server.received}
    assert len(sent) == 500


def test_produce_score_to_nothing_exits_3_naming_the_url(cli: RunCli, tmp_path: Path) -> None:
    from fraudctl.stack.native import free_ports

    url = f"http://127.0.0.1:{free_ports(('kafka',))['kafka']}"
    result = cli("--home", str(tmp_path), "produce", "--rate", "0", "--count", "50",
                 "--label-delay", "0", "--score", url)  # fmt: skip
    assert result.code == 3 and url in result.err and "answered none of 50" in result.err
