"""`fraudctl config`: show the effective configuration; create a private .env."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from fraudctl.cli.common import JsonOption, console, print_json, state_of, table
from fraudctl.errors import UsageError

app = typer.Typer(help="Inspect and initialise configuration.", no_args_is_help=True)

# Secrets `config init` generates; the rest of .env.example is copied as written.
GENERATED_SECRETS = (
    "FRAUDCTL_S3_ACCESS_KEY",
    "FRAUDCTL_S3_SECRET_KEY",
    "FRAUDCTL_REDIS_PASSWORD",
    "FRAUDCTL_PSEUDONYM_KEY",  # produce --from: the key of the user-id pseudonyms
    "MLFLOW_DB_PASSWORD",  # compose only: MLflow's PostgreSQL backend store
    "GRAFANA_ADMIN_PASSWORD",  # compose only
)


@app.command("show")
def show(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Print every setting, its value (secrets masked) and where it came from, then each
    backend choice with the parameters it uses."""
    loaded = state_of(ctx).config()
    rows = loaded.rows()
    files = {name: str(path) if path else None for name, path in loaded.files.items()}
    backends = loaded.backend_rows()
    if as_json:
        print_json({"settings": rows, "backends": backends, "files": files})
        return
    console.print(
        table(
            f"fraudctl config (profile {loaded.settings.profile})",
            ("key", "env var", "value", "source"),
            (
                [r["key"], r["env"], "(unset)" if r["value"] is None else r["value"], r["source"]]
                for r in rows
            ),
        )
    )
    console.print(
        table(
            "backends",
            ("backend", "type", "parameters"),
            (
                [name, choice["type"], ", ".join(f"{k}={v}" for k, v in choice.items()
                                                if k != "type" and v is not None)]
                for name, choice in backends.items()
            ),
        )
    )  # fmt: skip
    for name, path in files.items():
        console.print(f"{name}: {path or '(none)'}")


def _template(example: Path | None) -> str:
    """The chosen template, the checkout's, or the one installed with the package (so
    `pip install fraudctl && fraudctl config init` works from any directory)."""
    if example is None and Path(".env.example").is_file():
        example = Path(".env.example")
    if example is not None:
        return example.read_text(encoding="utf-8")
    from importlib.resources import files

    return (files("fraudctl") / "data" / "env.example").read_text(encoding="utf-8")


@app.command("init")
def init(
    path: Annotated[Path, typer.Option(help="Where to write the dotenv file.")] = Path(".env"),
    example: Annotated[
        Path | None,
        typer.Option(
            help="Template to copy (default: ./.env.example if there is one, else the "
            "template installed with fraudctl)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a private (0600) .env from .env.example with freshly generated secrets.

    The secrets are never printed; only the names of the variables that were set.
    """
    if path.exists() and not force:
        raise UsageError(f"{path} exists already", hint="pass --force to replace it")
    if example is not None and not example.is_file():
        raise UsageError(f"template {example} not found", hint="give an existing file")
    generated: list[str] = []
    lines = []
    for line in _template(example).splitlines():
        name = line.split("=", 1)[0].strip()
        if name in GENERATED_SECRETS and "=" in line:
            lines.append(f"{name}={secrets.token_hex(16)}")
            generated.append(name)
        else:
            lines.append(line)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    if as_json:
        print_json({"path": str(path), "generated": generated})
    else:
        console.print(f"wrote {path} (mode 0600); generated: {', '.join(generated)}")
