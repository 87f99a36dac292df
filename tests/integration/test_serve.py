"""`fraudctl serve` on real Ray Serve with the stack profile: MLflow server, S3, and a
private Redis online store (stopped and restarted by the last test); `fraudctl canary`.

One module-wide setup: 20,000 events materialized, two trained versions (production=1,
staging=2, candidate=2), then `fraudctl serve --canary 20 --shadow` under Ray and, for
comparisons, `fraudctl serve --engine uvicorn` without shadow on the same data."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fraudctl.cli.main import main
from fraudctl.config import environ, load_settings
from fraudctl.generator import ulid_from
from fraudctl.serving.prediction_log import LOG_FLUSH_S
from fraudctl.stack.native import free_ports, private_stack_env
from tests.integration.models import worse_version

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
    ready = json.loads(line)
    assert ready["url"] == f"http://127.0.0.1:{port}"
    assert ready["ingress"] == expected_ingress(args)
    return process


def expected_ingress(args: list[str]) -> str | None:
    if "uvicorn" in args:
        return None
    return args[args.index("--ingress") + 1] if "--ingress" in args else "direct"


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


def a_fresh_second() -> datetime:
    """The next whole second, once it has begun: a window that starts there holds no
    request of an earlier test (windows and the log's filters are second-precise)."""
    now = datetime.now(UTC)
    start = now.replace(microsecond=0) + timedelta(seconds=1)
    time.sleep((start - now).total_seconds())
    return start


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

    # Every scored request reaches the prediction log (Parquet in S3), with its shadow score.
    from fraudctl.adapters.offline import open_offline

    wanted = {e["event_id"] for e in events}
    deadline = time.monotonic() + 30
    with environ(served["env"]):
        offline = open_offline(load_settings().settings)
        while True:
            table = offline.read("predictions")
            logged = (
                table.filter(pa_is_in(table["event_id"], list(wanted))).to_pylist()
                if table.num_rows
                else []
            )
            shadowed = [row for row in logged if row["shadow_version"] == "2"]
            if {row["event_id"] for row in shadowed} == wanted:  # the Ray server's rows
                break
            assert time.monotonic() < deadline, "prediction log not written in 30 s"
            time.sleep(1)
    assert all(0 <= row["shadow_score"] <= 1 for row in shadowed)
    assert {row["model_version"] for row in logged} <= {"1", "2"}


def test_served_traffic_with_its_labels_gives_quality_equal_to_a_brute_force_join(
    served: dict[str, Any], cli: Any
) -> None:
    """`produce --score` posts each event to the server as the payment system would; its
    labels follow on the labels topic; `quality` joins them.  Every figure of every
    variant equals the definition recomputed here from the offline tables."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import average_precision_score, roc_auc_score

    from fraudctl.adapters.offline import open_offline

    started = a_fresh_second()
    env = served["env"]
    with environ(env):
        produced = cli("produce", "--rate", "0", "--count", "4000", "--label-delay", "0",
                       "--seed", "21", "--population-seed", "0", "--score", served["url"],
                       "--json")  # fmt: skip
        assert produced.code == 0, produced.err
        assert produced.json()["scored"] == 4000 and produced.json()["score_failed"] == 0
        assert main(["materialize"]) == 0  # the labels reach the offline store
        settings = load_settings().settings
    offline = open_offline(settings)

    def logged_since_start() -> Any:
        import pyarrow.dataset as ds

        return offline.read("predictions", None, ds.field("scored_at") >= started).to_pandas()

    deadline = time.monotonic() + LOG_FLUSH_S + 30
    while len(logged_since_start()) < 4000 and time.monotonic() < deadline:
        time.sleep(1)
    assert len(logged_since_start()) == 4000
    ended = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    window = f"{started:%Y-%m-%dT%H:%M:%SZ}/{ended:%Y-%m-%dT%H:%M:%SZ}"
    with environ(env):
        measured = cli("quality", "--window", window, "--json")
    assert measured.code == 0, measured.err
    result = {g["group"]: g for g in measured.json()["groups"]}
    assert set(result) == {"baseline", "canary", "shadow"}

    predictions = offline.read("predictions").to_pandas()
    predictions = predictions[(predictions["scored_at"] >= pd.Timestamp(started))
                              & (predictions["scored_at"] <= pd.Timestamp(ended))]  # fmt: skip
    labels = offline.read("labels", ["event_id", "label"]).to_pandas().drop_duplicates("event_id")
    joined = predictions.merge(labels, on="event_id", how="inner")
    assert len(joined) == len(predictions) == 4000  # every served event got its label
    for variant in ("baseline", "canary"):
        part = joined[joined["variant"] == variant]
        y, s, blocked = part["label"], part["score"], part["decision"] == "block"
        figures = result[variant]["figures"]
        assert result[variant]["counts"]["labeled"] == len(part)
        assert figures["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert figures["pr_auc"]["value"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        tp = int((blocked & (y == 1)).sum())
        assert figures["recall_at_threshold"]["value"] == pytest.approx(tp / y.sum())
        assert figures["brier"]["value"] == pytest.approx(float(((s - y) ** 2).mean()))
    shadow = joined[joined["shadow_score"].notna()]
    assert result["shadow"]["counts"]["labeled"] == len(shadow) == 4000
    assert result["shadow"]["figures"]["roc_auc"]["value"] == pytest.approx(
        roc_auc_score(shadow["label"], shadow["shadow_score"]), abs=1e-12
    )
    share = len(joined[joined["variant"] == "canary"]) / len(joined)
    assert 0.1 < share < 0.3 and np.isfinite(result["canary"]["figures"]["roc_auc"]["value"])


def pa_is_in(column: Any, values: list[str]) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.is_in(column, value_set=pa.array(values))


def _traffic_for_dashboards(served: dict[str, Any], pushgateway: str) -> None:
    """Batches (canary + shadow) and single requests; served traffic that gets its labels
    (the follower materializes them); then a drift and a quality run push their gauges."""
    score_batch(served["url"], [event(random.randrange(USERS)) for _ in range(2000)])
    for user in range(20):
        assert httpx.post(f"{served['url']}/v1/score", json=event(user)).status_code == 200
    started = a_fresh_second()
    with environ(served["env"]):
        # Served traffic that gets its labels (the follower materializes them).
        assert main(["produce", "--rate", "0", "--count", "4000", "--label-delay", "0",
                     "--seed", "31", "--score", served["url"]]) == 0  # fmt: skip
    time.sleep(LOG_FLUSH_S + 1)  # the requests above reach the prediction log
    with environ(served["env"] | {"FRAUDCTL_PUSHGATEWAY_URL": pushgateway}):
        assert main(["drift", "--current", "last:1h"]) in (0, 4)
        window = f"{started:%Y-%m-%dT%H:%M:%SZ}/{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
        deadline = time.monotonic() + 60
        while main(["quality", "--window", window]) != 0:  # labels still arriving
            assert time.monotonic() < deadline, "quality never had its labels"
            time.sleep(2)
    # What `fraudctl run` pushes mid-rollout, through the same function and adapter.
    from fraudctl.adapters.metrics import Pushgateway
    from fraudctl.services.run import RUN_JOB, run_gauges

    gauges = run_gauges({"version": "2", "step": 1, "weight": 20.0}, {"materialize": 1},
                        ["promoted", "stepped", "rolled_back"])  # fmt: skip
    assert Pushgateway(pushgateway).push(RUN_JOB, {"model": "fraud"}, gauges) is None


def test_every_dashboard_panel_and_alert_has_data_in_a_real_prometheus(
    served: dict[str, Any], pushgateway: str, tmp_path: Path
) -> None:
    """compose/'s Prometheus config, with its targets swapped for live ones: this server
    (canary 20 % + shadow), `materialize --follow` and a Pushgateway that real drift and
    quality runs pushed to (quality on traffic `produce --score` sent, its labels
    materialized by the follower). Every panel expression and every alert measure must
    return data."""
    from tests.integration.conftest import loopback_daemon
    from tests.promql import PROMETHEUS_CONFIG, RULES, alert_measure, alert_rules, panel_queries

    ports = free_ports(("prometheus", "materialize"))
    follow = subprocess.Popen(
        [sys.executable, "-m", "fraudctl", "materialize", "--follow", "--flush-interval", "1",
         "--metrics-port", str(ports["materialize"])],
        env=served["full_env"], stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "materialize.log").open("w"),
    )  # fmt: skip
    live = {
        "fraudctl-serve": served["url"].removeprefix("http://"),
        "fraudctl-materialize": f"127.0.0.1:{ports['materialize']}",
        "pushgateway": pushgateway.removeprefix("http://"),
        "prometheus": f"127.0.0.1:{ports['prometheus']}",
    }
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == set(live)
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(RULES)]
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [live[job["job_name"]]]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = f"http://{live['prometheus']}"
    command = [
        "prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address={live['prometheus']}",
    ]  # fmt: skip
    try:
        with loopback_daemon(command, f"{prometheus}/-/ready", tmp_path / "prometheus.log"):
            _traffic_for_dashboards(served, pushgateway)
            queries = panel_queries() + [
                (f"alert {rule['alert']}", alert_measure(rule["expr"])) for rule in alert_rules()
            ]
            deadline = time.monotonic() + 60
            while True:
                empty = [name for name, expr in queries if not instant(prometheus, expr)]
                if not empty or time.monotonic() > deadline:
                    break
                time.sleep(2)
            assert not empty, f"no data for: {empty}"
            rules = httpx.get(f"{prometheus}/api/v1/rules").json()["data"]["groups"]
            evaluated = {r["name"]: r for group in rules for r in group["rules"]}
            assert set(evaluated) == {rule["alert"] for rule in alert_rules()}
            assert all(r["health"] == "ok" for r in evaluated.values()), evaluated
            # The values are live ones, not placeholders: the split and the PSI are real.
            canary = instant(
                prometheus,
                'sum(fraudctl_requests_total{variant="canary"}) / sum(fraudctl_requests_total)',
            )
            assert 0.15 < float(canary[0]["value"][1]) < 0.25
            psi = instant(prometheus, "fraudctl_drift_psi")
            assert {s["metric"]["feature"] for s in psi} >= {"transaction_amount", "score"}
            auc = instant(prometheus, 'fraudctl_quality_roc_auc{by="variant",bound="value"}')
            assert {s["metric"]["group"] for s in auc} == {"baseline", "canary", "shadow"}
            assert all(0.5 < float(s["value"][1]) <= 1.0 for s in auc)
    finally:
        follow.send_signal(2)
        follow.wait(timeout=60)


def test_no_secret_reaches_a_log_an_artifact_the_registry_or_the_prediction_log(
    served: dict[str, Any], stack_env: dict[str, str], tmp_path: Path
) -> None:
    """After produce → materialize → train (twice) → serve with canary and shadow → drift:
    the S3 keys and Redis passwords appear in no file of the stack's or the server's home
    and Ray's logs (but the two 0600 files the servers read them from), in no MLflow
    param, tag, metric name or artifact, in no prediction-log row, and in no output of
    `config show`, `doctor` or the server's endpoints."""
    score_batch(served["url"], [event(random.randrange(USERS)) for _ in range(200)])
    names = ("FRAUDCTL_S3_ACCESS_KEY", "FRAUDCTL_S3_SECRET_KEY", "FRAUDCTL_REDIS_PASSWORD")
    secrets = {served["env"][n] for n in names} | {stack_env["FRAUDCTL_REDIS_PASSWORD"]}
    assert len(secrets) == 4 and all(len(s) >= 16 for s in secrets)
    credential_files = {"redis.conf", "identities.json"}  # what the servers authenticate with
    texts: dict[str, bytes] = {}
    roots = [Path(stack_env["FRAUDCTL_HOME"]), Path(served["env"]["FRAUDCTL_HOME"])]
    roots += sorted(Path("/tmp/ray").glob("session_*/logs"))
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            if path.name in credential_files:
                assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
                continue
            texts[str(path)] = path.read_bytes()
    assert any(name.endswith(".log") for name in texts), "no log files found to check"

    client = served["client"]
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            texts[f"run {run.info.run_id}"] = json.dumps(
                [run.data.params, run.data.tags, sorted(run.data.metrics)]
            ).encode()
            folder = tmp_path / run.info.run_id
            client.download_artifacts(run.info.run_id, "", str(folder))
            for path in folder.rglob("*"):
                if path.is_file():
                    texts[f"artifact {path}"] = path.read_bytes()
    for version in client.search_model_versions(f"name='{served['env']['FRAUDCTL_MODEL_NAME']}'"):
        texts[f"version {version.version}"] = json.dumps(version.tags).encode()

    from fraudctl.adapters.offline import open_offline

    deadline = time.monotonic() + 30
    with environ(served["env"]):
        while not (logged := open_offline(load_settings().settings).read("predictions")).num_rows:
            assert time.monotonic() < deadline, "prediction log not written in 30 s"
            time.sleep(1)
    texts["prediction log"] = json.dumps(logged.to_pylist(), default=str).encode()
    for path in ("/metrics", "/v1/models", "/v1/canary", "/ready"):
        texts[path] = httpx.get(served["url"] + path).content
    for args in (["config", "show", "--json"], ["doctor", "--json"], ["config", "show"]):
        done = subprocess.run(
            [sys.executable, "-m", "fraudctl", *args],
            env=served["full_env"], capture_output=True, check=False,
        )  # fmt: skip
        texts[" ".join(args)] = done.stdout + done.stderr
        assert done.stdout, args

    leaks = sorted(
        (where, secret[:4] + "…")
        for where, text in texts.items()
        for secret in secrets
        if secret.encode() in text
    )
    assert not leaks, leaks


def instant(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    assert response.status_code == 200, (expr, response.text)
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


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


def test_an_alias_moved_under_load_switches_within_30s_without_failures(
    served: dict[str, Any],
) -> None:
    url, client = served["url"], served["client"]
    seen: list[tuple[float, int, str | None]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                try:
                    response = http.post(f"{url}/v1/score", json=event(random.randrange(USERS)))
                except httpx.HTTPError:
                    seen.append((time.monotonic(), 0, None))
                    continue
                body = response.json() if response.status_code == 200 else {}
                version = body.get("model_version") if body.get("variant") == "baseline" else None
                seen.append((time.monotonic(), response.status_code, version))
                time.sleep(0.01)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        moved_at = time.monotonic()
        client.set_registered_model_alias(served["env"]["FRAUDCTL_MODEL_NAME"], "production", "2")
        switched_at = None
        while time.monotonic() - moved_at < 45 and switched_at is None:
            time.sleep(0.5)
            switched_at = next((t for t, _, v in seen if t > moved_at and v == "2"), None)
        time.sleep(2)  # keep the load on past the switch
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    failed = [s for s in seen if s[1] != 200]
    assert not failed, failed[:5]
    assert switched_at is not None and switched_at - moved_at <= 30, "not switched in 30 s"
    after = [v for t, _, v in seen if t > switched_at + 1 and v is not None]
    assert after and set(after) == {"2"}
    assert len(seen) > 200


def _faulty_version(served: dict[str, Any]) -> str:
    """A real model that raises on a share of requests: its encoder never saw 'web'."""
    import mlflow
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    from fraudctl.contract import COUNTRIES
    from fraudctl.model import MODEL_INPUTS, trusted_types

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({name: rng.random(400) for name in MODEL_INPUTS})
    frame["country"] = rng.choice(list(COUNTRIES), 400)
    frame["device"] = rng.choice(["ios", "android"], 400)
    numeric = [c for c in MODEL_INPUTS if c not in ("country", "device")]
    pipeline = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [
                        ("categories", OrdinalEncoder(), ["country", "device"]),
                        ("numbers", "passthrough", numeric),
                    ]
                ),
            ),
            ("classify", HistGradientBoostingClassifier(max_iter=5)),
        ]
    ).fit(frame, rng.integers(0, 2, 400))
    mlflow.set_tracking_uri(served["env"]["FRAUDCTL_MLFLOW_URI"])
    name = served["env"]["FRAUDCTL_MODEL_NAME"]
    info = mlflow.sklearn.log_model(
        pipeline,
        name="model",
        serialization_format="skops",
        skops_trusted_types=trusted_types("hgb"),
        registered_model_name=name,
        metadata={"threshold": 0.5},
    )
    return str(info.registered_model_version)


