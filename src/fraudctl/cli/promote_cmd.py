"""`fraudctl promote`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fraudctl.cli.common import (
    JsonOption,
    console,
    err_console,
    print_json,
    said_no,
    state_of,
    table,
)
from fraudctl.cli.serve_cmd import DEFAULT_URL, UrlOption


def promote(
    ctx: typer.Context,
    to: Annotated[
        str, typer.Option(help="staging (from candidate) or production (from staging).")
    ] = "staging",
    version: Annotated[str | None, typer.Option(help="Promote this version instead.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Evaluate and record the gates; move nothing.")
    ] = False,
    show_history: Annotated[
        bool, typer.Option("--history", help="Print every recorded decision and exit.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Move a registry alias through its gates: to staging when the version's ROC AUC on
    the newest labeled events is at least staging's (or the configured floor) and the
    newest drift result is ok; to production when it has served as canary with enough
    requests and its error rate and p95 within the limits (settings canary_max_error_rate,
    canary_max_p95_ms: 1 % and 200 ms by default) and, on the matured labels of the
    served traffic, it is no worse than the baseline (settings promote_quality_*; too few
    labels yet is inconclusive: refused, the canary keeps running). Every decision is
    recorded.

    Exit 0 promoted (or --dry-run passed), 4 refused, inconclusive or lost to a
    concurrent promote, 3 a backend unreachable.
    """
    from fraudctl.errors import UsageError
    from fraudctl.services.promote import TARGETS, PromoteOptions, history
    from fraudctl.services.promote import promote as run

    state = state_of(ctx)
    if show_history:
        _show_history(history(state.backends.offline, state.settings.model_name), as_json)
        return
    if to not in TARGETS:
        raise UsageError(f"--to {to!r} is not known", hint="use staging or production")
    with err_console.status("promoting…") as status:
        decision = run(
            state.backends,
            PromoteOptions(to, version, dry_run, url),
            lambda m: status.update(f"{m}…"),
        )
    outcome = decision.as_dict()
    if as_json:
        print_json(outcome)
    else:
        _show(outcome)
    if decision.outcome not in ("promoted", "dry_run"):
        said_no()


def _show(outcome: dict[str, Any]) -> None:
    from fraudctl.gates import SHOWN

    console.print(
        table(
            f"promote {outcome['model_name']} v{outcome['version']} → {outcome['to']}",
            ["gate", "result", "measured"],
            [(g["name"], SHOWN[g["verdict"]], g["detail"]) for g in outcome["gates"]],
        )
    )
    colour = {"promoted": "green", "dry_run": "cyan", "inconclusive": "yellow"}.get(
        outcome["outcome"], "red"
    )
    console.print(f"[{colour}]{outcome['outcome']}[/{colour}]: {outcome['reason']}")


def _show_history(decisions: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(decisions)
        return
    console.print(
        table(
            "promotion log",
            ["at", "version", "to", "previous", "outcome", "user", "why"],
            [
                (
                    d["at"],
                    d["version"],
                    d["to"],
                    d["previous"],
                    d["outcome"],
                    d["user"],
                    d["reason"],
                )
                for d in decisions
            ],
        )
    )
