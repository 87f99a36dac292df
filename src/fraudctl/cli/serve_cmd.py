"""`fraudctl serve` and `fraudctl canary`."""

from __future__ import annotations

import json
import os
import time
from typing import Annotated, Any

import typer
from rich.console import Console

from fraudctl.adapters.serve_client import call_server
from fraudctl.cli.common import (
    CanaryStepsOption,
    GracefulStop,
    JsonOption,
    StepDeadlineOption,
    StepEveryOption,
    check_engine,
    console,
    err_console,
    key_values,
    print_json,
    state_of,
)
from fraudctl.timespec import parse_duration

UrlOption = Annotated[
    str,
    typer.Option(envvar="FRAUDCTL_SERVE_URL", help="The running server (FRAUDCTL_SERVE_URL)."),
]
DEFAULT_URL = "http://127.0.0.1:8000"


def serve(
    ctx: typer.Context,
    canary: Annotated[
        float, typer.Option(min=0, max=100, help="Percent of users sent to the 'staging' model.")
    ] = 0.0,
    shadow: Annotated[
        bool, typer.Option("--shadow", help="Also score every request with 'candidate', off-path.")
    ] = False,
    replicas: Annotated[int, typer.Option(min=1, max=64, help="Ray Serve replicas.")] = 1,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    engine: Annotated[
        str, typer.Option(help="ray (Ray Serve, default) or uvicorn (one process, no Ray).")
    ] = "ray",
    ingress: Annotated[
        str | None,
        typer.Option(
            help="Ray only: direct (the replica listens on --port itself; default for one "
            "replica on local Ray) or proxy (Serve's proxy on --port spreads over replicas)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Serve fraud scores over HTTP: POST /v1/score, /v1/score/batch; GET /health, /ready,
    /metrics, /v1/models, /v1/canary; OpenAPI at /openapi.json. Runs until Ctrl-C.

    Exit 3 when the registry or the online store is unreachable at start, 4 when no
    model is registered yet.
    """
    from fraudctl.errors import BackendUnavailable, UsageError

    check_engine(engine)
    if engine == "uvicorn" and replicas != 1:
        raise UsageError("--engine uvicorn runs one process", hint="drop --replicas")
    settings = state_of(ctx).settings
    ingress = _ingress(engine, ingress, replicas, settings.ray_address)
    versions = _preflight(settings)
    url = f"http://{host}:{port}"
    ready = {
        "url": url,
        "engine": engine,
        "ingress": ingress,
        "replicas": replicas,
        "canary_pct": canary,
        "shadow": shadow,
        "aliases": versions,
    }
    if engine == "uvicorn":
        from fraudctl.serving.hosts import run_uvicorn

        # uvicorn drains, then raises the signal again: absorbed here, a normal stop (0).
        with GracefulStop():
            run_uvicorn(settings, host, port, canary, shadow, lambda: _announce(ready, as_json))
        return
    from fraudctl.serving.hosts import start_ray, stop_ray

    # Ray prints its own messages on the process's stdout (file descriptor 1); stdout
    # belongs to the one --json object, so everything else is sent to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    try:
        with err_console.status("starting Ray Serve…"):
            try:
                start_ray(settings, host, port, canary, shadow, replicas, ingress or "proxy")
            except (RuntimeError, OSError) as exc:  # Ray's own start-up failures
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise BackendUnavailable(
                    f"Ray Serve did not start ({type(exc).__name__}: {first})",
                    hint="see the replica logs under /tmp/ray/session_latest/logs/serve",
                ) from exc
        _announce(ready, as_json, out)
        with GracefulStop() as stop:
            while not stop.requested():
                time.sleep(0.2)
    finally:
        with err_console.status("stopping…"):
            stop_ray()


def _ingress(engine: str, chosen: str | None, replicas: int, ray_address: str | None) -> str | None:
    """How HTTP reaches the Ray replicas (None for uvicorn): direct by default for one
    replica on a local Ray, proxy otherwise."""
    from fraudctl.errors import UsageError
    from fraudctl.serving.hosts import INGRESS_MODES

    if engine == "uvicorn":
        if chosen is not None:
            raise UsageError("--ingress applies to --engine ray", hint="drop --ingress")
        return None
    if chosen is None:
        return "direct" if replicas == 1 and ray_address is None else "proxy"
    if chosen not in INGRESS_MODES:
        raise UsageError(f"--ingress {chosen!r} is not known", hint="use direct or proxy")
    if chosen == "direct" and replicas != 1:
        raise UsageError(
            "--ingress direct serves one replica on --port",
            hint="use --ingress proxy to spread requests over --replicas",
        )
    if chosen == "direct" and ray_address is not None:
        raise UsageError(
            "--ingress direct needs the local Ray this command starts "
            "(FRAUDCTL_RAY_ADDRESS joins a running cluster, whose Serve settings are its own)",
            hint="use --ingress proxy, or unset FRAUDCTL_RAY_ADDRESS",
        )
    return chosen


def _preflight(settings: Any) -> dict[str, str | None]:
    """Exit 3 naming the URI when the registry is unreachable; exit 4 when nothing is
    registered under any alias a variant serves."""
    from fraudctl.bootstrap import wire
    from fraudctl.serving.variants import ModelSource

    backends = wire(settings)
    backends.registry.check()
    source = ModelSource(backends.registry, shadow=False)
    versions = source.versions()
    backends.features.read(["user-0"])  # exit 3 if down
    source.baseline_alias(versions)  # exit 4: nothing to serve
    return versions


def _announce(ready: dict[str, Any], as_json: bool, out: Any = None) -> None:
    if as_json:
        if out is None:
            print_json(ready)
        else:
            out.write(json.dumps(ready) + "\n")
            out.flush()
        return
    target = console if out is None else Console(file=out, highlight=False)
    target.print(f"serving on [bold]{ready['url']}[/bold] ({ready['engine']}); Ctrl-C stops")
    target.print(key_values({k: v for k, v in ready.items() if k != "url"}))


# -- canary ------------------------------------------------------------------------------

canary_app = typer.Typer(help="Watch and steer the canary of a running server.")


@canary_app.command("status")
def status(
    url: UrlOption = DEFAULT_URL,
    window: Annotated[str, typer.Option(help="Trailing window, e.g. 5m.")] = "5m",
    as_json: JsonOption = False,
) -> None:
    """Per-variant requests, error rate, p50/p95, mean score, shadow agreement."""
    seconds = parse_duration("--window", window)
    result = call_server(url, "GET", f"/v1/canary?window={seconds}")
    if as_json:
        print_json(result)
        return
    console.print(f"canary weight {result['canary_weight']:g} % · window {window}")
    for name, stats in sorted(result["variants"].items()):
        console.print(key_values(stats, title=name))


@canary_app.command("set")
def set_weight(
    pct: Annotated[float, typer.Argument(min=0, max=100, help="Percent of users.")],
    url: UrlOption = DEFAULT_URL,
    reason: Annotated[str, typer.Option(help="Recorded with the change.")] = "set by operator",
    as_json: JsonOption = False,
) -> None:
    """Change the split on the running server (no restart)."""
    change = call_server(url, "POST", "/v1/canary", {"weight": pct, "reason": reason})
    _print_change(change, as_json)


@canary_app.command("rollback")
def rollback(
    url: UrlOption = DEFAULT_URL,
    reason: Annotated[str, typer.Option(help="Recorded with the rollback.")] = "operator rollback",
    as_json: JsonOption = False,
) -> None:
    """Send no traffic to the canary, recording why."""
    change = call_server(url, "POST", "/v1/canary", {"weight": 0, "reason": f"rollback: {reason}"})
    _print_change(change, as_json)


def _print_change(change: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(change)
    else:
        console.print(
            f"canary weight {change['previous']:g} % → {change['weight']:g} % ({change['reason']})"
        )


@canary_app.command("watch")
def watch(
    ctx: typer.Context,
    url: UrlOption = DEFAULT_URL,
    auto_rollback: Annotated[
        bool,
        typer.Option("--auto-rollback", help="Roll back on the first breach (serving or quality)."),
    ] = False,
    max_error_rate: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Default: setting canary_max_error_rate (0.01)."),
    ] = None,
    max_p95_ms: Annotated[
        float | None, typer.Option(min=0, help="Default: setting canary_max_p95_ms (200).")
    ] = None,
    min_requests: Annotated[int, typer.Option(min=1)] = 200,
    window: Annotated[str, typer.Option(help="Trailing window judged, e.g. 5m.")] = "5m",
    interval: Annotated[str, typer.Option(help="Time between checks.")] = "5s",
    quality_every: Annotated[
        str,
        typer.Option(
            help="Time between quality checks (the canary against the baseline on matured "
            "labels, the production quality gate's rule); 0: none."
        ),
    ] = "5m",
    quality_window: Annotated[
        str, typer.Option(help="Served traffic the quality check reads, e.g. 24h.")
    ] = "24h",
    for_: Annotated[
        str | None, typer.Option("--for", help="Stop watching after this long (exit 0).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check the canary every --interval over the trailing --window; with enough requests,
    an error rate or p95 above the limits is a breach. Every --quality-every, a canary
    significantly worse than the baseline on its matured labels (settings
    promote_quality_*) is a breach too. With --auto-rollback a breach sets the canary to
    0 % (recording what was seen) and exits 4."""
    from dataclasses import replace

    from fraudctl.errors import Refused
    from fraudctl.gates import Limits
    from fraudctl.services.canary import WatchOptions, watch_canary

    state = state_of(ctx)
    defaults = Limits.of(state.settings)
    limits = replace(
        defaults,
        max_error_rate=defaults.max_error_rate if max_error_rate is None else max_error_rate,
        max_p95_ms=defaults.max_p95_ms if max_p95_ms is None else max_p95_ms,
        min_requests=min_requests,
    )
    quality_every_s = 0.0 if quality_every.strip() == "0" else parse_duration(
        "--quality-every", quality_every
    )  # fmt: skip
    options = WatchOptions(
        url=url,
        limits=limits,
        window_s=parse_duration("--window", window),
        every_s=parse_duration("--interval", interval),
        for_s=parse_duration("--for", for_) if for_ else None,
        auto_rollback=auto_rollback,
        quality_every_s=quality_every_s,
        quality_window_s=parse_duration("--quality-window", quality_window),
    )
    with GracefulStop() as stop:
        result = watch_canary(
            state.backends,
            options,
            stop.requested,
            lambda breach: err_console.print(f"[red]breach[/red]: {breach}"),
        )
    if result.rolled_back:
        # One JSON document with --json: the error, with what was done and seen.
        raise Refused(f"canary rolled back: {result.breach}", details=result.as_dict())
    if as_json:
        print_json(result.as_dict())
    else:
        console.print(f"no breach in {result.checks} check(s) ({result.quality_checks} of quality)")


@canary_app.command("step")
def step(
    ctx: typer.Context,
    url: UrlOption = DEFAULT_URL,
    canary_steps: CanaryStepsOption = "10,25,50",
    step_every: StepEveryOption = "10m",
    step_deadline: StepDeadlineOption = None,
    as_json: JsonOption = False,
) -> None:
    """Take the staging candidate's next progressive-delivery step, once: what `fraudctl
    run` does every --check-every, for a scheduler that runs it (a Kubernetes CronJob).

    Where the rollout stands is read back, not kept: the candidate is the version at
    staging; its canary decisions in the promotion log say whether it has begun, how
    many steps it has taken and since when. Not begun: the canary at the first step.
    Else the step's serving and quality gates decide: hold, next step, production
    (`promote --to production`) or roll back. Every move is recorded. Exit 0 (nothing to
    do, begun, held, advanced, promoted), 4 rolled back, 3 server or registry down.
    """
    from fraudctl.cli.common import rollout_plan
    from fraudctl.errors import Refused
    from fraudctl.services.canary_step import canary_step

    state = state_of(ctx)
    plan = rollout_plan(canary_steps, step_every, step_deadline)
    result = canary_step(state.backends, plan, url)
    if result.refused:
        raise Refused(f"canary rolled back: {result.reason}", details=result.as_dict())
    if as_json:
        print_json(result.as_dict())
    else:
        weight = "" if result.weight is None else f" at {result.weight:g} %"
        console.print(f"{result.move}: version {result.version or '-'}{weight} - {result.reason}")
