"""`fraudctl bus check`: verify every frame of the embedded event bus."""

from __future__ import annotations

import typer

from fraudctl.cli.common import JsonOption, console, err_console, print_json, state_of, table
from fraudctl.errors import Refused, UsageError

app = typer.Typer(help="Inspect the event bus.", no_args_is_help=True)


@app.command("check")
def check(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Read every segment of the embedded bus and report damaged regions (file, byte,
    records unreadable) and tails kept in quarantine. Reads only: safe beside running
    producers and materializers. Exit 0 when every frame is intact, 4 when a region is
    damaged."""
    from fraudctl.adapters import filelog
    from fraudctl.config import FileLogBusConfig

    settings = state_of(ctx).settings
    config = settings.backends().bus
    if not isinstance(config, FileLogBusConfig):
        raise UsageError(
            f"bus check verifies the embedded log; this profile's bus is {config.type} "
            "(the broker verifies its own batches' CRCs)",
            hint="run it with --profile local, or use the broker's own tools",
        )
    root = config.path
    if not root.is_dir():
        raise UsageError(
            f"there is no embedded bus at {root}", hint="produce first (`fraudctl produce`)"
        )
    results = filelog.check(root)
    damaged = [d for r in results for d in r.damage]
    document = {
        "ok": not damaged,
        "bus": str(root),
        "records": sum(r.records for r in results),
        "damaged_regions": len(damaged),
        "quarantined": sum(len(r.quarantined) for r in results),
        "partitions": [r.as_dict() for r in results],
    }
    if not as_json:
        console.print(
            table(
                f"embedded bus {root}",
                ("topic", "partition", "records", "damaged regions", "quarantined tails"),
                (
                    (
                        r.topic,
                        str(r.partition),
                        f"{r.records:,}",
                        str(len(r.damage)),
                        str(len(r.quarantined)),
                    )
                    for r in results
                ),
            )
        )
        for region in damaged:
            err_console.print(f"damaged: {region.describe()}", soft_wrap=True)
    if damaged:
        raise Refused(
            f"{len(damaged)} damaged region(s) in the embedded bus at {root}",
            hint="every record around them is still read; see docs/operations.md "
            "(embedded-bus damage) for what to do",
            details=document if as_json else None,
        )
    if as_json:
        print_json(document)
