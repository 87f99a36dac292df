"""The Feast registry is a copy of fraudctl's own definitions: damaged, or emptied by a
`feast apply` from another folder, it is rebuilt on the next command (the online data
stays), never reported as an outage on every rerun."""

from __future__ import annotations

import pytest

from fraudctl.config import load_settings
from tests.conftest import RunCli


def empty_registry() -> bytes:
    from feast.protos.feast.core.Registry_pb2 import Registry

    return bytes(Registry().SerializeToString())


@pytest.mark.parametrize("damage", ["garbage", "emptied"])
def test_a_damaged_or_foreign_registry_is_rebuilt(cli: RunCli, damage: str) -> None:
    made = cli(
        "produce", "--count", "2000", "--users", "20", "--rate", "0", "--label-delay", "0",
        "--json",
    )  # fmt: skip
    assert made.code == 0, made.err
    assert cli("materialize", "--json").code == 0
    before = cli("features", "get", "user-1", "--json")
    assert before.code == 0, before.err
    registry = load_settings().settings.home / "feast" / "registry.db"
    registry.write_bytes(b"\x00not a registry\xff" if damage == "garbage" else empty_registry())
    after = cli("features", "get", "user-1", "--json")
    assert after.code == 0, after.err
    assert after.json()["window_events"] == before.json()["window_events"] > 0
    more = cli("produce", "--count", "100", "--users", "20", "--rate", "0", "--json")
    assert more.code == 0
    again = cli("materialize", "--json")
    assert again.code == 0, again.err
