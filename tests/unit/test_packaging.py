"""The wheel carries what commands read outside a checkout: the .env template
(`config init`) and the whole compose stack with its Prometheus and Grafana files
(`stack up`)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "src" / "fraudctl" / "data"


def test_the_wheel_ships_every_data_file(tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    built = subprocess.run(
        [*pip, str(ROOT), "-w", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("fraudctl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"fraudctl/data/{p.relative_to(DATA)}" for p in DATA.rglob("*") if p.is_file()}
    assert "fraudctl/data/compose/docker-compose.yml" in wanted
    assert "fraudctl/data/compose/prometheus/rules.yml" in wanted
    assert wanted <= names, sorted(wanted - names)


def test_the_checkouts_compose_and_env_template_are_the_packaged_ones() -> None:
    from fraudctl.cli.stack_cmd import COMPOSE_FILE

    assert COMPOSE_FILE.is_file() and DATA in COMPOSE_FILE.parents
    assert (ROOT / "compose").resolve() == DATA / "compose"
    assert (ROOT / ".env.example").resolve() == DATA / "env.example"
