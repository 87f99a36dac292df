"""`fraudctl demo --live`: `fraudctl run` on a fresh embedded home with intervals short
enough that a few minutes show the whole loop by itself — the first model bootstrapped,
served traffic with delayed labels, a retrained candidate through staging, the canary's
steps and production — then a summary of what was decided."""

from __future__ import annotations

import sys
from typing import Any

from fraudctl.cli.common import AppState, console, err_console, global_args, print_json, table
from fraudctl.errors import Refused, UsageError

# Gates sized for minutes of demo traffic, not hours (settings: docs/configuration.md).
# The quality gate's evidence grows with matured labels; a five-minute canary at 20-50 %
# of 40 events/s sees a few thousand rows and tens of frauds, so the bars are lowered
# to that, and said on the screen.
# The drift gate's threshold too: the live stream's first minutes after a history laid
# out in seconds differ in seconds_since_last_txn (each user's first live event comes
# after the bootstrap's gap), measured PSI 0.63, then 0.26, then 0.47 in the first three
# minutes of a 5-minute run, refusing every candidate; the scripted demo shows the drift
# gate refusing a drifted stream.
# The AUC gate's tolerance: a retraining on a minute more of the same stream is as good as
# the last within the noise of 5,000 labeled events (100-odd fraud), so "at least staging's"
# refused about every other one (0.9376 < 0.9414 seen); the canary's gates judge it.
DEMO_GATES = {
    "drift_threshold": "1.0",
    "promote_auc_tolerance": "0.02",
    "promote_canary_min_requests": "30",
    "promote_quality_min_positives": "5",
    "quality_min_labels": "100",
    "promote_quality_margin": "0.5",
}


def live_demo(state: AppState, for_s: float, port: int, as_json: bool) -> None:
    from fraudctl.bootstrap import wire
    from fraudctl.cli.common import free_port_pair
    from fraudctl.cli.demo_steps import demo_home
    from fraudctl.cli.run_cmd import LIVE_EVERY_S, run_shown
    from fraudctl.config import load_settings
    from fraudctl.rollout import RolloutPlan
    from fraudctl.services.run import RunOptions
    from fraudctl.stack.native import free_ports

    if state.settings.profile != "local":
        raise UsageError(
            "demo --live runs on the embedded default (the local profile)",
            hint="`fraudctl --profile local demo --live`, or `fraudctl run` on the stack",
        )
    home = demo_home(state.settings.home)
    view = not as_json and err_console.is_terminal
    # One partition unless the user chose (as the scripted demo: Feast's file offline
    # store pays per Parquet file), the user's other settings, the demo's gates.
    flags = {"topic_partitions": "1"} | {
        k: v for k, v in state.flags.items() if k not in {"profile", "home"}
    } | DEMO_GATES | {"profile": "local", "home": str(home)}  # fmt: skip
    settings = load_settings(flags, env_file=state.env_file, toml_file=state.toml_file).settings
    options = RunOptions(  # `fraudctl run --engine uvicorn --rate 40 --label-delay 2 ...`
        fraudctl=(sys.executable, "-m", "fraudctl",
                  *global_args(flags, state.env_file, state.toml_file)),
        logs=home / "run-logs", port=port or free_port_pair(), engine="uvicorn", rate=40.0,
        label_delay_s=2.0, history_events=8000,
        plan=RolloutPlan((20.0, 50.0), step_every_s=20.0, deadline_s=300.0),
        train_every_s=60.0, drift_every_s=45.0, quality_every_s=30.0, check_every_s=3.0,
        for_s=for_s, metrics_port=free_ports(("materialize",))["materialize"],
        observe_every_s=LIVE_EVERY_S if view else None,
    )  # fmt: skip
    said = ", ".join(f"{k} {v}" for k, v in DEMO_GATES.items())
    if as_json:
        print_json({"event": "demo_live", "home": str(home), "for_s": for_s, "gates": DEMO_GATES})
    else:
        err_console.print(f"demo --live on the local profile for {for_s:g} s; state in {home}")
        err_console.print(f"[dim]gates sized for minutes of traffic: {said}[/dim]")
    summary = run_shown(wire(settings), options, as_json, view, f"fraudctl demo --live · {home}")
    report = _report(summary.as_dict(), home)
    if as_json:
        print_json({"event": "summary", **report})
    else:
        _render(report)
    if summary.interrupted:
        from fraudctl.errors import ExitCode

        raise SystemExit(ExitCode.INTERRUPTED)
    if not report["cycles"]:
        raise Refused(
            f"no candidate went from staging through the canary's steps to production in "
            f"{for_s:g} s",
            hint=f"give it longer (--for), or see the logs under {home / 'run-logs'}",
            details={"demo": report},
        )


def _report(summary: dict[str, Any], home: Any) -> dict[str, Any]:
    """The run's summary with what the demo is about: full cycles (a version stepped as
    the canary, then promoted to production) and rollbacks."""
    decisions = summary["decisions"]
    stepped = {d["version"] for d in decisions if d["to"] == "canary" and d["outcome"] == "stepped"}
    promoted = [d["version"] for d in decisions if d["to"] == "production"
                and d["outcome"] == "promoted"]  # fmt: skip
    return summary | {
        "home": str(home),
        "cycles": [v for v in promoted if v in stepped],
        "rolled_back": [d["version"] for d in decisions if d["outcome"] == "rolled_back"],
        "logs": str(home / "run-logs"),
    }


def _render(report: dict[str, Any]) -> None:
    rows = [(str(d.get("decided_at") or "")[11:19], f"{d['to']} v{d['version']}",
             f"{d['outcome']}: {d.get('reason') or ''}") for d in report["decisions"]]  # fmt: skip
    title = f"demo --live: {len(report['decisions'])} decisions in {report['seconds']:.0f} s"
    console.print(table(title, ("at", "decision", "outcome"), rows))
    cycles = ", ".join(f"v{v}" for v in report["cycles"]) or "none"
    console.print(f"candidate → canary steps → production: {cycles}; rolled back: "
                  f"{', '.join(f'v{v}' for v in report['rolled_back']) or 'none'}; restarts "
                  f"{report['restarts']}; logs {report['logs']}")  # fmt: skip
