"""Pick the event bus the settings name."""

from __future__ import annotations

from fraudctl.config import KafkaBusConfig, Settings
from fraudctl.ports import BusProducer, EventBus


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


def open_producer(settings: Settings, delivery_timeout_s: float) -> BusProducer:
    """A producer for the configured bus (module level, so worker processes can call it)."""
    return open_bus(settings).producer(delivery_timeout_s=delivery_timeout_s)
