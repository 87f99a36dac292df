"""In-memory stand-ins for fraudctl's ports, for unit tests of the services. Each passes
the same contract suite as the real adapter it stands in for (tests/unit/test_*_contract.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraudctl.model import LoadedModel


@dataclass
class _Version:
    model: Any
    threshold: float
    run_tags: dict[str, str]
    tags: dict[str, str] = field(default_factory=dict)


class InMemoryRegistry:
    """:class:`fraudctl.ports.ModelRegistry` in a dict."""

    def __init__(self, model_name: str = "fraud-detector") -> None:
        self.model_name = model_name
        self.where = "memory"
        self.versions: dict[str, _Version] = {}
        self.alias_map: dict[str, str] = {}
        self.runs: list[dict[str, Any]] = []
        self.loads = 0
        self._next = itertools.count(1)

    # what train does through MLflow
    def add_version(self, model: Any, threshold: float = 0.5, **run_tags: str) -> str:
        version = str(next(self._next))
        self.versions[version] = _Version(model, threshold, dict(run_tags))
        return version

    def aliases(self, names: Iterable[str]) -> dict[str, str | None]:
        return {str(name): self.alias_map.get(str(name)) for name in names}

    def has_version(self, version: str) -> bool:
        return version in self.versions

    def set_alias(self, alias: str, version: str) -> None:
        if version not in self.versions:
            raise KeyError(version)
        self.alias_map[str(alias)] = version

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        self.versions[version].tags.update(tags)

    def version_tags(self, version: str) -> dict[str, str]:
        return dict(self.versions[version].tags)

    def lineage(self, version: str) -> dict[str, str]:
        return dict(self.versions[version].run_tags)

    def load(self, version: str, alias: str) -> LoadedModel:
        self.loads += 1
        found = self.versions[version]
        return LoadedModel(self.model_name, version, str(alias), found.model, found.threshold)

    def log_run(
        self,
        experiment: str,
        name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        artifacts: Mapping[Path, str],
    ) -> str:
        run_id = f"run-{len(self.runs) + 1}"
        self.runs.append({"id": run_id, "experiment": experiment, "name": name,
                          "params": dict(params), "metrics": dict(metrics), "tags": dict(tags),
                          "artifacts": {str(p): d for p, d in artifacts.items()}})  # fmt: skip
        return run_id
