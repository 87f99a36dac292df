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
- ``transaction_features``: an on-demand feature view computing the nine request-time
  features (:data:`fraudctl.features.FEATURE_NAMES`) from ``user_state:window`` and the
  request's own fields (the ``transaction`` request source), with the one feature
  implementation — what ``/v1/score`` uses, through Feast's ``get_online_features`` and
  ``feast serve``.
- Feature services: ``fraud_scoring`` (``transaction_features``, online) and
  ``fraud_training`` (``event_features``, point-in-time offline).

``feature_repo/repo.py`` (written by ``fraudctl features repo``) imports these
definitions for the ``feast`` CLI, so ``feast apply`` registers exactly what fraudctl
registers; :func:`plan` is the same diff ``feast plan`` prints, which
fraudctl runs whenever it opens the store (docs/features.md).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fraudctl.config import RedisConfig, Settings, env_var
from fraudctl.features import FEATURE_NAMES, FEATURES_VERSION, Txn, UserWindow

PROJECT = "fraudctl"
USER_STATE_VIEW = "user_state"
USER_STATE_PUSH = "user_state_push"
EVENT_FEATURES_VIEW = "event_features"
TRANSACTION_VIEW = "transaction_features"
TRANSACTION_REQUEST = "transaction"
SCORING_SERVICE = "fraud_scoring"
TRAINING_SERVICE = "fraud_training"
# The request fields the on-demand view takes, as a scoring request carries them.
REQUEST_FIELDS = ("transaction_amount", "country", "device", "event_ts")
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

    return RepoConfig(**store_values(settings))


def store_values(settings: Settings, secrets_as_env: bool = False) -> dict[str, Any]:
    """The Feast store configuration of the active profile, as ``feature_store.yaml``
    holds it.  ``secrets_as_env``: the Redis password as ``${FRAUDCTL_REDIS_PASSWORD}``
    (Feast substitutes environment variables in that file), never its value."""
    feast_dir = settings.home / "feast"
    feast_dir.mkdir(parents=True, exist_ok=True)
    config = settings.backends().online_store
    if isinstance(config, RedisConfig):
        parts = urlsplit(config.url)
        connection = f"{parts.hostname}:{parts.port or 6379}"
        if config.password:
            secret = config.password.get_secret_value()
            if secrets_as_env:
                secret = "${" + env_var("redis_password") + "}"
            connection += f",password={secret}"
        database = (parts.path or "/0").lstrip("/") or "0"
        connection += f",db={database}"
        # Bounded waits: an unreachable Redis must fail the call, not hang it.
        connection += ",socket_timeout=5,socket_connect_timeout=3"
        online: dict[str, Any] = {"type": "redis", "connection_string": connection}
    else:
        config.path.parent.mkdir(parents=True, exist_ok=True)
        online = {"type": "sqlite", "path": str(config.path)}
    return {
        "project": PROJECT,
        "registry": str(feast_dir / "registry.db"),
        "provider": "local",
        "online_store": online,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }


REPO_PY = """\
\"\"\"fraudctl's Feast definitions, for the `feast` CLI (`feast -c DIR plan`, `apply`,
`feature-views list`, `serve`).  Written by `fraudctl features repo` for profile
{profile} and home {home}; the definitions are fraudctl's own
(fraudctl.adapters.feast_repo.definitions), so this folder registers exactly what
fraudctl registers.  Run `fraudctl features repo` again after changing the profile.
\"\"\"

from fraudctl.adapters.feast_repo import repo_objects

globals().update(repo_objects({flags!r}))
"""


