"""What each request is scored by: the variants the registry's aliases name (baseline,
canary beside a production baseline, shadow), loaded once per version, and the sticky
assignment of users to the canary share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from fraudctl.errors import Refused
from fraudctl.gates import BASELINE_ALIASES, CANARY_ALIAS, SHADOW_ALIAS, Alias, baseline_alias
from fraudctl.model import LoadedModel
from fraudctl.ports import ModelRegistry

BUCKETS = 10_000  # canary assignment resolution: 0.01 %


def bucket_of(user_id: str) -> int:
    """A stable bucket in [0, 10000) per user: the same user always lands the same."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def assign_variant(user_id: str, weight_pct: float, has_canary: bool) -> str:
    if has_canary and bucket_of(user_id) < round(weight_pct * BUCKETS / 100):
        return "canary"
    return "baseline"


@dataclass(frozen=True)
class Variants:
    """What serves right now; replaced whole (one assignment) on reload."""

    baseline: LoadedModel
    canary: LoadedModel | None
    shadow: LoadedModel | None
    baseline_alias: str

    def describe(self, weight: float, shadow_on: bool) -> dict[str, Any]:
        def one(model: LoadedModel | None) -> dict[str, Any] | None:
            if model is None:
                return None
            return {
                "alias": model.alias,
                "model_name": model.name,
                "model_version": model.version,
                "threshold": model.threshold,
            }

        note = None
        if self.baseline_alias != Alias.PRODUCTION:
            note = f"no 'production' alias yet: the baseline serves '{self.baseline_alias}'"
        return {
            "baseline": one(self.baseline),
            "canary": one(self.canary),
            "shadow": one(self.shadow) if shadow_on else None,
            "split": {
                "canary_pct": weight if self.canary else 0.0,
                "baseline_pct": 100.0 - (weight if self.canary else 0.0),
            },
            "note": note,
        }


class ModelSource:
    """Loads the variants from the registry (versions cached on disk)."""

    def __init__(self, registry: ModelRegistry, shadow: bool) -> None:
        self.registry = registry
        self.shadow = shadow
        self._loaded: dict[str, LoadedModel] = {}

    def versions(self) -> dict[str, str | None]:
        return self.registry.aliases(BASELINE_ALIASES)

    def baseline_alias(self, versions: dict[str, str | None]) -> str:
        """The alias the baseline serves; exit 4 when the registry has nothing to serve
        (the one place this rule is written: serve's preflight and every load)."""
        found = baseline_alias(versions)
        if found is None:
            raise Refused(
                f"nothing to serve: {self.registry.model_name} has none of the aliases "
                f"{', '.join(BASELINE_ALIASES)} in {self.registry.where}",
                hint="`fraudctl train` registers a 'candidate'; `fraudctl promote` moves it on",
            )
        return found

    def load(self, versions: dict[str, str | None]) -> Variants:
        baseline_alias = self.baseline_alias(versions)
        baseline = self._model(baseline_alias, versions[baseline_alias])
        canary = None
        if baseline_alias == Alias.PRODUCTION and versions.get(CANARY_ALIAS):
            canary = self._model(CANARY_ALIAS, versions[CANARY_ALIAS])
        shadow = None
        if self.shadow and versions.get(SHADOW_ALIAS):
            shadow = self._model(SHADOW_ALIAS, versions[SHADOW_ALIAS])
        return Variants(baseline, canary, shadow, baseline_alias)

    def _model(self, alias: str, version: str | None) -> LoadedModel:
        assert version is not None
        key = f"{alias}:{version}"
        if key not in self._loaded:
            self._loaded[key] = self.registry.load(version, alias)
        return self._loaded[key]
