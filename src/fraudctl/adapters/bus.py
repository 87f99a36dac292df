"""Pick the event bus the settings name."""

from __future__ import annotations

from fraudctl.config import Settings
from fraudctl.ports import EventBus


def open_bus(settings: Settings) -> EventBus:
    if settings.bus == "kafka":
        from fraudctl.adapters.kafka_bus import KafkaBus

        return KafkaBus(settings.kafka_bootstrap)
    from fraudctl.adapters.filelog import FileLogBus

    return FileLogBus(settings.home / "bus")


def stream_topics(settings: Settings) -> list[str]:
    """The topics of the platform: transactions, labels, and the dead letters."""
    return [settings.topic_transactions, settings.topic_labels, settings.topic_dlq]
