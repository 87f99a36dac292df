"""deploy/ holds reference files nobody applies here: each must still parse, carry its
"for reference only" header, point at files and code that exist, and hold no credential."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from fraudctl.config import KEYS
from tests.hygiene import credential_literals

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
YAML_FILES = sorted(DEPLOY.rglob("*.yaml"))
TF_FILES = sorted(DEPLOY.rglob("*.tf"))
# A secret in Terraform is generated or a reference, never a string literal.
TF_REFERENCE = re.compile(r'^"?(\$\{)?(random_password|var|aws_[a-z_]+)\.|^jsonencode\(\{$')


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def test_every_reference_file_is_headed_for_reference_only_and_parses() -> None:
    assert len(YAML_FILES) >= 9 and len(TF_FILES) >= 4
    for path in YAML_FILES + TF_FILES:
        assert path.read_text().startswith("# For reference only"), path
    for path in YAML_FILES:
        for doc in documents(path):
            assert doc["apiVersion"] and doc["kind"], path
    for path in TF_FILES:
        with path.open() as handle:
            assert hcl2.load(handle), path


def test_no_credential_in_any_deploy_file() -> None:
    for path in YAML_FILES + TF_FILES:
        assert not credential_literals(path.read_text(), TF_REFERENCE), path


def test_kustomizations_point_at_existing_files() -> None:
    kustomizations = sorted(DEPLOY.rglob("kustomization.yaml"))
    assert len(kustomizations) == 3
    for path in kustomizations:
        (doc,) = documents(path)
        for resource in doc.get("resources", []):
            target = (path.parent / resource).resolve()
            assert target.is_file() or (target / "kustomization.yaml").is_file(), resource
        for patch in doc.get("patches", []):
            if "path" in patch:
                assert (path.parent / patch["path"]).is_file(), patch


def serve_configs() -> list[dict[str, Any]]:
    found = []
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
        for doc in documents(path):
            if doc["kind"] == "RayService":
                found.append(yaml.safe_load(doc["spec"]["serveConfigV2"]))
    return found


def test_the_rayservice_serves_fraudctls_real_app_builder() -> None:
    configs = serve_configs()
    assert len(configs) == 3  # base and both overlays
    for config in configs:
        (application,) = config["applications"]
        module, _, name = application["import_path"].partition(":")
        assert callable(getattr(importlib.import_module(module), name))
        assert set(application["args"]) <= {"canary", "shadow"}
        assert 0 <= float(application["args"]["canary"]) <= 100


def test_the_app_builder_refuses_a_bad_canary_before_touching_ray() -> None:
    from fraudctl.serving.hosts import app_builder

    with pytest.raises(ValueError, match="canary must be a percent"):
        app_builder({"canary": "150"})


def test_configmap_keys_are_real_settings_and_hold_no_secret() -> None:
    (config,) = documents(DEPLOY / "k8s" / "base" / "settings.yaml")
    for key in config["data"]:
        assert key.startswith("FRAUDCTL_") and key[9:].lower() in KEYS, key
        assert not re.search("PASSWORD|SECRET|ACCESS_KEY", key), key


def test_argocd_applications_sync_existing_overlays() -> None:
    apps = sorted((DEPLOY / "argocd").glob("*.yaml"))
    assert len(apps) == 2
    for path in apps:
        (app,) = documents(path)
        assert app["kind"] == "Application"
        assert (ROOT / app["spec"]["source"]["path"] / "kustomization.yaml").is_file()


def test_terraform_variables_used_are_declared_and_secrets_are_generated() -> None:
    text = "\n".join(path.read_text() for path in TF_FILES)
    with (DEPLOY / "terraform" / "variables.tf").open() as handle:
        declared = {name.strip('"') for block in hcl2.load(handle)["variable"] for name in block}
    assert set(re.findall(r"var\.([a-z_]+)", text)) == declared
    for key in ("password", "auth_token"):
        values = re.findall(rf"^\s*{key}\s*=\s*(.+)$", text, re.M)
        assert values and all(v.startswith("random_password.") for v in values), values


def parse_cli(args: list[str]) -> list[str]:
    """The command path ``args`` name in fraudctl's CLI, their options parsed by the CLI
    itself (an unknown command or option fails here as it would in the pod)."""
    import typer

    from fraudctl.cli.main import app

    command: Any = typer.main.get_command(app)
    ctx = command.make_context("fraudctl", [*args], resilient_parsing=False)
    path = []
    while hasattr(command, "resolve_command"):
        rest = [*ctx._protected_args, *ctx.args]  # what click does in invoke()
        name, command, rest = command.resolve_command(ctx, rest)
        path.append(name)
        ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=False)
    return path


def test_run_s_schedule_is_a_cronjob_each_running_the_same_cli() -> None:
    docs = documents(DEPLOY / "k8s" / "base" / "cronjobs.yaml")
    jobs = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "CronJob"}
    assert set(jobs) == {"fraudctl-train", "fraudctl-promote-staging", "fraudctl-drift",
                         "fraudctl-quality", "fraudctl-canary-step"}  # fmt: skip
    commands = {}
    for name, job in jobs.items():
        assert job["spec"]["concurrencyPolicy"] == "Forbid"  # not stacked, as in `run`
        pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"][-1] == "--json"
        commands[name] = parse_cli(container["args"])
    assert commands == {
        "fraudctl-train": ["train"], "fraudctl-promote-staging": ["promote"],
        "fraudctl-drift": ["drift"], "fraudctl-quality": ["quality"],
        "fraudctl-canary-step": ["canary", "step"],
    }  # fmt: skip
    step_args = jobs["fraudctl-canary-step"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    url = step_args["containers"][0]["args"][step_args["containers"][0]["args"].index("--url") + 1]
    (service,) = [d["metadata"]["name"] for d in documents(DEPLOY / "k8s/base/rayservice.yaml")
                  if d["kind"] == "RayService"]  # fmt: skip
    assert url == f"http://{service}-serve-svc:8000"  # KubeRay's Serve service of it
    with pytest.raises(Exception, match="no-such"):
        parse_cli(["canary", "step", "--no-such-option"])
