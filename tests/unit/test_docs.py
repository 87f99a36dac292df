"""Generated documentation is current: docs/cli.md (every command's --help),
docs/data-contracts.md (the contract module) and docs/architecture.svg (its .dot)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def generator() -> Any:
    return load_script("scripts/gendocs.py")


def test_generated_docs_are_current() -> None:
    for name, text in generator().render().items():
        assert (DOCS / name).read_text() == text, f"docs/{name} is stale: run `make docs`"


def test_cli_reference_covers_every_command() -> None:
    text = (DOCS / "cli.md").read_text()
    for path in generator().commands():
        assert f"### `{' '.join(['fraudctl', *path])}`" in text, path
    for command in ("produce", "materialize", "train", "serve", "canary", "drift", "promote",
                    "demo"):  # fmt: skip
        assert f"### `fraudctl {command}`" in text


def test_contract_doc_lists_every_field_of_the_contract() -> None:
    from fraudctl.contract import LabelRecord, Transaction

    text = (DOCS / "data-contracts.md").read_text()
    for model in (Transaction, LabelRecord):
        for name in model.model_fields:
            assert f"| `{name}` |" in text, name


def test_architecture_diagram_is_rendered_from_its_source() -> None:
    dot = shutil.which("dot")
    assert dot, "Graphviz missing: `make system-deps` installs it"
    rendered = subprocess.run(
        [dot, "-Tsvg", str(DOCS / "architecture.dot")], capture_output=True, check=True
    ).stdout
    assert rendered == (DOCS / "architecture.svg").read_bytes(), "run `make diagram`"
    assert "architecture.svg" in (DOCS / "architecture.md").read_text()


def test_configuration_doc_names_every_setting() -> None:
    from fraudctl.config import KEYS

    text = (DOCS / "configuration.md").read_text()
    assert [key for key in KEYS if f"FRAUDCTL_{key.upper()}" not in text] == []
