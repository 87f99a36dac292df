"""compose/docker-compose.yml is checked by structure (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from fraudctl.config import STACK_PORTS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|ROOT_USER", re.I)
ENV_REFERENCE = re.compile(r"^\$\{FRAUDCTL_[A-Z0-9_]+(:\?[^}]*)?\}$")


def services() -> dict[str, Any]:
    return dict(COMPOSE["services"])


def test_every_service_has_an_image_and_long_running_ones_a_healthcheck() -> None:
    for name, service in services().items():
        assert "image" in service, name
        if service.get("restart") != "no":
            assert "healthcheck" in service, name


def test_secrets_come_only_from_env_references() -> None:
    for name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert ENV_REFERENCE.match(str(value)), (name, key, value)


def test_stack_profile_ports_are_published_on_loopback() -> None:
    published = {}
    for name, service in services().items():
        for mapping in service.get("ports", []):
            host, port, _container = mapping.split(":")
            assert host == "127.0.0.1", (name, mapping)
            published[int(port)] = name
    for part, port in STACK_PORTS.items():
        assert port in published, (part, port)


def test_env_example_lists_every_variable_compose_uses() -> None:
    text = (ROOT / "compose" / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{(FRAUDCTL_[A-Z0-9_]+)", text))
    example = (ROOT / ".env.example").read_text()
    assert used
    assert all(f"\n{name}=" in example for name in used), used
