"""Pick the event bus the settings name."""

from __future__ import annotations

from fraudctl.config import KafkaBusConfig, Settings
from fraudctl.ports import EventBus


def open_bus(settings: Settings) -> EventBus:
    config = settings.backends().bus
    if isinstance(config, KafkaBusConfig):
        from fraudctl.adapters.kafka_bus import KafkaBus

        return KafkaBus(config.bootstrap)
    from fraudctl.adapters.filelog import FileLogBus

    return FileLogBus(config.path)


def stream_topics(settings: Settings) -> list[str]:
    """The topics of the platform: transactions, labels, and the dead letters."""
    return [settings.topic_transactions, settings.topic_labels, settings.topic_dlq]
