"""The one place that wires fraudctl: the adapters of the active settings, each built
once, on first use.  A command is options → :func:`wire` → one service call → render;
a service receives the ports it needs and never builds an adapter itself.

Each choice of backend is a setting (``bus``, ``offline_store``, ``online_store``,
``dedupe_store``, ``promote_lock``, ``pushgateway_url``), shown by ``fraudctl config
show``; the profile only changes their defaults.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from fraudctl.config import Settings
from fraudctl.ports import (
    BusProducer,
    DedupeStore,
    DriftReporter,
    EventBus,
    FeatureStore,
    Lock,
    MetricsPusher,
    MetricsScraper,
    ModelRegistry,
    OfflineStore,
    RowSource,
    ScoringClient,
    ServingControl,
    Spawner,
)


class Wiring:
    """:class:`fraudctl.ports.Backends` for real backends."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @property
    def settings(self) -> Settings:
        return self._settings

    @cached_property
    def bus(self) -> EventBus:
        from fraudctl.adapters.bus import open_bus

        return open_bus(self._settings)

    @cached_property
    def offline(self) -> OfflineStore:
        from fraudctl.adapters.offline import open_offline

        return open_offline(self._settings)

    @cached_property
    def features(self) -> FeatureStore:
        """Feast over the online store; opening it applies changed definitions once."""
        from fraudctl.adapters.online import OnlineState

        return OnlineState(self._settings, self.offline.uri)

    @cached_property
    def dedupe(self) -> DedupeStore:
        from fraudctl.adapters.dedupe import open_dedupe

        return open_dedupe(self._settings)

    @cached_property
    def registry(self) -> ModelRegistry:
        from fraudctl.adapters.registry import Registry

        return Registry(self._settings)

    @cached_property
    def promotion_lock(self) -> Lock:
        from fraudctl.adapters.locks import promotion_lock

        return promotion_lock(self._settings)

    @cached_property
    def pusher(self) -> MetricsPusher:
        from fraudctl.adapters.metrics import Pushgateway

        return Pushgateway(self._settings.pushgateway_url)

    @cached_property
    def drift_reporter(self) -> DriftReporter:
        from fraudctl.adapters.drift_psi import EvidentlyReporter

        return EvidentlyReporter()

    @cached_property
    def scraper(self) -> MetricsScraper:
        from fraudctl.adapters.metrics import PrometheusScraper

        return PrometheusScraper()

    def server(self, url: str) -> ServingControl:
        from fraudctl.adapters.serve_client import ServeClient

        return ServeClient(url)


def open_producer(settings: Settings, delivery_timeout_s: float) -> BusProducer:
    """A producer on the settings' bus (module level, so a produce worker process can
    build its own)."""
    return Wiring(settings).bus.producer(delivery_timeout_s=delivery_timeout_s)


def open_scoring(url: str, concurrency: int) -> ScoringClient:
    """A client that scores every event at a running server (module level, so a produce
    worker process can build its own)."""
    from fraudctl.adapters.serve_client import HttpScoring

    return HttpScoring(url, concurrency)


def open_source(path: Path) -> RowSource:
    """A user's transaction file (CSV, JSON Lines or Parquet), read in chunks."""
    from fraudctl.adapters.source_files import open_source as open_file

    return open_file(path)


def open_spawner() -> Spawner:
    """Child processes of the OS, each in a process group of its own (``fraudctl run``)."""
    from fraudctl.adapters.processes import OsSpawner

    return OsSpawner()


def wire(settings: Settings) -> Wiring:
    return Wiring(settings)
