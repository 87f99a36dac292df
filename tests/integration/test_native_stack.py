"""The native stack end to end: up → doctor green → real work on each service →
doctor red with the broker stopped → down leaves nothing behind (on a stack of its own,
so the shared one serves every other test, in any order and on any worker)."""

from __future__ import annotations

import io
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fraudctl.config import load_settings
from fraudctl.stack.native import StackState
from tests.conftest import RunCli


def settings():  # type: ignore[no-untyped-def]
    return load_settings().settings


def test_doctor_is_all_green(stack: dict[str, str], cli: RunCli) -> None:
    result = cli("doctor", "--json")
    assert result.code == 0, result.out + result.err
    report = result.json()
    assert report["profile"] == "stack"
    assert [(c["backend"], c["ok"]) for c in report["checks"]] == [
        ("kafka", True),
        ("s3", True),
        ("redis", True),
        ("mlflow (http)", True),
    ]


def test_stack_up_again_is_a_no_op(stack: dict[str, str], cli: RunCli) -> None:
    before = StackState.load(settings()).services
    result = cli("stack", "up", "--native", "--json")
    assert result.code == 0, result.err
    assert {s["state"] for s in result.json()["services"]} == {"running"}
    assert {n: r.pid for n, r in StackState.load(settings()).services.items()} == {
        n: r.pid for n, r in before.items()
    }


def test_only_loopback_is_bound(stack: dict[str, str]) -> None:
    for running in StackState.load(settings()).services.values():
        procs = [psutil.Process(running.pid), *psutil.Process(running.pid).children(True)]
        for proc in procs:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    assert conn.laddr.ip == "127.0.0.1", (running.name, conn.laddr)


def test_the_mlflow_server_runs_without_mlflows_job_runner(stack: dict[str, str]) -> None:
    """MLflow 3's job runner and its seven huey consumers (unused by fraudctl) cost 16
    CPU-seconds more per server start here; the stack starts the server without them."""
    running = StackState.load(settings()).services["mlflow"]
    tree = [psutil.Process(running.pid), *psutil.Process(running.pid).children(True)]
    commands = [" ".join(p.cmdline()) for p in tree]
    assert any("mlflow" in c and "server" in c for c in commands), commands
    assert not [c for c in commands if "huey" in c or "_job_runner" in c], commands


def test_broker_round_trip_with_confluent_kafka(stack: dict[str, str]) -> None:
    from confluent_kafka import Consumer, Producer

    bootstrap = stack["FRAUDCTL_KAFKA_BOOTSTRAP"]
    payload = uuid.uuid4().hex.encode()
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    acked: list[bytes] = []
    producer.produce(
        "transactions",
        payload,
        key=b"user-1",
        on_delivery=lambda err, msg: acked.append(msg.value()) if not err else None,
    )
    assert producer.flush(15) == 0
    assert acked == [payload]

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "it-" + uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "max.poll.interval.ms": 10000,
        }
    )
    consumer.subscribe(["transactions"])
    try:
        deadline = time.monotonic() + 30
        seen = None
        while time.monotonic() < deadline and seen is None:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.value() == payload:
                seen = msg
        assert seen is not None, "the produced record never arrived"
        consumer.commit(seen, asynchronous=False)
    finally:
        consumer.close()


def test_s3_put_get_with_minio_client(stack: dict[str, str]) -> None:
    from minio import Minio

    client = Minio(
        stack["FRAUDCTL_S3_ENDPOINT"].removeprefix("http://"),
        access_key=stack["FRAUDCTL_S3_ACCESS_KEY"],
        secret_key=stack["FRAUDCTL_S3_SECRET_KEY"],
        secure=False,
    )
    body = os.urandom(1024)
    client.put_object("fraudctl", "it/object.bin", io.BytesIO(body), len(body))
    response = client.get_object("fraudctl", "it/object.bin")
    try:
        assert response.read() == body
    finally:
        response.close()
        response.release_conn()

    wrong = Minio(
        client._base_url.host, access_key="nobody", secret_key="wrong-secret-1", secure=False
    )
    with pytest.raises(Exception, match=r"InvalidAccessKeyId|AccessDenied|Signature"):
        wrong.get_object("fraudctl", "it/object.bin")


