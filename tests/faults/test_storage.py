"""The home's disk full or read-only: every command says which file and what to do
(exit 3, never 1 "a bug"), nothing acknowledged is lost, and a rerun with room
completes the work exactly once.  Each test mounts a small tmpfs of its own as the
fraudctl home (the suite runs as root, as CI does)."""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from fraudctl.serving.prediction_log import LOG_FLUSH_S
from fraudctl.stack.native import free_ports
from tests.conftest import RunCli
from tests.integration.test_materialize import assert_each_event_once_offline_and_online
from tests.integration.test_serve import event, start_server, stop_server


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def fill(path: Path) -> Path:
    """Take every free byte of the file system at ``path``."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` read-only in place (a read-only bind mount over itself), while files
    stay open there."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def produce_and_materialize(cli: RunCli, events: int) -> None:
    made = cli("produce", "--count", str(events), "--rate", "0", "--label-delay", "0", "--json")
    assert made.code == 0, made.err
    done = cli("materialize", "--json")
    assert done.code == 0, done.err


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with tmpfs(tmp_path / "mnt", "400m") as mounted:
        monkeypatch.setenv("FRAUDCTL_HOME", str(mounted / "home"))
        yield mounted


def test_disk_full_during_produce_counts_every_message_once_and_loses_no_ack(
    cli: RunCli, home: Path
) -> None:
    remount(home, "size=3m")
    full = cli("produce", "--count", "50000", "--rate", "0", "--label-delay", "0", "--json")
    assert full.code == 3, full.err
    assert "No space left" in full.err
    summary = full.json()
    assert summary["acknowledged"] + summary["failed"] == summary["generated"] == 50_000
    assert summary["labels_acknowledged"] + summary["labels_failed"] == 50_000
    assert 0 < summary["acknowledged"] < 50_000
    remount(home, "size=400m")
    checked = cli("bus", "check", "--json")
    assert checked.code in (0, 4), checked.err  # a write cut short leaves a tail at most
    assert all(d["kind"] == "tail" for p in checked.json()["partitions"] for d in p["damage"])
    done = cli("materialize", "--json")
    assert done.code in (0, 4), done.err
    assert done.json()["valid"] == summary["acknowledged"]  # a failed write left nothing
    assert_each_event_once_offline_and_online(summary["acknowledged"], done.json())


def test_disk_full_during_materialize_names_it_and_a_rerun_completes_exactly_once(
    cli: RunCli, home: Path
) -> None:
    made = cli("produce", "--count", "6000", "--rate", "0", "--label-delay", "0", "--json")
    assert made.code == 0, made.err
    filler = fill(home)
    failed = cli("materialize", "--batch-size", "1000", "--json")
    assert failed.code == 3, failed.err
    assert failed.json()["error"]["exit_code"] == 3
    assert "space" in failed.err or "full" in failed.err, failed.err
    filler.unlink()
    done = cli("materialize", "--json")
    assert done.code == 0, done.err
    assert_each_event_once_offline_and_online(6000, done.json())


def test_a_read_only_home_serves_the_reads_and_names_the_refused_writes(
    cli: RunCli, home: Path
) -> None:
    produce_and_materialize(cli, 2000)
    with read_only(home):
        for read in (["bus", "check", "--json"], ["config", "show", "--json"],
                     ["features", "get", "user-1", "--json"], ["promote", "--history"],
                     ["materialize", "--check-freshness", "--json"]):  # fmt: skip
            answer = cli(*read)
            assert answer.code == 0, (read, answer.err)
        refused = cli("materialize", "--json")
        assert refused.code == 3, refused.err
        assert "read-only" in refused.err.lower() or "cannot write" in refused.err
        assert str(home) in refused.err
        produced = cli("produce", "--count", "10", "--rate", "0", "--json")
        assert produced.code == 3, produced.err
        assert cli("schema").code == 0
        # doctor's job is to say what cannot work: the home's stores are not writable
        doctor = cli("doctor", "--json")
        assert doctor.code == 3, doctor.err
        assert "not writable (Read-only file system)" in doctor.out


def test_disk_full_during_train_and_serve_names_it_and_loses_nothing_once_there_is_room(
    cli: RunCli, home: Path
) -> None:
    produce_and_materialize(cli, 6000)
    filler = fill(home)
    failed = cli("train", "--json")
    assert failed.code == 3, failed.err
    assert "no space left" in failed.err
    filler.unlink()
    trained = cli("train", "--json")
    assert trained.code == 0, trained.err
    assert trained.json()["version"] == "1"
    # serve's prediction log on a full disk: every request is still answered, the refused
    # flushes are counted and their rows kept, and once there is room each is logged once
    port = free_ports(("serve",))["serve"]
    server = start_server(["--engine", "uvicorn"], dict(os.environ), port)
    url = f"http://127.0.0.1:{port}"
    try:
        filler = fill(home)
        answered = []
        for _ in range(200):
            body = event(random.randrange(1000))
            assert httpx.post(f"{url}/v1/score", json=body).status_code == 200
            answered.append(body["event_id"])
        deadline = time.monotonic() + LOG_FLUSH_S * 4
        while metric(url, "fraudctl_prediction_log_held_rows") < 200:  # after a refused flush
            assert time.monotonic() < deadline, "the refused rows were not held"
            time.sleep(0.5)
        assert metric(url, "fraudctl_prediction_log_write_errors_total") >= 1
        filler.unlink()
        deadline = time.monotonic() + LOG_FLUSH_S * 4
        while metric(url, "fraudctl_predictions_logged_total") < 200:
            assert time.monotonic() < deadline, "the held rows were not logged"
            time.sleep(0.5)
        assert metric(url, "fraudctl_predictions_dropped_total") == 0
    finally:
        stop_server(server)
    from fraudctl.adapters.offline import open_offline
    from fraudctl.config import load_settings

    logged = open_offline(load_settings().settings).read("predictions")["event_id"].to_pylist()
    assert sorted(logged) == sorted(answered)  # each answered request once
    assert not list(home.rglob("*.writing")), "a refused write left a partial file"


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_the_dedupe_store_is_read_on_a_read_only_disk_with_or_without_its_wal(
    home: Path,
) -> None:
    from fraudctl.adapters.dedupe import SqliteDedupe

    path = home / "state" / "dedupe.db"
    writer = SqliteDedupe(path)
    writer.raise_mark("m", 42.0)
    writer.record({"e1": "t/0/0"})
    with read_only(home):  # the writer's connection is open: its WAL files exist
        early = SqliteDedupe(path)
        assert early.get_mark("m") == 42.0
        early._db.close()
    writer._db.close()  # the last close checkpoints the WAL into the file and removes it
    assert not (home / "state" / "dedupe.db-wal").exists()
    with read_only(home):
        reader = SqliteDedupe(path)
        assert reader.get_mark("m") == 42.0
        assert reader.origins(["e1", "e2"]) == {"e1": "t/0/0"}
