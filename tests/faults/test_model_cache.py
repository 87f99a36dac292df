"""A damaged copy of a model in the local cache (a cut download, a bad disk) is
downloaded again instead of failing every command that loads it."""

from __future__ import annotations

from fraudctl.adapters.registry import Registry
from fraudctl.config import load_settings
from tests.conftest import RunCli


def test_a_damaged_cached_model_is_downloaded_again(cli: RunCli) -> None:
    for command in (
        ["produce", "--count", "6000", "--rate", "0", "--label-delay", "0"],
        ["materialize"],
        ["train"],
    ):
        done = cli(*command, "--json")
        assert done.code == 0, (command, done.err)
    registry = Registry(load_settings().settings)
    first = registry.load("1", "candidate")
    cached = (
        registry.settings.home / "models" / registry.model_name / "1" / "artifacts" / "model.skops"
    )
    intact = cached.read_bytes()
    cached.write_bytes(intact[: len(intact) // 3])  # cut short
    again = registry.load("1", "candidate")
    assert cached.read_bytes() == intact
    assert again.threshold == first.threshold and again.version == "1"
