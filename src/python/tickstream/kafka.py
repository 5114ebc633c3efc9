"""Reading the platform's Kafka from any component: a topic's partition offsets (confluent-kafka).

The broker itself (install, start, topics) is operations' concern: `ops.services.kafka`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, TopicPartition


def topic_offsets(
    bootstrap: str, topic: str, timeout_s: float = 30.0, config: Mapping[str, Any] | None = None
) -> dict[int, tuple[int, int]]:
    """Per partition of `topic`: its low and high watermark offsets (the first offset Kafka still holds, the
    next one to be written). LookupError if the topic does not exist; KafkaException if the broker does not
    answer. `config`: extra client settings (e.g. a quieter logger)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"tickstream-offsets-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            **(config or {}),
        }
    )
    try:
        entry = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if entry is None or entry.error is not None or not entry.partitions:
            raise LookupError(f"Kafka topic {topic!r} not found at {bootstrap}")
        offsets = {}
        for partition in sorted(entry.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
            offsets[partition] = (int(low), int(high))
        return offsets
    finally:
        consumer.close()
