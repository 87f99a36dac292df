"""`fraudctl schema` and `fraudctl validate`: the data contract from the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.markup import escape

from fraudctl.cli.common import JsonOption, console, err_console, print_json, said_no
from fraudctl.errors import ExitCode, UsageError

PROGRESS_EVERY = 50_000


def schema(as_json: JsonOption = False) -> None:
    """Print the JSON Schema (draft 2020-12) of a transaction.

    The output is JSON either way; --json prints it compact on one line.
    """
    from fraudctl.contract import json_schema

    if as_json:
        print_json(json_schema())
    else:
        sys.stdout.write(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n")


def validate(
    source: Annotated[
        str, typer.Argument(metavar="FILE|-", help="JSON Lines file, or - for stdin.")
    ],
    now: Annotated[
        str | None,
        typer.Option(help="Judge 'in the future' against this UTC time instead of the clock."),
    ] = None,
    show: Annotated[
        int, typer.Option(help="Invalid lines to list in text mode (all with --json).")
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """Check JSON Lines records against the data contract.

    Reports valid and invalid counts and, per invalid line, its number, field and
    reason; never stops at the first bad line and reads in constant memory.
    Exit 0 all valid, 4 some invalid, 2 input that is not JSON Lines at all.
    """
    from fraudctl.contract import parse_utc_timestamp, system_clock, validate_lines

    clock = system_clock
    if now is not None:
        try:
            fixed = parse_utc_timestamp(now)
        except ValueError as exc:
            raise UsageError(f"--now {now!r} {exc}") from exc

        def clock() -> datetime:
            return fixed

    valid = invalid = objects = 0
    listed = hidden = 0
    out = sys.stdout
    with ExitStack() as stack:
        lines = _open_lines(source, stack)
        if as_json:
            out.write('{"errors": [')
        for report in validate_lines(lines, clock=clock):
            objects += report.is_json_object
            if not report.violations:
                valid += 1
            else:
                invalid += 1
                for violation in report.violations:
                    if as_json:
                        item = {
                            "line": report.line,
                            "field": violation.field,
                            "reason": violation.reason,
                        }
                        out.write((", " if listed else "") + json.dumps(item))
                        listed += 1
                    elif listed < show:
                        out.write(f"line {report.line}: {violation.field}: {violation.reason}\n")
                        listed += 1
                    else:
                        hidden += 1
            if (valid + invalid) % PROGRESS_EVERY == 0 and err_console.is_terminal:
                err_console.print(f"… {valid + invalid:,} records", end="\r")

    total = valid + invalid
    not_jsonl = total > 0 and objects == 0
    status = "not_jsonl" if not_jsonl else ("ok" if invalid == 0 else "invalid")
    if as_json:
        out.write(
            f'], "records": {total}, "valid": {valid}, "invalid": {invalid}, '
            f'"status": "{status}"}}\n'
        )
    else:
        if hidden:
            out.write(f"… {hidden:,} more violations not listed (--show N or --json for all)\n")
        console.print(
            f"{total:,} records: [green]{valid:,} valid[/green], "
            f"[{'red' if invalid else 'green'}]{invalid:,} invalid[/]"
        )
    if not_jsonl:
        err_console.print(
            f"[red]error:[/red] {escape(source)} is not JSON Lines: none of its {total:,} "
            "non-blank lines is a JSON object"
        )
        raise typer.Exit(ExitCode.USAGE)
    if invalid:
        said_no()


def _open_lines(source: str, stack: ExitStack) -> Iterator[bytes]:
    if source == "-":
        handle: BinaryIO = sys.stdin.buffer
    else:
        path = Path(source)
        if not path.is_file():
            raise UsageError(
                f"{source}: no such file", hint="give a JSON Lines file or - for stdin"
            )
        handle = stack.enter_context(path.open("rb"))
    return iter(handle)
