"""What every benchmark script shares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def timed(action: Any) -> tuple[float, Any]:
    """Seconds ``action()`` took, and what it returned."""
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def emit(result: dict[str, Any], out: Path | None) -> None:
    """Print the figures as JSON; also write them to ``out`` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


def fraudctl(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``fraudctl ARGS --json`` as a user would; its JSON result, or an error with
    its stderr."""
    run = subprocess.run(
        [sys.executable, "-m", "fraudctl", *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
        env=env or os.environ.copy(),
    )
    if run.returncode != 0:
        raise RuntimeError(f"fraudctl {' '.join(args)} exited {run.returncode}: {run.stderr}")
    result: dict[str, Any] = json.loads(run.stdout)
    return result
