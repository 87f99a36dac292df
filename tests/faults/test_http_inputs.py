"""Client input never gets a 5xx: the bodies the probes found (non-finite numbers, lone
surrogates, a label, year 0001, non-JSON) are answered 422 with the reasons, and every
status the app answers is in its OpenAPI document.

The app is driven in-process with a stand-in scorer: these requests are refused before
any scoring, so the scorer's answers do not matter (the real server is fuzzed in
tests/integration/test_serve.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fraudctl.adapters.metrics import ServeMetrics
from fraudctl.serving.app import create_app
from fraudctl.serving.control import Control

GOOD = {
    "event_id": "01JABCDEFGHJKMNPQRSTVWXYZ0",
    "user_id": "user-1",
    "transaction_amount": 12.5,
    "country": "US",
    "device": "ios",
    "event_ts": "2026-01-01T00:00:00Z",
}


class StandInScorer:
    """Answers like the real scorer, from fixed values."""

    def __init__(self) -> None:
        self.metrics = ServeMetrics()
        self.control = Control(10)
        self.weight = 10.0
        self.shadow_on = False
        self.scored = 0
        self.variants = SimpleNamespace(describe=lambda weight, shadow: {"weight": weight})

    def score(self, transactions: list[Any], trace: Any) -> list[dict[str, Any]]:
        self.scored += len(transactions)
        return [
            {
                "event_id": t.event_id, "score": 0.1, "decision": "allow", "threshold": 0.5,
                "model_name": "m", "model_version": "1", "variant": "baseline",
                "trace_id": trace.trace_id, "features": {}, "features_age_seconds": None,
                "fallback": False,
            }
            for t in transactions
        ]  # fmt: skip

    def ready(self) -> tuple[bool, str]:
        return True, "stand-in"


@pytest.fixture
def client() -> TestClient:
    from fraudctl.serving.tracing import Tracing

    app = create_app(StandInScorer(), Tracing(None))  # type: ignore[arg-type]
    return TestClient(app, raise_server_exceptions=False)


def raw(client: TestClient, path: str, body: str | bytes) -> Any:
    return client.post(path, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    "amount", ["NaN", "Infinity", "-Infinity", "1e309", "-1e309"], ids=lambda a: a
)
def test_non_finite_amounts_are_422_not_500(client: TestClient, amount: str) -> None:
    body = json.dumps(GOOD).replace("12.5", amount)
    for path, text in (("/v1/score", body), ("/v1/score/batch", f'{{"transactions": [{body}]}}')):
        answer = raw(client, path, text)
        assert answer.status_code == 422, answer.text
        assert "transaction_amount" in answer.text
        json.loads(answer.text)  # strict JSON: no bare NaN


def test_a_lone_surrogate_user_id_is_422(client: TestClient) -> None:
    body = json.dumps(GOOD).replace('"user-1"', '"\\ud800"')
    answer = raw(client, "/v1/score", body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"][-1] == "user_id"


@pytest.mark.parametrize("weight", ["NaN", "Infinity", "1e309"])
def test_a_non_finite_canary_weight_is_422(client: TestClient, weight: str) -> None:
    answer = raw(client, "/v1/canary", f'{{"weight": {weight}}}')
    assert answer.status_code == 422, answer.text


def test_a_label_is_refused_and_the_schema_says_so(client: TestClient) -> None:
    answer = client.post("/v1/score", json=GOOD | {"label": 1})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][-1] == "label"
    assert client.post("/v1/score", json=GOOD | {"label": None}).status_code == 200
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["ScoreRequest"]["properties"]["label"]["type"] == "null"


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"])
def test_an_event_before_the_epoch_is_422(client: TestClient, ts: str) -> None:
    answer = client.post("/v1/score", json=GOOD | {"event_ts": ts})
    assert answer.status_code == 422, answer.text
    assert "1970" in answer.text


@pytest.mark.parametrize("body", [b"not json", b"{", b"\xff\xfe", b""])
def test_a_body_that_is_not_json_is_422_and_documented(client: TestClient, body: bytes) -> None:
    answer = raw(client, "/v1/score", body)
    assert answer.status_code == 422, answer.text
    document = client.get("/openapi.json").json()
    for path in ("/v1/score", "/v1/score/batch"):
        assert {"413", "422", "503"} <= set(document["paths"][path]["post"]["responses"])
    assert "422" in document["paths"]["/v1/canary"]["post"]["responses"]


def test_schemathesis_all_checks_positive_and_negative(client: TestClient) -> None:
    import schemathesis

    from tests.fuzzing import fuzz_every_operation

    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    calls, failures = fuzz_every_operation(schema, max_examples=60)
    assert not failures, "\n".join(sorted(set(failures))[:20])
    assert calls["POST /v1/score negative"] >= 30, calls
