"""Talking to a running `fraudctl serve` (the canary commands and `promote`)."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

from fraudctl.errors import BackendUnavailable
from fraudctl.ports import ScoringStats


def call_server(
    url: str, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 10
) -> Any:
    """One JSON request to the server at ``url``; BackendUnavailable when it fails."""
    import httpx

    try:
        response = httpx.request(method, url.rstrip("/") + path, json=body, timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise BackendUnavailable(
            f"server at {url}: {method} {path} failed ({exc})",
            hint="is `fraudctl serve` running there? set --url / FRAUDCTL_SERVE_URL",
        ) from exc
    return response.json()


class ServeClient:
    """:class:`fraudctl.ports.ServingControl` over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url

    def status(self, window_s: float) -> dict[str, Any]:
        found: dict[str, Any] = call_server(self.url, "GET", f"/v1/canary?window={window_s}")
        return found

    def set_canary(self, weight: float, reason: str) -> dict[str, Any]:
        body = {"weight": weight, "reason": reason}
        answer: dict[str, Any] = call_server(self.url, "POST", "/v1/canary", body)
        return answer


def _variant_of(answer: bytes) -> str:
    """The ``variant`` of a score answer; "unknown" when it has none."""
    try:
        found = json.loads(answer).get("variant")
    except (ValueError, AttributeError):
        return "unknown"
    return str(found) if found else "unknown"


class HttpScoring:
    """:class:`fraudctl.ports.ScoringClient`: ``concurrency`` threads, each with its own
    keep-alive connection, POST every submitted transaction to ``/v1/score``."""

    def __init__(self, url: str, concurrency: int = 8, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=concurrency * 2)
        self._stats = ScoringStats()
        self._lock = threading.Lock()
        self._timeout_s = timeout_s
        self._threads = [
            threading.Thread(target=self._work, name=f"score-{i}", daemon=True)
            for i in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, transaction: bytes) -> None:
        self._queue.put(transaction)

    def _work(self) -> None:
        import httpx

        with httpx.Client(timeout=self._timeout_s) as client:
            while (body := self._queue.get()) is not None:
                started = time.perf_counter()
                reason, variant = None, "unknown"
                try:
                    response = client.post(
                        self.url + "/v1/score", content=body,
                        headers={"content-type": "application/json"},
                    )  # fmt: skip
                    if response.status_code != 200:
                        reason = f"HTTP {response.status_code}"
                    else:
                        variant = _variant_of(response.content)
                except httpx.HTTPError as exc:
                    reason = type(exc).__name__
                elapsed_ms = (time.perf_counter() - started) * 1000
                with self._lock:
                    if reason is None:
                        self._stats.answered += 1
                        self._stats.latency_ms.append(elapsed_ms)
                        self._stats.variants[variant] += 1
                    else:
                        self._stats.failed += 1
                        self._stats.errors[reason] += 1

    def close(self, timeout_s: float) -> ScoringStats:
        deadline = time.monotonic() + timeout_s
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            left = sum(1 for t in self._threads if t.is_alive())
            unsent = 0
            while True:  # what the workers never took off the queue
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                unsent += item is not None
            lost = unsent + left  # each live worker holds at most one request
            seen = self._stats
            errors = seen.errors.copy()
            if lost:
                errors["timeout"] += lost
            return ScoringStats(seen.answered, seen.failed + lost, errors, list(seen.latency_ms),
                                seen.variants.copy())  # fmt: skip
