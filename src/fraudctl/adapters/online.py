"""Feast for fraudctl: per-user state in the online store (SQLite in `local`, Redis in
`stack`), and point-in-time historical retrieval from the offline snapshots for training."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fraudctl.adapters import feast_repo
from fraudctl.adapters.feast_repo import (
    USER_STATE_VIEW,
    definitions,
    import_feast,
    repo_config,
)
from fraudctl.config import RedisConfig, Settings, environ, mask_url
from fraudctl.errors import BackendUnavailable
from fraudctl.features import UserWindow

READ_CHUNK = 2000
log = logging.getLogger(__name__)


class OnlineState:
    """Read and write users' windows through Feast.  On opening, Feast's registry is
    compared with fraudctl's definitions (the diff ``feast plan`` prints) and they are
    applied when any of them is missing or different."""

    def __init__(self, settings: Settings, offline_uri: str) -> None:
        import_feast()
        from feast import FeatureStore

        self.settings = settings
        self._offline_uri = offline_uri
        self._handles: tuple[Any, Any] | None = None
        config = settings.backends().online_store
        self.where = mask_url(config.url) if isinstance(config, RedisConfig) else str(config.path)
        try:
            self.store = FeatureStore(config=repo_config(settings))
            self._register()
        except Exception as first:
            # The registry is a cache of our own definitions: if a crash left it unreadable,
            # rebuild it rather than refuse to start.
            try:
                self._rebuild_registry()
            except Exception as exc:
                raise self._unavailable("open", exc) from first

    def _rebuild_registry(self) -> None:
        """A fresh registry with exactly fraudctl's definitions (the online data stays)."""
        from feast import FeatureStore

        feast_dir = self.settings.home / "feast"
        (feast_dir / "registry.db").unlink(missing_ok=True)
        self.store = FeatureStore(config=repo_config(self.settings))
        self._register(force=True)

    def _unavailable(self, action: str, exc: Exception) -> BackendUnavailable:
        return BackendUnavailable(
            f"online store ({self.settings.online_store} at {self.where}): {action} failed "
            f"({type(exc).__name__}: {exc})",
            hint="is Redis up? `fraudctl doctor`"
            if self.settings.online_store == "redis"
            else f"check that {self.where} is a readable SQLite file on a disk with room; "
            f"moving {self.settings.home / 'feast'} away rebuilds it from the offline store "
            "(`fraudctl materialize --backfill`)",
        )

    def _register(self, force: bool = False) -> None:
        """Apply fraudctl's definitions when Feast's registry lacks or differs from any
        of them (someone's ``feast apply`` of another definition set, an older fraudctl)
        or an online table they need is gone: what ``feast plan`` would report, from the
        registry's own state, never from a marker of what was applied once; and when the
        SQLite online store file is gone (its tables with it)."""
        # Feast compares the infrastructure the registry recorded, not the file itself
        # (and planning opens the store, which creates an empty file): looked at first.
        lost = self.settings.online_store == "sqlite" and not Path(self.where).is_file()
        objects = definitions(self.settings, self._offline_uri)
        planned = feast_repo.plan(self.store, objects)
        if not (force or lost or planned.differences):
            return
        if any(not line.startswith("create") for line in planned.differences) or (
            planned.differences and self.store.list_feature_views()
        ):
            tables = any(" table " in line for line in planned.differences)
            log.warning(
                "the Feast registry (%s) differs from fraudctl's definitions: %s; "
                "applying fraudctl's%s",
                self.store.config.registry.path,
                "; ".join(planned.differences),
                " (windows lost with a deleted online table come back with "
                "`fraudctl materialize --backfill`)"
                if tables
                else "",
            )
        feast_repo.apply(self.store, objects, planned)

    def backfill(self, offline_uri: str, start: datetime, end: datetime) -> None:
        """Load the newest ``user_state`` snapshot of each user with a state time in
        [start, end] from the offline store into the online store, through Feast's
        materialization."""
        try:
            self._register(force=True)
            # Feast reports its progress on stdout, which belongs to --json.
            with (
                contextlib.redirect_stdout(sys.stderr),
                self._s3_credentials(),
                warnings.catch_warnings(),
            ):
                # Feast converts our microsecond timestamps through pandas and says so.
                warnings.filterwarnings("ignore", message="Discarding nonzero nanoseconds")
                self.store.materialize(start, end, feature_views=[USER_STATE_VIEW])
        except Exception as exc:
            raise self._unavailable("backfill", exc) from exc

    def historical_features(self, entity: Any, view: str, names: Sequence[str]) -> Any:
        """Feast's point-in-time join: for each row of ``entity`` (a pandas frame with the
        view's join key and ``event_timestamp``), the newest values of ``view`` at or
        before that time.  The entity's other columns are kept; the result is pandas."""
        import dask

        try:
            # Dask's synchronous scheduler: Feast's file store runs thousands of tiny tasks
            # (a shuffle per Parquet file), and on a small machine the thread pool only
            # adds locking (measured 22 s → 16 s for 21,666 rows over 108 files, 2 cores).
            # Its in-memory task shuffle, not the disk one (partd): the same rows, 18 s →
            # 13 s for the demo's promotion, 1M-event training 63 s → 47 s, less memory
            # (docs/features.md).
            with (
                self._s3_credentials(),
                warnings.catch_warnings(),
                dask.config.set({"scheduler": "synchronous", "dataframe.shuffle.method": "tasks"}),
            ):
                warnings.filterwarnings("ignore", message="Discarding nonzero nanoseconds")
                warnings.simplefilter("ignore", FutureWarning)  # Dask's pandas use, not ours
                job = self.store.get_historical_features(
                    entity_df=entity, features=[f"{view}:{name}" for name in names]
                )
                return job.to_df()
        except Exception as exc:
            raise BackendUnavailable(
                f"offline feature retrieval ({view}) failed ({type(exc).__name__}: {exc})",
                hint="is the S3 server up, and has `fraudctl materialize` run? `fraudctl doctor`",
            ) from exc

    def _s3_credentials(self) -> contextlib.AbstractContextManager[None]:
        """Feast's file offline store reads S3 through boto, which takes its keys from
        the environment: lend it ours for the call, then put back what was there.

        It lists the files through s3fs, whose instances (cached per process) keep every
        listing they made forever: a long-lived process — `train --every`, a test run —
        would then miss files written since (silently) and fail on ones replaced since
        (FileNotFoundError). Each call starts from fresh instances, so it reads the
        store as it is now."""
        if self.settings.offline_store != "s3":
            return contextlib.nullcontext()
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        return environ(
            {
                "AWS_ACCESS_KEY_ID": self.settings.require_secret("s3_access_key"),
                "AWS_SECRET_ACCESS_KEY": self.settings.require_secret("s3_secret_key"),
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )

    def _online(self) -> tuple[Any, Any]:
        """Feast's online store for the active profile and the user_state view: reads and
        writes go through its ``online_read`` / ``online_write_batch`` (what
        ``get_online_features`` and ``push`` call underneath, without building data
        frames and responses per call)."""
        if self._handles is None:
            from feast.infra.online_stores.helpers import get_online_store_from_config

            try:
                view = self.store.get_feature_view(USER_STATE_VIEW)
            except Exception as exc:
                # The registry is a copy of our own definitions; one that lost them (a
                # `feast apply` from another folder, a damaged file) is rebuilt, not
                # reported as an outage on every run.
                log.warning(
                    "the Feast registry has no %s (%s); rebuilding it", USER_STATE_VIEW, exc
                )
                self._rebuild_registry()
                view = self.store.get_feature_view(USER_STATE_VIEW)
            self._handles = (get_online_store_from_config(self.store.config.online_store), view)
        return self._handles

    def read(self, user_ids: list[str]) -> dict[str, UserWindow]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        windows: dict[str, UserWindow] = {}
        try:
            online, view = self._online()
            for start in range(0, len(user_ids), READ_CHUNK):
                chunk = user_ids[start : start + READ_CHUNK]
                keys = [
                    EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user)])
                    for user in chunk
                ]
                rows = online.online_read(self.store.config, view, keys, ["window"])
                for user, (_ts, values) in zip(chunk, rows, strict=True):
                    text = values["window"].string_val if values and "window" in values else None
                    windows[user] = UserWindow.from_json(text)
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise self._unavailable("read", exc) from exc
        return windows

    def write(self, windows: dict[str, UserWindow]) -> None:
        if not windows:
            return
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        created = datetime.now(UTC)
        rows = []
        for user, window in windows.items():
            newest = window.newest or 0.0
            rows.append(
                (
                    EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user)]),
                    {
                        "window": Value(string_val=window.to_json()),
                        "newest_ts": Value(double_val=newest),
                    },
                    datetime.fromtimestamp(newest, UTC),
                    created,
                )
            )
        try:
            online, view = self._online()
            online.online_write_batch(self.store.config, view, rows, None)
        except Exception as exc:
            raise self._unavailable("write", exc) from exc
