"""Per-user state in the Feast online store (SQLite in `local`, Redis in `stack`)."""

from __future__ import annotations

import warnings
from typing import Any

from fraudctl.config import Settings, mask_url
from fraudctl.errors import BackendUnavailable
from fraudctl.feast_repo import (
    USER_STATE_PUSH,
    USER_STATE_VIEW,
    definitions,
    fingerprint,
    repo_config,
)
from fraudctl.features import UserWindow

READ_CHUNK = 2000


class OnlineState:
    """Read and write users' windows through Feast; applies the definitions on first
    use when they changed."""

    def __init__(self, settings: Settings, offline_uri: str) -> None:
        from feast import FeatureStore

        self.settings = settings
        self.where = (
            mask_url(settings.redis_url)
            if settings.online_store == "redis"
            else str(settings.home / "feast" / "online.db")
        )
        try:
            self.store = FeatureStore(config=repo_config(settings))
            self._apply_if_changed(offline_uri)
        except Exception as first:
            # The registry is a cache of our own definitions: if a crash left it unreadable,
            # rebuild it rather than refuse to start.
            registry = settings.home / "feast" / "registry.db"
            registry.unlink(missing_ok=True)
            (settings.home / "feast" / "applied").unlink(missing_ok=True)
            try:
                self.store = FeatureStore(config=repo_config(settings))
                self._apply_if_changed(offline_uri)
            except Exception as exc:
                raise self._unavailable("open", exc) from first

    def _unavailable(self, action: str, exc: Exception) -> BackendUnavailable:
        return BackendUnavailable(
            f"online store ({self.settings.online_store} at {self.where}): {action} failed "
            f"({type(exc).__name__}: {exc})",
            hint="is Redis up? `fraudctl doctor`",
        )

    def _apply_if_changed(self, offline_uri: str) -> None:
        marker = self.settings.home / "feast" / "applied"
        wanted = fingerprint(self.settings, offline_uri)
        if marker.is_file() and marker.read_text() == wanted:
            return
        self.store.apply(definitions(self.settings, offline_uri))
        marker.write_text(wanted)

    def read(self, user_ids: list[str]) -> dict[str, UserWindow]:
        windows: dict[str, UserWindow] = {}
        try:
            warnings.filterwarnings("ignore", message="Discarding nonzero nanoseconds")
            for start in range(0, len(user_ids), READ_CHUNK):
                chunk = user_ids[start : start + READ_CHUNK]
                result = self.store.get_online_features(
                    features=[f"{USER_STATE_VIEW}:window"],
                    entity_rows=[{"user_id": user} for user in chunk],
                ).to_dict()
                for user, text in zip(result["user_id"], result["window"], strict=True):
                    windows[user] = UserWindow.from_json(text)
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise self._unavailable("read", exc) from exc
        return windows

    def write(self, windows: dict[str, UserWindow]) -> None:
        if not windows:
            return
        from feast.data_source import PushMode

        try:
            self.store.push(USER_STATE_PUSH, state_frame(windows), to=PushMode.ONLINE)
        except Exception as exc:
            raise self._unavailable("write", exc) from exc


def state_frame(windows: dict[str, UserWindow]) -> Any:
    """One row per user: the window as JSON and its newest event time."""
    import pandas as pd

    users = list(windows)
    newest = [windows[u].newest or 0.0 for u in users]
    return pd.DataFrame(
        {
            "user_id": users,
            "window": [windows[u].to_json() for u in users],
            "newest_ts": newest,
            "state_ts": pd.to_datetime(newest, unit="s", utc=True),
        }
    )
