"""`fraudctl doctor`: is every configured backend reachable, authenticated, provisioned?"""

from __future__ import annotations

import typer
from rich.markup import escape

from fraudctl.cli.common import JsonOption, console, print_json, state_of, status_mark, table
from fraudctl.errors import ExitCode


def doctor(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Check each backend of the active profile; exit 3 if any is unavailable."""
    from fraudctl.adapters.probes import check_all

    settings = state_of(ctx).settings
    results = check_all(settings)
    healthy = all(r.ok for r in results)
    if as_json:
        print_json(
            {"profile": settings.profile, "ok": healthy, "checks": [r.as_dict() for r in results]}
        )
    else:
        console.print(
            table(
                f"fraudctl doctor (profile {settings.profile})",
                ("status", "part", "backend", "target", "detail"),
                (
                    [status_mark(r.ok), r.part, r.backend, r.target, r.detail if r.ok else ""]
                    for r in results
                ),
            )
        )
        for r in results:
            if not r.ok:
                console.print(f"[red]✗ {r.part}[/red]: {escape(r.detail)}", soft_wrap=True)
                if r.hint:
                    console.print(f"  [dim]fix:[/dim] {escape(r.hint)}", soft_wrap=True)
    if not healthy:
        raise typer.Exit(ExitCode.BACKEND_UNAVAILABLE)
