"""The `fraudctl` command: global options, subcommands, and the one error boundary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from fraudctl import __version__
from fraudctl.cli import (
    bus_cmd,
    config_cmd,
    contract_cmd,
    demo_cmd,
    doctor_cmd,
    drift_cmd,
    features_cmd,
    materialize_cmd,
    produce_cmd,
    promote_cmd,
    quality_cmd,
    run_cmd,
    serve_cmd,
    stack_cmd,
    train_cmd,
)
from fraudctl.cli.common import AppState, err_console, print_json, reflow
from fraudctl.errors import EXIT_CODE_HELP, ExitCode, FraudctlError, storage_error

app = typer.Typer(
    name="fraudctl",
    help="Run a real-time fraud-scoring platform from one CLI.",
    epilog=EXIT_CODE_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fraudctl {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    profile: Annotated[
        str | None, typer.Option(help="local (embedded, default) or stack (real services).")
    ] = None,
    home: Annotated[
        Path | None, typer.Option(help="State directory (default ./.fraudctl).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="Override any setting (repeatable)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML config file (default ./fraudctl.toml).")
    ] = None,
    env_file: Annotated[
        Path | None, typer.Option("--env-file", help="dotenv file (default ./.env).")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    flags: dict[str, str] = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        flags[key] = value
    if profile is not None:
        flags["profile"] = profile
    if home is not None:
        flags["home"] = str(home)
    ctx.obj = AppState(flags=flags, env_file=env_file, toml_file=config, debug=debug)


app.add_typer(config_cmd.app, name="config")
app.add_typer(stack_cmd.app, name="stack")
app.add_typer(bus_cmd.app, name="bus")
app.command("schema")(contract_cmd.schema)
app.command("validate")(contract_cmd.validate)
app.command("doctor")(doctor_cmd.doctor)
app.command("produce")(produce_cmd.produce)
app.command("materialize")(materialize_cmd.materialize)
app.command("train")(train_cmd.train)
app.command("drift")(drift_cmd.drift)
app.command("promote")(promote_cmd.promote)
app.command("quality")(quality_cmd.quality)
app.command("serve")(serve_cmd.serve)
app.add_typer(serve_cmd.canary_app, name="canary")
features_app = typer.Typer(
    help="Inspect features; open the store to Feast's tools.", no_args_is_help=True
)
features_app.command("get")(materialize_cmd.features_get)
features_app.command("repo")(features_cmd.repo)
app.add_typer(features_app, name="features")
app.command("demo")(demo_cmd.demo)
app.command("run")(run_cmd.run)


def _reflow_help(typer_app: typer.Typer) -> None:
    """Every command's help as paragraphs that wrap to the terminal: the docstrings are
    hard-wrapped at 90 columns, and Typer keeps single line breaks after the first
    paragraph, which broke sentences in the middle on any other width."""
    import inspect

    for info in typer_app.registered_commands:
        if info.help is None and info.callback is not None:
            info.help = reflow(inspect.getdoc(info.callback) or "")
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_help(group.typer_instance)


_reflow_help(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status; every failure is mapped here, once."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="fraudctl", standalone_mode=False)
        return int(result) if isinstance(result, int) else ExitCode.OK
    except FraudctlError as exc:
        if debug:
            err_console.print_exception()
        _report(exc.exit_code, exc.message, exc.hint, as_json="--json" in args, details=exc.details)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err_console.print("interrupted")
        return ExitCode.INTERRUPTED
    except typer.TyperException as exc:  # click's usage errors, as vendored by typer
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err_console.print(f"error: {escape(str(exc))}")
        return ExitCode.USAGE
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return ExitCode.INTERRUPTED
    except OSError as exc:
        mapped = storage_error(exc)
        if mapped is None:
            return _bug(exc, debug, args)
        if debug:
            err_console.print_exception()
        _report(mapped.exit_code, mapped.message, mapped.hint, as_json="--json" in args)
        return mapped.exit_code
    except Exception as exc:
        return _bug(exc, debug, args)


def _bug(exc: Exception, debug: bool, args: list[str]) -> int:
    if debug:
        err_console.print_exception()
    _report(
        ExitCode.BUG,
        f"internal error: {type(exc).__name__}: {exc}",
        "this is a bug in fraudctl; rerun with --debug and report the traceback",
        as_json="--json" in args,
    )
    return ExitCode.BUG


def _report(
    code: ExitCode,
    message: str,
    hint: str | None,
    *,
    as_json: bool,
    details: dict[str, object] | None = None,
) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    if hint:
        err_console.print(f"[dim]hint:[/dim] {escape(hint)}", soft_wrap=True)
    if as_json:
        error = {"message": message, "hint": hint, "exit_code": int(code)}
        print_json({"error": error, **(details or {})})


def run() -> None:
    sys.exit(main())
