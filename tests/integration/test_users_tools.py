"""fraudctl's store and models with their users' own tools — Feast's CLI, SDK and
feature server, MLflow's pyfunc and `mlflow models serve` — on the stack profile (Redis
online store with a password, S3 offline store, MLflow server).

One module-wide setup: 6,000 events of 1,000 users materialized, one trained version at
`production`, `fraudctl features repo` written, `fraudctl serve --engine uvicorn`.  The
test bodies use Feast and MLflow alone (and HTTP); fraudctl is only the setup."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraudctl.cli.main import main
from fraudctl.config import environ
from fraudctl.stack.native import free_ports
from tests.integration.conftest import REDIS_DBS, loopback_daemon
from tests.integration.test_serve import score_batch, start_server, stop_server

FEATURES = (
    "txn_count_1h", "amount_sum_24h", "amount_avg_24h", "distinct_countries_24h",
    "distinct_devices_24h", "seconds_since_last_txn", "country_seen_24h", "device_seen_24h",
    "amount_to_avg_24h",
)  # fmt: skip
REQUESTS = 1000
FEAST = str(Path(sys.executable).with_name("feast"))
MLFLOW = str(Path(sys.executable).with_name("mlflow"))


@pytest.fixture(scope="module")
def tools(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("tools-home")
    suffix = uuid.uuid4().hex[:8]
    base_url = stack_env["FRAUDCTL_REDIS_URL"].rsplit("/", 1)[0]
    env = {
        **stack_env,
        "FRAUDCTL_HOME": str(home),
        "FRAUDCTL_REDIS_URL": f"{base_url}/{next(REDIS_DBS) % 16}",
        "FRAUDCTL_TOPIC_TRANSACTIONS": f"tx-{suffix}",
        "FRAUDCTL_TOPIC_LABELS": f"labels-{suffix}",
        "FRAUDCTL_TOPIC_DLQ": f"dlq-{suffix}",
        "FRAUDCTL_CONSUMER_GROUP": f"tools-{suffix}",
        "FRAUDCTL_S3_BUCKET": f"tools-{suffix}",
        "FRAUDCTL_MODEL_NAME": f"tools-{suffix}",
    }
    repo = home / "feature_repo"
    (port,) = free_ports(("kafka",)).values()
    with environ(env):
        from fraudctl.adapters.probes import ensure_bucket, redis_client
        from fraudctl.config import load_settings

        settings = load_settings().settings
        ensure_bucket(settings)
        redis_client(settings).flushdb()
        assert main(["produce", "--rate", "0", "--count", "6000", "--users", "1000",
                     "--label-delay", "0"]) == 0  # fmt: skip
        assert main(["materialize"]) == 0
        assert main(["train"]) == 0
        import mlflow

        mlflow.set_tracking_uri(env["FRAUDCTL_MLFLOW_URI"])
        mlflow.MlflowClient().set_registered_model_alias(
            env["FRAUDCTL_MODEL_NAME"], "production", "1"
        )
        assert main(["features", "repo", "--dir", str(repo)]) == 0
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDCTL_")} | env
    server = start_server(["--engine", "uvicorn"], full_env, port)
    try:
        yield {"env": full_env, "repo": repo, "url": f"http://127.0.0.1:{port}",
               "model": env["FRAUDCTL_MODEL_NAME"]}  # fmt: skip
    finally:
        stop_server(server)


def requests_for(count: int, seed: int) -> list[dict[str, Any]]:
    """Scoring requests of known and unknown users, now, with random fields."""
    chooser = random.Random(seed)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [
        {
            "event_id": f"01J{seed:05d}{i:018d}"[:26],
            "user_id": f"user-{chooser.randrange(1100)}",
            "transaction_amount": round(chooser.uniform(1, 900), 2),
            "country": chooser.choice(["US", "BR", "DE", "IN", "GB"]),
            "device": chooser.choice(["web", "ios", "android"]),
            "event_ts": now,
        }
        for i in range(count)
    ]


def entity_rows(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("user_id", "transaction_amount", "country", "device", "event_ts")
    return [{key: request[key] for key in keys} for request in requests]


def feast_cli(tools: dict[str, Any], *args: str, repo: Path | None = None) -> str:
    done = subprocess.run(
        [FEAST, "-c", str(repo or tools["repo"]), *args],
        check=False, env=tools["env"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_feast_apply_then_plan_is_clean_and_the_cli_lists_fraudctls_views(
    tools: dict[str, Any],
) -> None:
    plan = feast_cli(tools, "plan")
    assert "No changes to registry" in plan and "No changes to infrastructure" in plan, plan
    applied = feast_cli(tools, "apply")
    assert "No changes to registry" in applied or "Deleted" not in applied, applied
    assert "No changes to registry" in feast_cli(tools, "plan")
    views = feast_cli(tools, "feature-views", "list")
    for name in ("user_state", "event_features", "transaction_features"):
        assert name in views, views
    assert "user" in feast_cli(tools, "entities", "list")


def test_online_features_through_feasts_sdk_and_feature_server_equal_v1_score(
    tools: dict[str, Any],
) -> None:
    requests = requests_for(REQUESTS, seed=1)
    scored = score_batch(tools["url"], requests)
    expected = [result["features"] for result in scored]
    assert sum(1 for f in expected if f["txn_count_1h"] > 0 or f["seconds_since_last_txn"] > 0)

    from feast import FeatureStore

    with environ({k: v for k, v in tools["env"].items() if k.startswith("FRAUDCTL_")}):
        store = FeatureStore(repo_path=str(tools["repo"]))
        online = store.get_online_features(
            features=store.get_feature_service("fraud_scoring"),
            entity_rows=entity_rows(requests),
        ).to_dict()
    assert online["user_id"] == [r["user_id"] for r in requests]
    got = [{name: online[name][i] for name in FEATURES} for i in range(REQUESTS)]
    assert got == expected

    # Feast's own feature server over HTTP, the same rows.
    port = free_ports(("feast",))["feast"]
    log = tools["repo"].parent / "feast-serve.log"
    command = [FEAST, "-c", str(tools["repo"]), "serve", "--host", "127.0.0.1", "-p", str(port)]
    health = f"http://127.0.0.1:{port}/health"
    with loopback_daemon(command, health, log, tools["env"], ready_within_s=120):
        columns = {
            key: [row[key] for row in entity_rows(requests)] for key in entity_rows(requests)[0]
        }
        response = httpx.post(
            f"http://127.0.0.1:{port}/get-online-features",
            json={"feature_service": "fraud_scoring", "entities": columns},
            timeout=60,
        )
        assert response.status_code == 200, response.text[:2000]
        body = response.json()
        names = body["metadata"]["feature_names"]
        values = {name: body["results"][k]["values"] for k, name in enumerate(names)}
        served = [{name: values[name][i] for name in FEATURES} for i in range(REQUESTS)]
        assert served == expected


def test_historical_features_through_feasts_sdk_equal_the_offline_features_table(
    tools: dict[str, Any],
) -> None:
    import pandas as pd
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
    from feast import FeatureStore

    env = tools["env"]
    endpoint = env["FRAUDCTL_S3_ENDPOINT"].split("://", 1)[1]
    s3 = pafs.S3FileSystem(
        access_key=env["FRAUDCTL_S3_ACCESS_KEY"], secret_key=env["FRAUDCTL_S3_SECRET_KEY"],
        endpoint_override=endpoint, scheme="http", region="us-east-1",
    )  # fmt: skip
    table = pq.read_table(f"{env['FRAUDCTL_S3_BUCKET']}/offline/features", filesystem=s3)
    offline = table.to_pandas().sample(REQUESTS, random_state=3)
    entity = offline[["event_id", "event_timestamp"]].reset_index(drop=True)
    aws = {
        "AWS_ACCESS_KEY_ID": env["FRAUDCTL_S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": env["FRAUDCTL_S3_SECRET_KEY"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with environ({k: v for k, v in env.items() if k.startswith("FRAUDCTL_")} | aws):
        store = FeatureStore(repo_path=str(tools["repo"]))
        got = store.get_historical_features(
            entity_df=entity, features=store.get_feature_service("fraud_training")
        ).to_df()
    got = got.set_index("event_id").loc[offline["event_id"], list(FEATURES)]
    want = offline.set_index("event_id")[list(FEATURES)]
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)


def test_mlflow_models_serve_answers_the_same_scores_as_v1_score(tools: dict[str, Any]) -> None:
    import mlflow

    requests = requests_for(REQUESTS, seed=2)
    scored = score_batch(tools["url"], requests)
    records = [
        {"transaction_amount": r["transaction_amount"], "country": r["country"],
         "device": r["device"], **s["features"]}
        for r, s in zip(requests, scored, strict=True)
    ]  # fmt: skip
    uri = f"models:/{tools['model']}@production"
    mlflow.set_tracking_uri(tools["env"]["FRAUDCTL_MLFLOW_URI"])
    info = mlflow.models.get_model_info(uri)
    assert [c.name for c in info.signature.outputs.inputs] == ["fraud_probability", "is_fraud"]
    assert [c.name for c in info.signature.inputs.inputs][:3] == [
        "transaction_amount",
        "country",
        "device",
    ]
    run = mlflow.MlflowClient().get_run(info.run_id)
    datasets = {
        {t.key: t.value for t in d.tags}["mlflow.data.context"]: d.dataset
        for d in run.inputs.dataset_inputs
    }
    assert {"training", "validation", "test"} <= set(datasets), datasets
    assert all(d.digest and "/offline/features" in d.source for d in datasets.values())

    port = free_ports(("mlflow",))["mlflow"]
    log = tools["repo"].parent / "mlflow-serve.log"
    command = [MLFLOW, "models", "serve", "-m", uri, "-h", "127.0.0.1", "-p", str(port),
               "--env-manager", "local"]  # fmt: skip
    env = tools["env"] | {
        "MLFLOW_TRACKING_URI": tools["env"]["FRAUDCTL_MLFLOW_URI"],
        # as in an activated virtualenv: MLflow starts its scoring server by name
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    with loopback_daemon(command, f"http://127.0.0.1:{port}/ping", log, env, ready_within_s=120):
        response = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            json={"dataframe_records": records}, timeout=60,
        )  # fmt: skip
        assert response.status_code == 200, response.text[:2000]
        predictions = response.json()["predictions"]
        assert [p["fraud_probability"] for p in predictions] == [s["score"] for s in scored]
        assert [p["is_fraud"] for p in predictions] == [s["decision"] == "block" for s in scored]


def test_a_feast_apply_of_another_definition_set_is_found_and_repaired(
    tools: dict[str, Any], tmp_path: Path
) -> None:
    other = tmp_path / "other_repo"
    other.mkdir()
    (other / "feature_store.yaml").write_text((tools["repo"] / "feature_store.yaml").read_text())
    (other / "defs.py").write_text(
        "from feast import Entity, ValueType\n"
        "customer = Entity(name='customer', join_keys=['customer_id'], "
        "value_type=ValueType.STRING)\n"
    )
    feast_cli(tools, "apply", repo=other)
    assert "user_state" not in feast_cli(tools, "feature-views", "list")
    done = subprocess.run(
        [sys.executable, "-m", "fraudctl", "features", "get", "user-1", "--json"],
        check=False, env=tools["env"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "differs from fraudctl's definitions" in done.stderr, done.stderr[-3000:]
    assert "create feature view user_state" in done.stderr
    plan = feast_cli(tools, "plan")
    assert "No changes to infrastructure" in plan, plan
    assert "Created" not in plan and "Updated" not in plan, plan