def canary_at_half(served: dict[str, Any], cli: Any, version: str) -> None:
    """``version`` as ``staging``, the canary at 50 %; returns once the server serves it."""
    url = served["url"]
    served["client"].set_registered_model_alias(served["env"]["FRAUDCTL_MODEL_NAME"],
                                                 "staging", version)  # fmt: skip
    assert cli("canary", "set", "50", "--reason", f"try version {version}").code == 0
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/v1/models").json()["canary"]["model_version"] != version:
        assert time.monotonic() < deadline, "the canary was not reloaded in 30 s"
        time.sleep(0.5)


def test_a_failing_canary_is_rolled_back_by_watch(
    served: dict[str, Any], cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, client = served["url"], served["client"]
    version = _faulty_version(served)
    monkeypatch.setenv("FRAUDCTL_SERVE_URL", url)
    canary_at_half(served, cli, version)
    devices = ["ios", "android", "web"]
    for i in range(600):
        response = httpx.post(f"{url}/v1/score", json=event(i, device=devices[i % 3]))
        assert response.status_code == 200  # a broken canary never fails a request
    time.sleep(2.5)  # statistics reach the control plane every second
    status = cli("canary", "status", "--window", "5m", "--json").json()
    assert status["variants"]["canary"]["errors"] > 0
    # The promotion gate reads the same serving metrics: a canary erring on more than 1 %
    # of its requests is refused production.
    for key, value in served["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FRAUDCTL_PROMOTE_CANARY_MIN_REQUESTS", "100")
    name = served["env"]["FRAUDCTL_MODEL_NAME"]
    production = client.get_model_version_by_alias(name, "production").version
    refused = cli("promote", "--to", "production", "--json")
    assert refused.code == 4, refused.err
    decision = refused.json()
    assert decision["outcome"] == "refused" and decision["version"] == version
    assert decision["previous"] == production
    assert decision["gates"][0]["measured"]["error_rate"] > 0.01
    assert "error rate" in decision["reason"]
    assert client.get_model_version_by_alias(name, "production").version == production
    watched = cli(
        "canary", "watch", "--auto-rollback", "--min-requests", "50", "--window", "5m",
        "--interval", "1s", "--for", "60s", "--json",
    )  # fmt: skip
    assert watched.code == 4, watched.err
    assert "error rate" in watched.err
    document = watched.json()  # one JSON document: the refusal with what was done
    assert document["rolled_back"] is True and document["error"]["exit_code"] == 4
    assert document["change"]["weight"] == 0
    after = httpx.get(f"{url}/v1/canary?window=60").json()
    assert after["canary_weight"] == 0
    assert after["changes"][-1]["reason"].startswith("auto-rollback: error rate")
    fresh = [httpx.post(f"{url}/v1/score", json=event(i)).json()["variant"] for i in range(50)]
    assert set(fresh) == {"baseline"}


def test_a_canary_trained_on_shuffled_labels_is_found_worse_refused_and_rolled_back(
    served: dict[str, Any], cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served traffic with its labels: the quality gate finds the canary significantly
    worse than the baseline (fail, not inconclusive), `promote --to production` refuses
    it, and `canary watch --auto-rollback` rolls it back on quality alone."""
    url = served["url"]
    version = worse_version(served["env"])
    for key, value in served["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FRAUDCTL_SERVE_URL", url)
    canary_at_half(served, cli, version)
    started = datetime.now(UTC)
    produced = cli("produce", "--rate", "0", "--count", "5000", "--label-delay", "0",
                   "--seed", "31", "--population-seed", "0", "--score", url, "--json")  # fmt: skip
    assert produced.code == 0 and produced.json()["score_failed"] == 0, produced.err
    assert main(["materialize"]) == 0  # the labels reach the offline store
    _wait_for_predictions(served, started, 5000)
    monkeypatch.setenv("FRAUDCTL_PROMOTE_CANARY_MIN_REQUESTS", "100")
    refused = cli("promote", "--to", "production", "--url", url, "--json")
    assert refused.code == 4, refused.err
    decision = refused.json()
    # (The canary gate's latency limit is another matter: on two cores shared with
    # another worker's tests it may say no too; the quality gate must say fail.)
    quality = decision["gates"][1]
    assert quality["name"] == "quality" and quality["verdict"] == "fail", quality
    assert decision["outcome"] == "refused" and "the canary is worse" in decision["reason"]
    measured = quality["measured"]
    assert measured["canary"]["version"] == version and measured["canary"]["positives"] >= 20
    # Far below the baseline.  (Not "about 0.5": a model fitted to noise still gives the
    # rare, outlying events - fraud among them - scores off the average, so on served
    # traffic it ranks above chance by a run-dependent amount; 0.72 was seen once.)
    baseline, canary = measured["baseline"]["value"], measured["canary"]["value"]
    assert baseline > 0.8 and canary < baseline - 0.1, measured
    # Serving limits out of reach: this watch can only roll back on quality.
    watched = cli("canary", "watch", "--auto-rollback", "--interval", "1s", "--quality-every",
                  "1s", "--for", "60s", "--max-p95-ms", "1000000", "--max-error-rate", "1",
                  "--json")  # fmt: skip
    assert watched.code == 4, watched.err
    document = watched.json()
    assert document["rolled_back"] is True and document["breach"].startswith("quality: roc_auc")
    assert document["seen"]["quality"]["canary"]["version"] == version
    after = httpx.get(f"{url}/v1/canary?window=60").json()
    assert after["canary_weight"] == 0
    assert after["changes"][-1]["reason"].startswith("auto-rollback: quality: roc_auc canary")


def _wait_for_predictions(served: dict[str, Any], since: datetime, count: int) -> None:
    """Until the server's prediction log holds ``count`` rows scored since ``since``."""
    import pyarrow.dataset as ds

    from fraudctl.adapters.offline import open_offline

    with environ(served["env"]):
        offline = open_offline(load_settings().settings)
    deadline = time.monotonic() + LOG_FLUSH_S + 30
    while time.monotonic() < deadline:
        logged = offline.read("predictions", ["event_id"], ds.field("scored_at") >= since)
        if logged.num_rows >= count:
            return
        time.sleep(1)
    raise AssertionError(f"fewer than {count} predictions logged in {LOG_FLUSH_S + 30} s")


def test_openapi_fuzzing_with_every_check_positive_and_negative_finds_nothing(
    served: dict[str, Any],
) -> None:
    """schemathesis's every check, positive and negative cases, against the real server
    (Ray Serve, direct ingress): no 5xx, no undocumented status, no response off its
    schema, nothing schema-valid refused and nothing schema-invalid accepted."""
    import schemathesis

    from tests.fuzzing import fuzz_every_operation

    url = served["url"]
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    calls, failures = fuzz_every_operation(schema, max_examples=100, base_url=url)
    httpx.post(f"{url}/v1/canary", json={"weight": 20, "reason": "reset after fuzzing"})
    assert not failures, "\n".join(sorted(set(failures))[:20])
    for label in ("POST /v1/score", "POST /v1/score/batch", "POST /v1/canary", "GET /v1/canary"):
        assert calls[f"{label} positive"] >= 100 and calls[f"{label} negative"] >= 20, calls


def test_the_online_store_stopped_and_restarted_during_traffic(served: dict[str, Any]) -> None:
    url = served["url"]
    with environ(served["redis_env"]):
        assert main(["stack", "down", "--native"]) == 0
    try:
        deadline = time.monotonic() + 20
        while True:
            down = httpx.post(f"{url}/v1/score", json=event(3), timeout=30)
            if down.status_code == 503 or time.monotonic() > deadline:
                break
        assert down.status_code == 503, down.text
        assert "online store unavailable" in down.json()["detail"]
        assert down.headers["retry-after"] == "1"
        assert httpx.get(f"{url}/ready", timeout=30).status_code == 503
        assert httpx.get(f"{url}/health").status_code == 200
    finally:
        with environ(served["redis_env"]):
            assert main(["stack", "up", "--native", "--only", "redis"]) == 0
    deadline = time.monotonic() + 30
    while httpx.post(f"{url}/v1/score", json=event(3), timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "did not recover within 30 s"
        time.sleep(0.5)
    assert httpx.get(f"{url}/ready").status_code == 200
    metrics = httpx.get(f"{url}/metrics").text
    assert "fraudctl_online_store_unavailable_total" in metrics


def test_serve_refuses_to_start_without_a_registry_or_a_model(
    cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("FRAUDCTL_PROFILE", "local")
    monkeypatch.setenv("FRAUDCTL_HOME", str(tmp_path / "home"))
    port = free_ports(("mlflow",))["mlflow"]
    unreachable = cli("--set", f"mlflow_uri=http://127.0.0.1:{port}", "serve", "--json")
    assert unreachable.code == 3
    assert f"http://127.0.0.1:{port}" in unreachable.json()["error"]["message"]
    nothing = cli("serve", "--engine", "uvicorn")
    assert nothing.code == 4
    assert "nothing to serve" in nothing.err and "fraudctl train" in nothing.err
    assert cli("serve", "--engine", "gunicorn").code == 2
    for wrong in (
        ["serve", "--ingress", "sideways"],
        ["serve", "--ingress", "direct", "--replicas", "2"],
        ["serve", "--engine", "uvicorn", "--ingress", "proxy"],
        ["--set", "ray_address=127.0.0.1:6380", "serve", "--ingress", "direct"],
    ):
        refused = cli(*wrong)
        assert refused.code == 2, (wrong, refused.err)
        assert "--ingress" in refused.err, refused.err


def test_serve_through_the_ray_proxy(served: dict[str, Any]) -> None:
    """`--ingress proxy` (Serve's proxy actor in front of the replicas) scores too."""
    port = free_ports(("mlflow",))["mlflow"]
    server = start_server(["--ingress", "proxy"], served["full_env"], port)
    try:
        for _ in range(50):
            body = event(random.randrange(USERS))
            response = httpx.post(f"http://127.0.0.1:{port}/v1/score", json=body, timeout=30)
            assert response.status_code == 200, response.text
            assert response.json()["variant"] == "baseline"
    finally:
        stop_server(server)


class Forwarder:
    """A TCP relay to a real server, which the test can cut: the registry becoming
    unreachable for a server that already loaded its models."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket
        import threading

        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while self.open:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: Any, sink: Any) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()

    def cut(self) -> None:
        self.open = False
        self.listener.close()


def test_the_registry_lost_after_start_leaves_the_loaded_models_serving(
    served: dict[str, Any],
) -> None:
    from urllib.parse import urlsplit

    real = urlsplit(served["env"]["FRAUDCTL_MLFLOW_URI"])
    relay = Forwarder((real.hostname or "127.0.0.1", real.port or 80))
    env = served["full_env"] | {"FRAUDCTL_MLFLOW_URI": f"http://127.0.0.1:{relay.port}"}
    port = free_ports(("mlflow",))["mlflow"]
    server = start_server(["--engine", "uvicorn"], env, port)
    url = f"http://127.0.0.1:{port}"
    try:
        before = httpx.post(f"{url}/v1/score", json=event(1), timeout=30).json()
        relay.cut()
        deadline = time.monotonic() + 40  # aliases are checked every 10 s
        errors = 0.0
        while time.monotonic() < deadline and errors == 0:
            response = httpx.post(f"{url}/v1/score", json=event(random.randrange(USERS)))
            assert response.status_code == 200, response.text
            assert response.json()["model_version"] == before["model_version"]
            for line in httpx.get(f"{url}/metrics").text.splitlines():
                if line.startswith("fraudctl_registry_errors_total "):
                    errors = float(line.split()[1])
            time.sleep(0.5)
        assert errors >= 1, "the lost registry was never noticed"
        assert httpx.get(f"{url}/ready").status_code == 200
    finally:
        stop_server(server)
        relay.cut()


def logged_ids(env: dict[str, str], wanted: set[str]) -> set[str]:
    from fraudctl.adapters.offline import open_offline

    with environ(env):
        table = open_offline(load_settings().settings).read("predictions")
    if not table.num_rows:
        return set()
    return set(table.filter(pa_is_in(table["event_id"], list(wanted)))["event_id"].to_pylist())


@pytest.mark.parametrize(
    ("engine", "sig"),
    [("uvicorn", "SIGINT"), ("uvicorn", "SIGTERM"), ("ray", "SIGINT"), ("ray", "SIGTERM")],
)
def test_a_stop_under_load_drains_and_logs_every_answered_request(
    served: dict[str, Any], engine: str, sig: str
) -> None:
    import signal as signals

    port = free_ports(("mlflow",))["mlflow"]
    args = ["--engine", "uvicorn"] if engine == "uvicorn" else []
    server = start_server(args, served["full_env"], port)
    sent: set[str] = set()
    answered: set[str] = set()
    stopped = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while True:
                body = event(random.randrange(USERS))
                sent.add(body["event_id"])
                try:
                    response = client.post(f"http://127.0.0.1:{port}/v1/score", json=body)
                except httpx.HTTPError:
                    if stopped.is_set():
                        return
                    continue
                if response.status_code == 200:
                    answered.add(body["event_id"])
                elif response.status_code == 503 and stopped.is_set():
                    return  # draining: a client goes elsewhere (and the replica idles)

    sender = threading.Thread(target=load, daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + 60
        while len(answered) < 200:
            assert time.monotonic() < deadline, "fewer than 200 answers in 60 s"
            time.sleep(0.05)
        stopped.set()
        server.send_signal(getattr(signals, sig))
        _out, err = server.communicate(timeout=120)
        sender.join(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, err[-3000:]
    logged = logged_ids(served["env"], sent)
    assert answered <= logged, f"{len(answered - logged)} of {len(answered)} answers not logged"


@pytest.mark.parametrize("engine", ["uvicorn", "ray"])
def test_a_killed_server_loses_at_most_its_last_log_flush_interval(
    served: dict[str, Any], engine: str
) -> None:
    import psutil

    port = free_ports(("mlflow",))["mlflow"]
    args = ["--engine", "uvicorn"] if engine == "uvicorn" else []
    server = start_server(args, served["full_env"], port)
    left: list[psutil.Process] = []
    try:
        early = [event(random.randrange(USERS)) for _ in range(100)]
        for body in early:
            assert httpx.post(f"http://127.0.0.1:{port}/v1/score", json=body).status_code == 200
        time.sleep(LOG_FLUSH_S + 2)  # one flush interval later
        for _ in range(50):
            httpx.post(f"http://127.0.0.1:{port}/v1/score", json=event(random.randrange(USERS)))
        left = psutil.Process(server.pid).children(recursive=True)
        server.kill()
        server.wait(timeout=30)
        # What the server started dies with it (Ray's GCS, raylet, agents, replicas).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(alive(p) for p in left):
            time.sleep(0.2)
        assert not [p.name() for p in left if alive(p)], "processes outlived the server"
    finally:
        if server.poll() is None:
            server.kill()
        for process in left:
            if alive(process):
                process.kill()
    wanted = {e["event_id"] for e in early}
    assert logged_ids(served["env"], wanted) == wanted


def alive(process: Any) -> bool:
    import psutil

    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
