"""`fraudctl run`."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fraudctl.cli.common import (
    FRAUD_RATE,
    CanaryStepsOption,
    FraudRateOption,
    GracefulStop,
    JsonOption,
    StepDeadlineOption,
    StepEveryOption,
    check_engine,
    err_console,
    free_port_pair,
    global_args,
    print_json,
    rollout_plan,
    state_of,
)
from fraudctl.cli.run_view import LiveView
from fraudctl.errors import ExitCode
from fraudctl.timespec import parse_duration

if TYPE_CHECKING:
    from fraudctl.ports import Backends
    from fraudctl.services.run import RunOptions, RunSummary

LIVE_EVERY_S = 2.0  # how often the live view reads the materializer and the server


def run(
    ctx: typer.Context,
    rate: Annotated[
        float, typer.Option(min=0.1, help="Events per second of the producer (served traffic).")
    ] = 20.0,
    no_produce: Annotated[
        bool,
        typer.Option("--no-produce", help="No producer: a real deployment has its own stream."),
    ] = False,
    canary_steps: CanaryStepsOption = "10,25,50",
    step_every: StepEveryOption = "10m",
    step_deadline: StepDeadlineOption = None,
    train_every: Annotated[str, typer.Option(help="Retrain on this interval.")] = "1h",
    drift_every: Annotated[str, typer.Option(help="Measure drift on this interval.")] = "15m",
    quality_every: Annotated[
        str, typer.Option(help="Measure live quality on this interval.")
    ] = "5m",
    check_every: Annotated[
        str, typer.Option(help="Judge the canary's step on this interval.")
    ] = "15s",
    for_: Annotated[
        str | None, typer.Option("--for", help="Stop after this long (else run until Ctrl-C).")
    ] = None,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of the server (0 = a free one).")
    ] = 8000,
    engine: Annotated[str, typer.Option(help="Server engine: ray (Ray Serve) or uvicorn.")] = "ray",
    label_delay: Annotated[
        float, typer.Option(min=0, help="Seconds after each event its true label is published.")
    ] = 60.0,
    fraud_rate: FraudRateOption = FRAUD_RATE,
    history: Annotated[
        int,
        typer.Option(min=1000, help="With no production model yet: events of the first history."),
    ] = 20_000,
    metrics_port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="The materializer's Prometheus port (0 = a free one)."),
    ] = 9464,
    live: Annotated[
        bool | None,
        typer.Option(
            "--live/--no-live", help="The live terminal view (default: when stderr is a terminal)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the platform by itself: stream, features, serving, retraining, drift, quality
    and progressive delivery, supervised, until Ctrl-C or --for.

    Children (restarted with backoff when they exit; a child that keeps crashing stops
    the run with exit 3): `materialize --follow`, `serve` (canary + shadow), and the
    producer (`produce --score`). Jobs on their intervals: train, drift, quality. A new
    candidate that passes the staging gates becomes the canary at the first step; each
    step advances, holds or rolls back on the serving and quality gates; after the last,
    `promote --to production`. Every decision goes to the promotion log
    (`promote --history`). Logs under HOME/run-logs/. --json: one JSON line per event.
    Ctrl-C / SIGTERM stops everything in order (producer, materialize, server): exit 130.
    """
    from fraudctl.services.run import RunOptions
    from fraudctl.stack.native import free_ports

    state = state_of(ctx)
    settings = state.settings
    plan = rollout_plan(canary_steps, step_every, step_deadline)
    check_engine(engine)
    flags = {"home": str(settings.home)} | dict(state.flags)
    view = not as_json and (err_console.is_terminal if live is None else live)
    options = RunOptions(
        fraudctl=(sys.executable, "-m", "fraudctl",
                  *global_args(flags, state.env_file, state.toml_file)),
        logs=settings.home / "run-logs",
        port=port or free_port_pair(),
        engine=engine,
        rate=None if no_produce else rate,
        label_delay_s=label_delay,
        fraud_rate=fraud_rate,
        plan=plan,
        train_every_s=parse_duration("--train-every", train_every),
        drift_every_s=parse_duration("--drift-every", drift_every),
        quality_every_s=parse_duration("--quality-every", quality_every),
        check_every_s=parse_duration("--check-every", check_every),
        for_s=parse_duration("--for", for_) if for_ else None,
        history_events=history,
        metrics_port=metrics_port or free_ports(("materialize",))["materialize"],
        observe_every_s=LIVE_EVERY_S if view else None,
    )  # fmt: skip
    title = f"fraudctl run · {settings.profile} · {options.url}"
    summary = run_shown(state.backends, options, as_json, view, title)
    if as_json:
        print_json({"event": "summary", **summary.as_dict()})
    else:
        _print_summary(summary.as_dict())
    if summary.interrupted:
        raise typer.Exit(ExitCode.INTERRUPTED)


def run_shown(
    backends: Backends, options: RunOptions, as_json: bool, view: bool, title: str
) -> RunSummary:
    """The run, shown as JSON lines, event lines, or the live view (``view``; the
    options must then ask for the figures: ``observe_every_s``), until it stops."""
    from fraudctl.bootstrap import open_spawner
    from fraudctl.services.run import Run

    show = print_json if as_json else (_ignore if view else print_event)
    with GracefulStop() as stop:
        if not view:
            return Run(backends, options, open_spawner(), dict(os.environ), show,
                       stop.requested).run()  # fmt: skip
        screen = LiveView(err_console, title)
        with screen.shown():
            return Run(backends, options, open_spawner(), dict(os.environ), show,
                       stop.requested, on_tick=screen.draw).run()  # fmt: skip


def _ignore(_event: dict[str, Any]) -> None:
    """The live view draws the events itself."""


def print_event(event: dict[str, Any]) -> None:
    kind = event.get("event")
    at = str(event.get("at", ""))[11:19]
    if kind == "job":
        mark = "[green]✓[/green]" if event.get("ok") else "[red]✗[/red]"
        said = event.get("result") or event.get("error") or ""
        line = f"{mark} {event['job']} ({event.get('seconds', 0)} s) {said}"
    elif kind == "decision":
        line = (f"[bold]decision[/bold] {event.get('to')} v{event.get('version')}: "
                f"{event.get('outcome')} — {event.get('reason')}")  # fmt: skip
    elif kind in ("exited", "restarted"):
        line = f"[yellow]{kind}[/yellow] " + ", ".join(
            f"{k} {v}" for k, v in event.items() if k not in ("at", "event")
        )
    else:
        rest = ", ".join(f"{k} {v}" for k, v in event.items() if k not in ("at", "event"))
        line = f"{kind} {rest}"
    err_console.print(f"[dim]{at}[/dim] {line}")


def _print_summary(summary: dict[str, Any]) -> None:
    err_console.print(
        f"run stopped after {summary['seconds']:.0f} s: {len(summary['decisions'])} decisions, "
        f"restarts {summary['restarts'] or 'none'}, jobs {summary['jobs']}"
    )
