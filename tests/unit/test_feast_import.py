"""`import_feast`: Feast imported without typeguard's import-time instrumentation, and
typeguard left as it was for everything else (a fresh interpreter: in this worker
another test may have imported Feast already)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

PROBE = textwrap.dedent(
    """
    import json, typeguard
    original = typeguard.typechecked
    from fraudctl.adapters.feast_repo import import_feast
    import_feast()
    import_feast()  # once per process
    import feast
    from feast.infra.online_stores import sqlite
    from feast import Entity, ValueType
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)

    @typeguard.typechecked
    def typed(x: int) -> int:
        return x

    try:
        typed("not an int")
        checked = False
    except typeguard.TypeCheckError:
        checked = True
    try:  # typeguard would refuse a description that is not a str
        Entity(name="u", join_keys=["u"], description=123)
        instrumented = False
    except typeguard.TypeCheckError:
        instrumented = True
    print(json.dumps({
        "feast_instrumented": instrumented,
        "restored": typeguard.typechecked is original,
        "still_checks": checked,
        "entity": user.join_key,
        "sqlite_store": sqlite.SqliteOnlineStore.__name__,
    }))
    """
)


def test_feast_imports_uninstrumented_and_typeguard_is_restored(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"  # a file: typeguard instruments from the source
    probe.write_text(PROBE)
    run = subprocess.run(
        [sys.executable, str(probe)], capture_output=True, text=True, check=False, timeout=120
    )
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["restored"] and found["still_checks"]
    assert found["feast_instrumented"] is False
    assert found["entity"] == "user_id" and found["sqlite_store"] == "SqliteOnlineStore"
