"""`fraudctl serve` on real Ray Serve with the stack profile: MLflow server, S3, and a
private Redis online store (stopped and restarted by the last test); `fraudctl canary`.

One module-wide setup: 20,000 events materialized, two trained versions (production=1,
staging=2, candidate=2), then `fraudctl serve --canary 20 --shadow` under Ray and, for
comparisons, `fraudctl serve --engine uvicorn` without shadow on the same data."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from fraudctl.cli.main import main
from fraudctl.config import environ
from fraudctl.generator import ulid_from
from fraudctl.stack.native import free_ports, private_stack_env

USERS = 10_000


def event(user: int, amount: float | None = None, device: str = "ios") -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "event_id": ulid_from(int(now.timestamp() * 1000), random.getrandbits(80)),
        "user_id": f"user-{user}",
        "transaction_amount": amount if amount is not None else round(random.uniform(1, 300), 2),
        "country": "US",
        "device": device,
        "event_ts": now.isoformat().replace("+00:00", "Z"),
    }


def start_server(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "fraudctl", "serve", "--port", str(port), "--json", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # one JSON object once every replica is up
    if not line:
        process.wait(timeout=30)
        raise AssertionError(f"serve exited {process.returncode}: {process.stderr.read()[-3000:]}")
    assert json.loads(line)["url"] == f"http://127.0.0.1:{port}"
    return process


def stop_server(process: subprocess.Popen[str]) -> None:
    process.send_signal(2)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def served(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("serve-home")
    redis_env = private_stack_env(home / "redis", ("redis",))
    suffix = uuid.uuid4().hex[:8]
    env = {
        **stack_env,
        "FRAUDCTL_HOME": str(home),
        "FRAUDCTL_REDIS_URL": redis_env["FRAUDCTL_REDIS_URL"],
        "FRAUDCTL_REDIS_PASSWORD": redis_env["FRAUDCTL_REDIS_PASSWORD"],
        "FRAUDCTL_TOPIC_TRANSACTIONS": f"tx-{suffix}",
        "FRAUDCTL_TOPIC_LABELS": f"labels-{suffix}",
        "FRAUDCTL_TOPIC_DLQ": f"dlq-{suffix}",
        "FRAUDCTL_CONSUMER_GROUP": f"serve-{suffix}",
        "FRAUDCTL_S3_BUCKET": f"serve-{suffix}",
        "FRAUDCTL_MODEL_NAME": f"serve-{suffix}",
    }
    with environ(redis_env | {"FRAUDCTL_HOME": str(home / "redis")}):
        assert main(["stack", "up", "--native", "--only", "redis"]) == 0
    ray_port, plain_port = free_ports(("kafka", "s3")).values()
    processes: list[subprocess.Popen[str]] = []
    try:
        with environ(env):
            assert main(["produce", "--rate", "0", "--count", "20000", "--label-delay", "0"]) == 0
            assert main(["materialize"]) == 0
            assert main(["train"]) == 0
            assert main(["train", "--seed", "1"]) == 0
            import mlflow

            mlflow.set_tracking_uri(env["FRAUDCTL_MLFLOW_URI"])
            client = mlflow.MlflowClient()
            client.set_registered_model_alias(env["FRAUDCTL_MODEL_NAME"], "production", "1")
            client.set_registered_model_alias(env["FRAUDCTL_MODEL_NAME"], "staging", "2")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDCTL_")} | env
        ray_server = start_server(["--canary", "20", "--shadow"], full_env, ray_port)
        processes.append(ray_server)
        plain = start_server(["--engine", "uvicorn", "--canary", "20"], full_env, plain_port)
        processes.append(plain)
        yield {
            "env": env,
            "full_env": full_env,
            "redis_env": redis_env | {"FRAUDCTL_HOME": str(home / "redis")},
            "url": f"http://127.0.0.1:{ray_port}",
            "plain": f"http://127.0.0.1:{plain_port}",
            "client": client,
        }
    finally:
        for process in processes:
            stop_server(process)
        with environ(redis_env | {"FRAUDCTL_HOME": str(home / "redis")}):
            main(["stack", "down", "--native"])


def score_batch(url: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for start in range(0, len(events), 1000):
        response = httpx.post(
            f"{url}/v1/score/batch", json={"transactions": events[start : start + 1000]}, timeout=60
        )
        assert response.status_code == 200, response.text
        results += response.json()["results"]
    return results


def test_canary_split_is_within_1_5_points_and_sticky(served: dict[str, Any]) -> None:
    events = [event(i % USERS) for i in range(10_000)]
    first = score_batch(served["url"], events)
    share = sum(r["variant"] == "canary" for r in first) / len(first)
    assert abs(share - 0.20) <= 0.015, share
    versions = Counter((r["variant"], r["model_version"]) for r in first)
    assert set(versions) == {("baseline", "1"), ("canary", "2")}, versions
    again = score_batch(served["url"], [event(i % USERS) for i in range(10_000)])
    assert [r["variant"] for r in again] == [r["variant"] for r in first]  # sticky per user


def test_shadow_never_changes_a_response_and_its_agreement_is_recorded(
    served: dict[str, Any],
) -> None:
    events = [event(random.randrange(USERS)) for _ in range(500)]
    with_shadow = score_batch(served["url"], events)
    without = score_batch(served["plain"], events)
    keys = ("event_id", "score", "decision", "variant", "model_version", "features", "threshold")
    assert [{k: r[k] for k in keys} for r in with_shadow] == [
        {k: r[k] for k in keys} for r in without
    ]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{served['url']}/metrics").text
        if "fraudctl_shadow_decisions_total" in metrics:
            break
        time.sleep(0.5)
    assert 'fraudctl_shadow_decisions_total{agree="true"}' in metrics
    status = httpx.get(f"{served['url']}/v1/canary?window=600").json()
    assert status["variants"]["baseline"]["shadow_agreement"] is not None
    models = httpx.get(f"{served['url']}/v1/models").json()
    assert models["shadow"]["alias"] == "candidate" and models["shadow"]["model_version"] == "2"


def test_endpoints_bad_input_and_trace_ids(served: dict[str, Any]) -> None:
    url = served["url"]
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{url}/ready").status_code == 200
    one = httpx.post(f"{url}/v1/score", json=event(7))
    assert one.status_code == 200
    body = one.json()
    assert body["trace_id"] in one.headers["traceparent"]
    assert 0 <= body["score"] <= 1 and body["decision"] in ("allow", "block")
    assert set(body["features"]) >= {"txn_count_1h", "amount_to_avg_24h"}
    bad = event(7) | {"country": "XX", "transaction_amount": -1}
    invalid = httpx.post(f"{url}/v1/score", json=bad)
    assert invalid.status_code == 422
    fields = {tuple(e["loc"])[-1] for e in invalid.json()["detail"]}
    assert {"country", "transaction_amount"} <= fields
    labelled = httpx.post(f"{url}/v1/score", json=event(7) | {"label": 1})
    assert labelled.status_code == 422 and "label" in labelled.text
    huge = httpx.post(
        f"{url}/v1/score", content=b'{"x": "' + b"a" * 70_000 + b'"}',
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert huge.status_code == 413
    too_many = httpx.post(
        f"{url}/v1/score/batch", json={"transactions": [event(1)] * 1001}, timeout=30
    )
    assert too_many.status_code in (413, 422) and "1000" in too_many.text
    metrics = httpx.get(f"{url}/metrics").text
    for name in (
        "fraudctl_requests_total",
        "fraudctl_request_latency_seconds_bucket",
        "fraudctl_feature_fetch_seconds_bucket",
        "fraudctl_model_seconds_bucket",
        "fraudctl_score_bucket",
        "fraudctl_canary_weight_percent 20.0",
        "fraudctl_feature_freshness_seconds",
    ):
        assert name in metrics, name
