"""The one declaration of the platform's Kafka topics and S3 buckets.

The local services CLI creates exactly these on start-up, and deploy/docker-compose.yml
is checked against them by test, so both set-ups always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

MS_PER_DAY = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class Topic:
    """A Kafka topic with its partition count and retention."""

    name: str
    partitions: int
    retention_ms: int
    description: str


TICKS_TOPIC = Topic(
    name="ticks",
    partitions=6,
    retention_ms=7 * MS_PER_DAY,
    description="Market ticks as JSON, keyed by symbol (see docs/contracts.md).",
)
QUARANTINE_TOPIC = Topic(
    name="ticks.quarantine",
    partitions=1,
    retention_ms=30 * MS_PER_DAY,
    description="Records the streaming job rejected, with reason and Kafka coordinates.",
)
TOPICS: tuple[Topic, ...] = (TICKS_TOPIC, QUARANTINE_TOPIC)

LAKE_BUCKET = "tickstream-lake"
BUCKETS: tuple[str, ...] = (LAKE_BUCKET,)
