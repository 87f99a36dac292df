"""Models the integration tests need that the product never trains on purpose."""

from __future__ import annotations

from datetime import UTC, datetime

from fraudctl.config import environ, load_settings


def worse_version(env: dict[str, str], inverted: bool = False, seed: int = 7) -> str:
    """A model trained by fraudctl's own training on the labeled events of ``env``'s
    stores with the labels shuffled (it has learned nothing about fraud) or, ``inverted``,
    swapped (it ranks fraud last). Registered as a candidate; the version is returned."""
    from fraudctl.bootstrap import Wiring
    from fraudctl.services.train import TrainOptions, train_once
    from fraudctl.services.training_set import labeled_events

    with environ(env):
        backends = Wiring(load_settings().settings)
        labeled = labeled_events(backends.offline, None, None, datetime.now(UTC))
        labels = labeled.frame["label"]
        labeled.frame["label"] = (
            1 - labels if inverted else labels.sample(frac=1.0, random_state=seed).to_numpy()
        )
        result = train_once(backends.offline, backends.features, backends.registry,
                            TrainOptions(seed=seed), lambda _m: None, labeled)  # fmt: skip
    return str(result.version)
