"""`fraudctl demo`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fraudctl.cli.common import JsonOption, console, err_console, print_json, state_of, table


def demo(
    ctx: typer.Context,
    count: Annotated[
        int, typer.Option(min=10_000, help="Events of the history (the drifted stream: 1/12).")
    ] = 20_000,
    port: Annotated[
        int, typer.Option(min=0, max=65534, help="Port of the demo's server (0 = a free one).")
    ] = 0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the steps and their commands; run nothing.")
    ] = False,
    live: Annotated[
        bool,
        typer.Option("--live", help="Instead of the scripted steps: `fraudctl run` by itself."),
    ] = False,
    for_: Annotated[
        str, typer.Option("--for", help="With --live: how long the run goes on.")
    ] = "6m",
    as_json: JsonOption = False,
) -> None:
    """Run the whole loop end to end: produce → materialize → train → promote → retrain →
    serve a canary with shadow traffic → drift (normal, then drifted) → a refused
    promotion, then a summary.

    Each step is the real command in a child process (its log under
    HOME/demo-logs/); the first step that fails stops the demo, naming the step and a fix.
    On the local profile every run gets a fresh home (HOME/demo/<time>); on the stack
    profile the run gets its own topics, bucket and model name on the running services.
    Exit 0 when every step did what it should.

    --live: `fraudctl run` instead, on a fresh local home with short intervals (a first
    model bootstrapped, served traffic with delayed labels, retraining every minute, the
    canary at 20 % then 50 %, 20 s a step), for --for (6 min), then the decisions it
    made. Exit 0 when a candidate went through the canary's steps to production, 4 when
    none did in the time.
    """
    from fraudctl.cli.demo_steps import Demo, DemoPlan, DemoStepFailed, demo_home, demo_steps

    state = state_of(ctx)
    if live:
        from fraudctl.cli.demo_live import live_demo
        from fraudctl.timespec import parse_duration

        live_demo(state, parse_duration("--for", for_), port, as_json)
        return
    settings = state.settings
    home = demo_home(settings.home)
    plan = DemoPlan(
        profile=settings.profile, home=home, flags=dict(state.flags), env_file=state.env_file,
        toml_file=state.toml_file, count=count, port=port,
    )  # fmt: skip
    if dry_run:
        steps = [
            {"name": step.name, "title": step.title, "expected_exit": list(step.expected),
             "command": "fraudctl " + " ".join([*plan.global_args(), *step.args, "--json"])
             if step.args is not None else f"(in process: {step.builtin})"}
            for step in demo_steps(plan)
        ]  # fmt: skip
        if as_json:
            print_json({"home": str(home), "steps": steps})
        else:
            rows = [(str(i), s["name"], s["command"]) for i, s in enumerate(steps, 1)]
            console.print(table(f"demo plan (state in {home})", ("#", "step", "command"), rows))
        return

    def progress(title: str, record: Any) -> None:
        if record is None:
            status.update(f"{title}…")
            return
        mark = "[green]✓[/green]" if record.ok else "[red]✗[/red]"
        err_console.print(f"{mark} {title} [dim]({record.seconds:.1f} s)[/dim]")

    err_console.print(f"demo on the {settings.profile} profile; state in {home}")
    runner = Demo(plan, progress)
    try:
        with err_console.status("starting…") as status:
            report = runner.run()
    except DemoStepFailed as exc:
        exc.details = {"demo": runner.report.as_dict()}
        raise
    if as_json:
        print_json(report.as_dict())
        return
    render(report.as_dict())


def render(report: dict[str, Any]) -> None:
    s = report["summary"]
    rows: list[tuple[str, str]] = [
        ("events", f"{s['events']['history']:,} history + {s['events']['drifted']:,} drifted "
                   f"({s['events']['materialized_valid']:,} materialized first)"),
    ]  # fmt: skip
    for model in s["models"]:
        rows.append((f"model {model['label']}", f"version {model['version']}, "
                     f"holdout ROC AUC {model['roc_auc']:.4f}"))  # fmt: skip
    aliases = ", ".join(f"{k} = v{v}" for k, v in s["aliases"].items())
    rows.append(("aliases", aliases))
    canary = s["canary"]
    rows.append(
        (
            "canary",
            f"{canary['weight_percent']:g} % configured, {canary['share']:.1%} of rows served; "
            f"error rate {canary['error_rate'] or 0:.2%}, p95 {canary['p95_ms'] or 0:.1f} ms, "
            f"shadow agreement {canary['shadow_agreement'] or 0:.1%}",
        )
    )
    drift = s["drift"]
    top = ", ".join(f"{k} {v}" for k, v in drift["drifted"]["top"].items())
    rows.append(
        ("drift (normal)", f"{drift['normal']['status']}, PSI {drift['normal']['score']:.3f}")
    )
    rows.append(
        (
            "drift (drifted)",
            f"{drift['drifted']['status']}, PSI {drift['drifted']['score']:.3f} ({top})",
        )
    )
    rows.append(("promotion of C", f"{s['refused']['outcome']}: {s['refused']['reason']}"))
    rows.append(("drift report", str(drift["report"])))
    rows.append(("MLflow UI", s["where"]["mlflow_ui"]))
    rows.append(("plots", s["where"]["plots"]))
    rows.append(("logs", s["where"]["logs"]))
    console.print(table(f"demo done in {report['seconds']:.0f} s", ("", ""), rows))
