"""What every benchmark script shares."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
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


@contextlib.contextmanager
def trained_stack(prefix: str, events: int = 20_000) -> Iterator[tuple[dict[str, str], Path]]:
    """A private native stack (broker, S3, Redis, MLflow) on free ports in a temporary
    home, with ``events`` produced, materialized and one model trained; yields its
    environment and the home, and stops the stack on the way out (SIGTERM included: it
    unwinds like Ctrl-C)."""
    import signal
    import tempfile

    from fraudctl.stack.native import private_stack_env

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        base = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDCTL_")}
        env = base | private_stack_env(Path(workdir))
        print("starting a private native stack…", file=sys.stderr)
        fraudctl("stack", "up", "--native", env=env)
        try:
            print("producing, materializing, training…", file=sys.stderr)
            fraudctl("produce", "--rate", "0", "--count", str(events), "--label-delay", "0",
                     env=env)  # fmt: skip
            fraudctl("materialize", env=env)
            fraudctl("train", env=env)
            yield env, Path(workdir)
        finally:
            fraudctl("stack", "down", "--native", env=env)
