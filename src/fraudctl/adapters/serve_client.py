"""Talking to a running `fraudctl serve` (the canary commands and `promote`)."""

from __future__ import annotations

from typing import Any

from fraudctl.errors import BackendUnavailable


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
