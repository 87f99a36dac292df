"""`fraudctl features repo`: a Feast repository of fraudctl's store, for Feast's own tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fraudctl.cli.common import JsonOption, console, print_json, state_of


def repo(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Option("--dir", help="The folder to make a Feast repository.")
    ] = Path("feature_repo"),
    as_json: JsonOption = False,
) -> None:
    """Make --dir a Feast repository of the active profile's feature store:
    feature_store.yaml (the online store, registry and offline store fraudctl uses; a
    Redis password as ${FRAUDCTL_REDIS_PASSWORD}, which Feast reads from the
    environment) and repo.py (fraudctl's own definitions).  fraudctl's definitions are
    registered too, so `feast -c DIR plan` then reports no changes, and `feast -c DIR
    feature-views list`, `feast -c DIR serve` and Feast's SDK
    (`FeatureStore(repo_path=DIR)`) work on the same store (docs/features.md)."""
    from fraudctl.adapters.feast_repo import write_repo

    state = state_of(ctx)
    written = write_repo(state.settings, directory)
    store = state.backends.features  # opening it registers fraudctl's definitions
    result = {
        "directory": str(directory.resolve()),
        "files": [str(path.resolve()) for path in written],
        "online_store": store.where,
        "try": [f"feast -c {directory} plan", f"feast -c {directory} feature-views list"],
    }
    if as_json:
        print_json(result)
        return
    console.print(f"Feast repository written to {result['directory']} (online store {store.where})")
    for command in result["try"]:
        console.print(f"  {command}")
