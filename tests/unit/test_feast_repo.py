"""The Feast repository fraudctl writes and its on-demand view's function, without a
store: the function is the one feature implementation, and the written files hold no
secret (the real store, Feast's CLI, SDK and server: tests/integration/test_users_tools.py)."""

from __future__ import annotations

import math
import secrets
from pathlib import Path

import yaml

from fraudctl.adapters.feast_repo import request_features, write_repo
from fraudctl.config import load_settings
from fraudctl.features import FEATURE_NAMES, Txn, UserWindow


def test_the_on_demand_views_function_is_the_one_feature_implementation() -> None:
    at = 1_790_000_000.0
    window = UserWindow.of(
        [Txn(at - 30, 12.5, "US", "web", "a"), Txn(at - 4000, 80.0, "BR", "ios", "b"),
         Txn(at, 9.0, "US", "web", "same-instant"), Txn(at + 5, 1.0, "US", "web", "later")]
    )  # fmt: skip
    requests = [(window.to_json(), 40.0, "BR", "web"), (None, 3.0, "US", "ios")]
    got = request_features(
        {
            "window": [r[0] for r in requests],
            "transaction_amount": [r[1] for r in requests],
            "country": [r[2] for r in requests],
            "device": [r[3] for r in requests],
            "event_ts": ["2026-09-21T14:13:20Z", "2026-09-21T14:13:20+00:00"],
        }
    )
    assert list(got) == list(FEATURE_NAMES)
    for i, (text, amount, country, device) in enumerate(requests):
        expected = UserWindow.from_json(text).features(Txn(at, amount, country, device))
        assert {name: got[name][i] for name in FEATURE_NAMES} == expected
    assert got["txn_count_1h"] == [1.0, 0.0]  # the event at the same instant is not earlier


def test_a_row_feast_cannot_compute_gets_nan_instead_of_failing_the_call() -> None:
    got = request_features(
        {
            "window": ["hello world", None],  # what Feast passes when it registers the view
            "transaction_amount": [1.0, 2.0],
            "country": ["hello world", "US"],
            "device": ["hello world", "web"],
            "event_ts": ["hello world", "2026-09-21 13:33:20"],  # no zone: not the contract
        }
    )
    assert all(math.isnan(got[name][i]) for name in FEATURE_NAMES for i in range(2))


def test_the_written_repository_names_the_redis_password_by_its_variable(tmp_path: Path) -> None:
    secret = secrets.token_hex(12)
    settings = load_settings(
        {"profile": "stack", "home": str(tmp_path / "home")},
        environ={"FRAUDCTL_REDIS_PASSWORD": secret, "FRAUDCTL_REDIS_URL": "redis://127.0.0.1:6390/3"},
        cwd=tmp_path,
    ).settings  # fmt: skip
    files = write_repo(settings, tmp_path / "repo")
    assert [f.name for f in files] == ["feature_store.yaml", "repo.py"]
    for written in files:
        assert secret not in written.read_text()
    store = yaml.safe_load(files[0].read_text())
    assert store["project"] == "fraudctl"
    assert store["registry"] == str(tmp_path / "home" / "feast" / "registry.db")
    assert store["online_store"] == {
        "type": "redis",
        "connection_string": "127.0.0.1:6390,password=${FRAUDCTL_REDIS_PASSWORD},db=3,"
        "socket_timeout=5,socket_connect_timeout=3",
    }
    assert f"'home': '{tmp_path / 'home'}'" in files[1].read_text()
    compile(files[1].read_text(), "repo.py", "exec")