def repo_objects(flags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """fraudctl's definitions by name, for a ``repo.py`` (``flags`` as on the command
    line: the profile and home the folder was written for)."""
    from fraudctl.adapters.offline import offline_uri
    from fraudctl.config import load_settings

    settings = load_settings(flags).settings
    return {o.name: o for o in definitions(settings, offline_uri(settings))}


def write_repo(settings: Settings, directory: Path) -> list[Path]:
    """Make ``directory`` a Feast repository of the active profile: ``feature_store.yaml``
    and ``repo.py``; returns the files written."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    store_yaml = directory / "feature_store.yaml"
    store_yaml.write_text(
        "# Written by `fraudctl features repo`: fraudctl's Feast store for profile "
        f"{settings.profile}.\n" + yaml.safe_dump(store_values(settings, secrets_as_env=True))
    )
    flags = {"profile": settings.profile, "home": str(settings.home)}
    repo_py = directory / "repo.py"
    repo_py.write_text(REPO_PY.format(profile=settings.profile, home=settings.home, flags=flags))
    return [store_yaml, repo_py]


def definitions(settings: Settings, offline_uri: str) -> list[Any]:
    """fraudctl's Feast objects for the active profile, in the order ``apply`` takes them."""
    import_feast()
    from feast import (
        Entity,
        FeatureService,
        FeatureView,
        Field,
        FileSource,
        Project,
        PushSource,
        RequestSource,
        ValueType,
    )
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.types import Float64, String

    s3_endpoint = settings.s3_endpoint if settings.offline_store == "s3" else None
    state, features = VIEW_SOURCES[USER_STATE_VIEW], VIEW_SOURCES[EVENT_FEATURES_VIEW]
    project = Project(name=PROJECT, description="fraudctl's feature store")
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
    request = RequestSource(
        name=TRANSACTION_REQUEST,
        schema=[
            Field(name="transaction_amount", dtype=Float64),
            Field(name="country", dtype=String),
            Field(name="device", dtype=String),
            Field(name="event_ts", dtype=String),  # ISO-8601 UTC, as in a scoring request
        ],
    )
    transaction = OnDemandFeatureView(
        name=TRANSACTION_VIEW,
        entities=[user],
        sources=[user_state[["window"]], request],
        schema=[Field(name=name, dtype=Float64) for name in FEATURE_NAMES],
        mode="python",
        udf=transaction_features,  # type: ignore[arg-type]
        udf_string=inspect.getsource(transaction_features),
        description="The request-time features /v1/score uses (fraudctl.features).",
        tags={"features_version": FEATURES_VERSION},
    )
    scoring = FeatureService(
        name=SCORING_SERVICE,
        features=[transaction],
        description="What the fraud model is scored with online.",
    )
    training = FeatureService(
        name=TRAINING_SERVICE,
        features=[event_features],
        description="What the fraud model is trained with (point-in-time, per event).",
    )
    return [project, user, event, state_source, push, request, user_state, event_features,
            transaction, scoring, training]  # fmt: skip


def transaction_features(inputs: dict[str, list[object]]) -> dict[str, list[float]]:
    """The on-demand view's function.  Feast keeps its source text in the registry and
    runs it from there (``feast serve``, another process's SDK): so it imports what it
    uses itself and names only built-in types."""
    from fraudctl.adapters.feast_repo import request_features

    return request_features(inputs)


def request_features(inputs: Mapping[str, Sequence[object]]) -> dict[str, list[float]]:
    """Columns of the nine features for rows of (user window JSON, request fields).

    A row whose ``event_ts`` is not ISO-8601 UTC (or whose window is not one fraudctl
    wrote) gets NaN features rather than failing the whole call: Feast runs this function
    on sample values ("hello world") whenever it registers the view, and a feature
    request has no other way to say one row is wrong (docs/features.md)."""
    from fraudctl.contract import parse_utc_timestamp

    columns: dict[str, list[float]] = {name: [] for name in FEATURE_NAMES}
    rows = zip(*(inputs[name] for name in ("window", *REQUEST_FIELDS)), strict=True)
    for window, amount, country, device, event_ts in rows:
        try:
            at = parse_utc_timestamp(event_ts).timestamp()
            txn = Txn(at, float(amount), str(country), str(device))
            state = UserWindow.from_json(window if isinstance(window, str) else None)
        except (ValueError, TypeError):
            values = dict.fromkeys(FEATURE_NAMES, math.nan)
        else:
            values = state.features(txn)
        for name in FEATURE_NAMES:
            columns[name].append(values[name])
    return columns


def repo_contents(objects: Sequence[Any]) -> Any:
    """The objects as Feast's ``RepoContents`` (what ``feast plan`` parses a folder into)."""
    from feast import Entity, FeatureService, FeatureView, Project
    from feast.data_source import DataSource
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.repo_contents import RepoContents

    def of(kind: type) -> list[Any]:
        return [o for o in objects if isinstance(o, kind)]

    return RepoContents(
        projects=of(Project),
        data_sources=of(DataSource),
        feature_views=of(FeatureView),
        on_demand_feature_views=of(OnDemandFeatureView),
        stream_feature_views=[],
        label_views=[],
        entities=of(Entity),
        feature_services=of(FeatureService),
        permissions=[],
    )


@dataclass(frozen=True)
class Plan:
    """What ``feast plan`` would say of fraudctl's definitions against Feast's registry."""

    differences: list[str]  # "create|update KIND NAME", objects of ours only
    infra: Any  # the infrastructure (online tables) the definitions need


def plan(store: Any, objects: Sequence[Any]) -> Plan:
    """The ``feast plan`` diff (``store.plan``) of ``objects``: one line per object of
    ours that is missing or changed, registry and infrastructure (a SQLite online table
    that is gone).  Objects in the registry that are not ours (a user's own views in the
    project) are left out: fraudctl never deletes them."""
    from feast.diff.property_diff import TransitionType

    with _odfv_quiet():
        registry_diff, infra_diff, new_infra = store.plan(repo_contents(objects))
    wanted = {TransitionType.CREATE: "create", TransitionType.UPDATE: "update"}
    lines = [
        f"{wanted[diff.transition_type]} {_kind(diff.feast_object_type)} {diff.name}"
        for diff in registry_diff.feast_object_diffs
        if diff.transition_type in wanted
    ]
    lines += [
        f"{wanted[diff.transition_type]} {diff.infra_object_type} {diff.name}"
        for diff in infra_diff.infra_object_diffs
        if diff.transition_type in wanted
    ]
    return Plan(lines, new_infra)


def apply(store: Any, objects: Sequence[Any], planned: Plan) -> None:
    """Register ``objects`` (Feast's partial apply: nothing else is deleted) and record
    the infrastructure they need, as ``feast apply`` does, so a ``feast plan`` of a
    folder holding them reports no changes."""
    with _odfv_quiet():
        store.apply(list(objects))
    store.registry.update_infra(planned.infra, PROJECT, commit=True)


@contextlib.contextmanager
def _odfv_quiet() -> Iterator[None]:
    """Feast warns on every plan and apply that on-demand views are experimental."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="On demand feature view is an experimental")
        yield


def _kind(object_type: Any) -> str:
    """``FeastObjectType.FEATURE_VIEW`` → ``feature view``."""
    return str(getattr(object_type, "name", object_type)).lower().replace("_", " ")
