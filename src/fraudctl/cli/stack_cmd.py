"""`fraudctl stack`: the real services, natively or through Docker Compose."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from fraudctl.cli.common import JsonOption, console, err_console, print_json, state_of, table
from fraudctl.errors import BackendUnavailable

app = typer.Typer(help="Start, stop and inspect the service stack.", no_args_is_help=True)

# The compose stack ships inside the package (pyproject's package-data), so `stack up`
# works from any directory; ./compose in a checkout is a link to the same files.
COMPOSE_FILE = Path(__file__).resolve().parents[1] / "data" / "compose" / "docker-compose.yml"

NativeOption = Annotated[
    bool,
    typer.Option(
        "--native",
        help="Run the services as local processes on 127.0.0.1 (no Docker needed).",
    ),
]


def _render(reports: list[dict[str, object]], title: str, as_json: bool) -> None:
    if as_json:
        print_json({"services": reports})
        return
    console.print(
        table(
            title,
            ("service", "state", "pid", "address", "log"),
            ([r["name"], r["state"], r["pid"], r["url"], r["log"]] for r in reports),
        )
    )


@app.command("up")
def up(
    ctx: typer.Context,
    native: NativeOption = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="With --native: start only these services (kafka, s3, redis, mlflow; repeatable).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Start the broker, S3 server, Redis and MLflow; wait until each accepts work.

    Creates the topics and the bucket.  Ports come from the stack profile's settings
    (kafka_bootstrap, redis_url, s3_endpoint, mlflow_uri), so --set overrides them.
    """
    settings = state_of(ctx).settings
    if not native:
        _compose("up", "-d", "--wait")
        return
    from fraudctl.stack import native as native_stack

    with err_console.status("starting the native stack…") as status:
        reports = native_stack.up(
            settings,
            progress=lambda msg: status.update(msg + "…"),
            only=tuple(only) if only else native_stack.SERVICES,
        )
    _render([r.as_dict() for r in reports], "native stack", as_json)


@app.command("down")
def down(ctx: typer.Context, native: NativeOption = False, as_json: JsonOption = False) -> None:
    """Stop exactly the services `stack up` started: the native processes it recorded
    (with or without --native), else the compose stack."""
    from fraudctl.stack import native as native_stack

    settings = state_of(ctx).settings
    if not native and not native_stack.StackState.load(settings).services:
        _compose("down")
        return
    _render([r.as_dict() for r in native_stack.down(settings)], "native stack", as_json)


@app.command("status")
def status(ctx: typer.Context, native: NativeOption = False, as_json: JsonOption = False) -> None:
    """Show the processes the native stack recorded and whether they still run
    (--native is accepted for symmetry with up and down; it is what status shows)."""
    from fraudctl.stack import native as native_stack

    reports = native_stack.status(state_of(ctx).settings)
    _render([r.as_dict() for r in reports], "native stack", as_json)


def _compose(*args: str) -> None:
    docker = shutil.which("docker")
    engine_up = (
        docker is not None
        and subprocess.run([docker, "info"], capture_output=True, check=False).returncode == 0
    )
    if not engine_up:
        raise BackendUnavailable(
            "no Docker engine is running here",
            hint="use the native services instead: `fraudctl stack up --native`",
        )
    if not COMPOSE_FILE.is_file():
        raise BackendUnavailable(
            f"{COMPOSE_FILE} is missing from the installed package",
            hint="reinstall fraudctl (`pip install --force-reinstall fraudctl`)",
        )
    assert docker is not None
    env_file = ["--env-file", ".env"] if Path(".env").is_file() else []
    result = subprocess.run(
        [docker, "compose", *env_file, "-f", str(COMPOSE_FILE), *args], check=False
    )
    if result.returncode != 0:
        raise BackendUnavailable(
            f"docker compose {' '.join(args)} failed (exit {result.returncode})",
            hint=f"see the output above; `docker compose -f {COMPOSE_FILE} logs`",
        )
