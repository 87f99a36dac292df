"""compose/ is checked by structure (no Docker engine here): images, health checks, only
.env-sourced secrets, named volumes, existing bind mounts, loopback ports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from fraudctl.cli.config_cmd import GENERATED_SECRETS
from fraudctl.config import STACK_PORTS
from tests.hygiene import ENV_REFERENCE, SECRET_NAME, credential_literals

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
OBSERVABILITY_PORTS = {"prometheus": 9090, "pushgateway": 9091, "grafana": 3000,
                       "otel-collector": 4318, "jaeger": 16686}  # fmt: skip
PLATFORM = {"redpanda", "redis", "minio", "postgres", "mlflow", *OBSERVABILITY_PORTS}


def services() -> dict[str, Any]:
    return dict(COMPOSE["services"])


def test_the_whole_platform_is_there() -> None:
    assert set(services()) >= PLATFORM


def test_every_service_has_an_image_and_long_running_ones_a_healthcheck() -> None:
    one_shot = set()
    for name, service in services().items():
        assert "image" in service, name
        if service.get("restart") == "no":
            one_shot.add(name)
        else:
            assert "healthcheck" in service, name
            assert service["healthcheck"]["test"], name
    # A one-shot job (topics, buckets) is awaited by what needs it, never left to chance.
    awaited = {
        dependency
        for service in services().values()
        for dependency, condition in (service.get("depends_on") or {}).items()
        if condition["condition"] == "service_completed_successfully"
    }
    assert one_shot <= awaited | {"redpanda-topics"}, one_shot - awaited


def test_secrets_come_only_from_env_references_that_config_init_generates() -> None:
    for name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                match = ENV_REFERENCE.match(str(value))
                assert match, (name, key, value)
                assert match.group(1) in GENERATED_SECRETS, (name, key)


def test_no_credential_literal_in_any_compose_or_config_file() -> None:
    checked = 0
    for path in sorted(COMPOSE_DIR.rglob("*")):
        if path.suffix in {".yml", ".yaml", ".json"} and path.is_file():
            checked += 1
            assert not credential_literals(path.read_text()), path
    assert checked >= 8
    # the check itself can fail
    assert credential_literals("      POSTGRES_PASSWORD: hunter2\n")
    assert credential_literals("uri: postgresql://mlflow:hunter2@postgres/mlflow\n")
    assert not credential_literals('uri: "postgresql://mlflow:$$MLFLOW_DB_PASSWORD@db"\n')


def test_volumes_are_named_and_bind_mounts_exist() -> None:
    declared = set(COMPOSE["volumes"])
    used = set()
    for name, service in services().items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), (name, mount)
            else:
                assert source in declared, (name, mount)
                used.add(source)
        if "build" in service:
            assert (COMPOSE_DIR / service["build"] / "Dockerfile").is_file(), name
    assert used == declared


def test_ports_are_published_on_loopback_for_the_stack_profile_and_the_uis() -> None:
    published = {}
    for name, service in services().items():
        for mapping in service.get("ports", []):
            host, port, _container = mapping.split(":")
            assert host == "127.0.0.1", (name, mapping)
            published[int(port)] = name
    for part, port in STACK_PORTS.items():
        assert port in published, (part, port)
    for name, port in OBSERVABILITY_PORTS.items():
        assert published.get(port) == name, (name, port)


def test_env_example_lists_every_variable_compose_uses() -> None:
    text = (COMPOSE_DIR / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", text))
    example = (ROOT / ".env.example").read_text()
    assert {"FRAUDCTL_REDIS_PASSWORD", "MLFLOW_DB_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= used
    for name in used:
        assert f"\n{name}=" in example, name
        # each variable sits under a comment (one comment may explain a pair of them)
        above = [line for line in example.split(f"\n{name}=")[0].splitlines() if line]
        while above and re.match(r"^[A-Z][A-Z0-9_]*=", above[-1]):
            above.pop()
        assert above and above[-1].startswith("#"), name
