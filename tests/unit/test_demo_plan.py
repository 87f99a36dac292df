"""The demo is data: a list of steps (fraudctl/cli/demo_steps.py) that `demo --dry-run`
prints without running anything."""

from __future__ import annotations

from pathlib import Path

from fraudctl.cli.demo_steps import DemoPlan, demo_steps
from tests.conftest import RunCli


def test_the_steps_are_the_loop_in_order(tmp_path: Path) -> None:
    steps = demo_steps(DemoPlan(profile="local", home=tmp_path))
    names = [s.name for s in steps]
    assert names == [
        "doctor", "produce", "materialize", "train-a", "drift-normal", "promote-a-staging",
        "promote-a-production", "train-b", "promote-b-staging", "serve", "produce-drifted",
        "materialize-drifted", "quality", "drift-drifted", "train-c", "promote-c-refused",
    ]  # fmt: skip
    by_name = {s.name: s for s in steps}
    assert by_name["drift-drifted"].expected == (4,) and by_name["drift-drifted"].status == "drift"
    assert by_name["promote-c-refused"].expected == (4,)
    assert by_name["quality"].expected == (0, 4)  # a 10 % canary may have too few labels
    assert by_name["serve"].builtin == "serve_canary" and by_name["serve"].args is None
    assert all(s.hint for s in steps)
    stack = demo_steps(DemoPlan(profile="stack", home=tmp_path))
    assert stack[0].name == "resources" and [s.name for s in stack[1:]] == names


def test_dry_run_prints_every_command_and_runs_nothing(cli: RunCli, isolated_env: Path) -> None:
    result = cli("--home", str(isolated_env / "h"), "demo", "--dry-run", "--json")
    assert result.code == 0, result.err
    plan = result.json()
    assert len(plan["steps"]) == 16
    produce = next(s for s in plan["steps"] if s["name"] == "produce")
    assert produce["command"].startswith("fraudctl --profile local --home ")
    assert "produce --rate 0 --count 20000" in produce["command"]
    assert produce["command"].endswith("--json")
    assert not (isolated_env / "h").exists()
    text = cli("--home", str(isolated_env / "h"), "demo", "--dry-run")
    assert text.code == 0 and "promote-c-refused" in text.out