def test_redis_set_get_needs_the_password(stack: dict[str, str]) -> None:
    import redis

    url = stack["FRAUDCTL_REDIS_URL"]
    client = redis.Redis.from_url(url, password=stack["FRAUDCTL_REDIS_PASSWORD"])
    client.set("it:key", b"value")
    assert client.get("it:key") == b"value"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(url).get("it:key")


def test_mlflow_run_with_artifact_lands_in_s3(stack: dict[str, str], tmp_path: Path) -> None:
    import mlflow

    from fraudctl.stack.native import s3_client_env

    os.environ.update(s3_client_env(settings()))  # the client side of artifact proxying
    mlflow.set_tracking_uri(stack["FRAUDCTL_MLFLOW_URI"])
    mlflow.set_experiment("integration")
    artifact = tmp_path / "hello.txt"
    artifact.write_text("hello from the test")
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_metric("auc", 0.91)
        mlflow.log_artifact(str(artifact))
    fetched = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="hello.txt", dst_path=str(tmp_path / "dl")
    )
    assert Path(fetched).read_text() == "hello from the test"
    stored = mlflow.get_run(run.info.run_id)
    assert stored.data.params == {"alpha": "0.5"}

    from minio import Minio

    client = Minio(
        stack["FRAUDCTL_S3_ENDPOINT"].removeprefix("http://"),
        access_key=stack["FRAUDCTL_S3_ACCESS_KEY"],
        secret_key=stack["FRAUDCTL_S3_SECRET_KEY"],
        secure=False,
    )
    keys = [
        o.object_name
        for o in client.list_objects("fraudctl", prefix="mlflow-artifacts/", recursive=True)
    ]
    assert any(k.endswith(f"{run.info.run_id}/artifacts/hello.txt") for k in keys), keys


def test_doctor_reports_a_stopped_broker_and_exits_3(stack: dict[str, str], cli: RunCli) -> None:
    broker = StackState.load(settings()).services["kafka"]
    os.kill(broker.pid, signal.SIGSTOP)
    try:
        result = cli("doctor", "--json")
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    assert result.code == 3
    checks = {c["part"]: c for c in result.json()["checks"]}
    assert checks["event bus"]["ok"] is False
    assert stack["FRAUDCTL_KAFKA_BOOTSTRAP"] in checks["event bus"]["detail"]
    assert checks["event bus"]["hint"]
    assert all(c["ok"] for part, c in checks.items() if part != "event bus")


@pytest.fixture
def own_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A native stack of this test's own, on free ports in a private home; stopped at
    the end whatever the test did."""
    from fraudctl.cli.main import main
    from fraudctl.config import environ
    from fraudctl.stack.native import private_stack_env

    env = private_stack_env(tmp_path / "own-stack")
    with environ(env):
        assert main(["stack", "up", "--native", "--json"]) == 0
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        yield env
    finally:
        with environ(env):
            main(["stack", "down", "--native", "--json"])


def test_stack_down_leaves_no_started_process_alive(own_stack: dict[str, str], cli: RunCli) -> None:
    recorded = StackState.load(settings()).services
    groups = {name: os.getpgid(r.pid) for name, r in recorded.items()}
    members = [p for p in psutil.process_iter() if _pgid(p) in groups.values()]
    assert len(members) >= 4
    shown = cli("stack", "status", "--native", "--json")
    assert shown.code == 0, shown.err
    assert {s["state"] for s in shown.json()["services"]} == {"running"}
    # Without --native too: down stops what `stack up --native` recorded (no Docker here).
    result = cli("stack", "down", "--json")
    assert result.code == 0, result.err
    assert {s["state"] for s in result.json()["services"]} == {"stopped"}
    still = [p.pid for p in members if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert still == []
    assert StackState.load(settings()).services == {}
    after = cli("doctor", "--json")
    assert after.code == 3


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except (ProcessLookupError, psutil.Error):
        return None
