from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fraudctl.adapters import probes
from fraudctl.errors import BackendUnavailable, ConfigError, Refused
from tests.conftest import RunCli


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (ConfigError("bad key"), 2),
        (BackendUnavailable("broker down", hint="start it"), 3),
        (Refused("gate said no"), 4),
        (KeyboardInterrupt(), 130),
        (RuntimeError("boom"), 1),
    ],
)
def test_boundary_maps_every_failure_to_its_exit_code(
    cli: RunCli, monkeypatch: pytest.MonkeyPatch, raised: BaseException, code: int
) -> None:
    def fail(_settings: object) -> None:
        raise raised

    monkeypatch.setattr(probes, "check_all", fail)
    result = cli("doctor")
    assert result.code == code
    assert "Traceback" not in result.err
    if code == 1:
        assert "internal error: RuntimeError: boom" in result.err
        assert "--debug" in result.err


def test_debug_shows_the_traceback(cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(_settings: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(probes, "check_all", fail)
    result = cli("--debug", "doctor")
    assert result.code == 1
    assert "Traceback" in result.err


def test_error_with_json_flag_is_also_a_json_object(
    cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(_settings: object) -> None:
        raise BackendUnavailable("broker down", hint="start it")

    monkeypatch.setattr(probes, "check_all", fail)
    result = cli("doctor", "--json")
    assert result.code == 3
    assert result.json() == {
        "error": {"message": "broker down", "hint": "start it", "exit_code": 3}
    }


def test_usage_errors_exit_2(cli: RunCli) -> None:
    assert cli("no-such-command").code == 2
    assert cli("--set", "no-equals-sign", "config", "show").code == 2
    assert cli("--set", "nosuchkey=1", "config", "show").code == 2


def test_help_lists_exit_codes_and_version_works(cli: RunCli) -> None:
    result = cli("--help")
    assert result.code == 0
    assert "130 interrupted" in result.out
    assert cli("--version").out.strip().startswith("fraudctl ")


def test_help_imports_no_heavy_library() -> None:
    heavy = [
        "mlflow",
        "ray",
        "feast",
        "evidently",
        "sklearn",
        "pandas",
        "confluent_kafka",
        "pyarrow",
        "minio",
        "redis",
        "fastapi",
        "pydantic",
    ]
    code = (
        "import sys, contextlib, io\n"
        "from fraudctl.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        "import json; print(json.dumps(sorted(m for m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not [m for m in heavy if m in loaded]


def test_doctor_local_profile_is_green(cli: RunCli) -> None:
    result = cli("doctor", "--json")
    assert result.code == 0, result.err
    report = result.json()
    assert report["ok"] is True
    assert [c["backend"] for c in report["checks"]] == [
        "filelog",
        "localfs",
        "sqlite",
        "mlflow (sqlite)",
    ]


def test_stack_up_without_docker_says_use_native(
    cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    result = cli("stack", "up")
    assert result.code == 3
    assert "--native" in result.err


def test_help_texts_are_paragraphs_that_wrap_at_any_width() -> None:
    import typer

    from fraudctl.cli.common import reflow
    from fraudctl.cli.main import app

    assert reflow("one\ntwo\n\nthree\n- a\n  b\n- c") == "one two\n\nthree\n- a\n  b\n- c"
    command = typer.main.get_command(app)
    helps = []

    def walk(node: object) -> None:
        helps.append(getattr(node, "help", None) or "")
        for child in (getattr(node, "commands", None) or {}).values():
            walk(child)

    walk(command)
    assert len(helps) > 15
    for text in helps:
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            # a line break inside a paragraph only before a list item or an indented line
            assert all(
                line.startswith(("-", "*", " ")) or line[:1].isdigit() for line in lines[1:]
            ), paragraph
