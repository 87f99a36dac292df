"""The Feast repository of fraudctl: entities, sources and feature views, built for the
active profile (no endpoint is written anywhere: they come from the settings).

- ``user`` (join key ``user_id``) with the feature view ``user_state``: the user's
  recent-event window (JSON) and the event time of its newest event.  It is written
  online through the push source ``user_state_push`` as events are materialized, and
  its batch source is the ``user_state`` table of the offline store, from which
  ``materialize --backfill`` rebuilds the online store.
- ``event`` (join key ``event_id``) with ``event_features``: one row per accepted event
  with the features it had at its time, from the offline ``features`` table; training
  retrieves them point-in-time.

``feature_repo/`` holds a thin ``repo.py`` exposing these definitions to the ``feast``
CLI.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from fraudctl.config import RedisConfig, Settings
from fraudctl.features import FEATURE_NAMES, FEATURES_VERSION

PROJECT = "fraudctl"
USER_STATE_VIEW = "user_state"
USER_STATE_PUSH = "user_state_push"
EVENT_FEATURES_VIEW = "event_features"
STATE_TTL = timedelta(days=2)


@dataclass(frozen=True)
class ViewSource:
    """Where a feature view's rows are in the offline store, and how they are joined."""

    table: str
    join_key: str
    timestamp: str
    ttl: timedelta


VIEW_SOURCES = {
    USER_STATE_VIEW: ViewSource("user_state", "user_id", "state_ts", STATE_TTL),
    EVENT_FEATURES_VIEW: ViewSource(
        "features", "event_id", "event_timestamp", timedelta(days=3650)
    ),
}


# The Feast modules that carry typeguard's ``@typechecked``: ``feast`` itself and the
# online store of the ``local`` profile (loaded by name when a store is opened).
_FEAST_MODULES = ("feast", "feast.infra.online_stores.sqlite")


def import_feast() -> None:
    """Import Feast once per process, without typeguard's import-time instrumentation.

    Feast decorates its classes with typeguard's ``@typechecked``, which re-parses and
    recompiles each class's source when the module is imported: 2.7 of the 4.4 s that
    ``import feast`` takes here (``python -X importtime``), paid by every fraudctl
    process that opens the feature store (each CLI step, each serving replica).  The
    decorator is a no-op under ``python -O``; this applies that one effect of ``-O``
    to those modules alone, and restores typeguard for everything else.  fraudctl's own
    calls into Feast are checked statically (mypy strict).  Measured in
    docs/features.md; if Feast was already imported (by a user's code), nothing
    changes."""
    if all(name in sys.modules for name in _FEAST_MODULES):
        return
    import typeguard

    checked = typeguard.typechecked
    typeguard.typechecked = _unchecked
    try:
        for name in _FEAST_MODULES:
            importlib.import_module(name)
    finally:
        typeguard.typechecked = checked


def _unchecked(target: Any = None, **_options: Any) -> Any:
    """``typeguard.typechecked`` as it is under ``python -O``: the target unchanged."""
    return target if target is not None else (lambda decorated: decorated)


def repo_config(settings: Settings) -> Any:
    import_feast()
    from feast.repo_config import RepoConfig

    feast_dir = settings.home / "feast"
    feast_dir.mkdir(parents=True, exist_ok=True)
    config = settings.backends().online_store
    if isinstance(config, RedisConfig):
        parts = urlsplit(config.url)
        connection = f"{parts.hostname}:{parts.port or 6379}"
        password = config.password.get_secret_value() if config.password else None
        if password:
            connection += f",password={password}"
        database = (parts.path or "/0").lstrip("/") or "0"
        connection += f",db={database}"
        # Bounded waits: an unreachable Redis must fail the call, not hang it.
        connection += ",socket_timeout=5,socket_connect_timeout=3"
        online: dict[str, Any] = {"type": "redis", "connection_string": connection}
    else:
        config.path.parent.mkdir(parents=True, exist_ok=True)
        online = {"type": "sqlite", "path": str(config.path)}
    return RepoConfig(
        project=PROJECT,
        registry=str(feast_dir / "registry.db"),
        provider="local",
        online_store=online,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )


def definitions(settings: Settings, offline_uri: str) -> list[Any]:
    import_feast()
    from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
    from feast.types import Float64, String

    s3_endpoint = settings.s3_endpoint if settings.offline_store == "s3" else None
    state, features = VIEW_SOURCES[USER_STATE_VIEW], VIEW_SOURCES[EVENT_FEATURES_VIEW]
    user = Entity(name="user", join_keys=[state.join_key], value_type=ValueType.STRING)
    event = Entity(name="event", join_keys=[features.join_key], value_type=ValueType.STRING)
    state_source = FileSource(
        name="user_state_source",
        path=f"{offline_uri}/{state.table}",
        timestamp_field=state.timestamp,
        created_timestamp_column="created_ts",
        s3_endpoint_override=s3_endpoint,
    )
    push = PushSource(name=USER_STATE_PUSH, batch_source=state_source)
    user_state = FeatureView(
        name=USER_STATE_VIEW,
        entities=[user],
        ttl=state.ttl,
        schema=[
            Field(name="window", dtype=String),
            Field(name="newest_ts", dtype=Float64),
        ],
        source=push,
        online=True,
        tags={"features_version": FEATURES_VERSION},
    )
    feature_source = FileSource(
        name="event_features_source",
        path=f"{offline_uri}/{features.table}",
        timestamp_field=features.timestamp,
        s3_endpoint_override=s3_endpoint,
    )
    event_features = FeatureView(
        name=EVENT_FEATURES_VIEW,
        entities=[event],
        ttl=features.ttl,
        schema=[Field(name=name, dtype=Float64) for name in FEATURE_NAMES],
        source=feature_source,
        online=False,
        tags={"features_version": FEATURES_VERSION},
    )
    return [user, event, state_source, push, user_state, feature_source, event_features]


def fingerprint(settings: Settings, offline_uri: str) -> str:
    """Changes whenever what ``apply`` would register changes."""
    text = "|".join(
        [FEATURES_VERSION, ",".join(FEATURE_NAMES), offline_uri, settings.online_store, "v2"]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]
