"""A registry that does not answer is exit 3 naming it — decided from the failure's type
(the transport error on MLflow's exception chain), not from its message."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fraudctl.adapters.registry import Registry
from fraudctl.config import load_settings
from fraudctl.errors import BackendUnavailable, ExitCode


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")  # retry, but at once
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")


def registry_at(uri: str, home: Path) -> Registry:
    environ = {"FRAUDCTL_HOME": str(home), "FRAUDCTL_MLFLOW_URI": uri}
    return Registry(load_settings(environ=environ, cwd=home).settings)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def failing_server() -> Iterator[str]:
    class Answer503(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"upstream down")

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer503)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_nothing_listening_is_backend_unavailable(tmp_path: Path) -> None:
    registry = registry_at(f"http://127.0.0.1:{closed_port()}", tmp_path)
    with pytest.raises(BackendUnavailable, match=r"MLflow registry at http://127\.0\.0\.1") as err:
        registry.aliases(["production"])
    assert err.value.exit_code == ExitCode.BACKEND_UNAVAILABLE


def test_a_server_answering_5xx_is_backend_unavailable(tmp_path: Path, failing_server: str) -> None:
    with pytest.raises(BackendUnavailable, match="MLflow registry at"):
        registry_at(failing_server, tmp_path).aliases(["production"])


def test_an_alias_that_does_not_exist_is_none_not_unavailable(tmp_path: Path) -> None:
    registry = registry_at(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path)
    assert registry.aliases(["production"]) == {"production": None}
