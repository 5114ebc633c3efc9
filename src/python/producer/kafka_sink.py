"""Thin Kafka adapter: an idempotent confluent-kafka producer that counts every record's fate.

Each record handed to `KafkaTickSink.send` ends in exactly one bucket of `DeliveryCounts`: acked by the
broker, failed (delivery error reported by the client, or refused by the client before queueing), or
still unconfirmed when the final flush timed out. Nothing is dropped without being counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from producer.settings import ProducerSettings

POLL_EVERY_RECORDS = 8_192
"""Serve delivery callbacks (poll(0)) after this many produce() calls."""
BUFFER_FULL_POLL_S = 0.05
"""How long to poll when the client queue is full before retrying produce()."""


@dataclass
class DeliveryCounts:
    """Fate of the records handed to the sink so far; `errors` counts failures by error name."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    refused: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def unconfirmed(self) -> int:
        """Records queued in the client whose delivery report has not arrived (yet)."""
        return self.sent - self.acked - self.failed

    @property
    def lost(self) -> int:
        """Records that did not (provably) reach the broker: failed, refused or unconfirmed."""
        return self.failed + self.refused + self.unconfirmed

    def snapshot(self) -> DeliveryCounts:
        """A copy that later deliveries do not change."""
        return DeliveryCounts(self.sent, self.acked, self.failed, self.refused, Counter(self.errors))

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form for logs and JSON reports."""
        return {
            "sent": self.sent,
            "acked": self.acked,
            "failed": self.failed,
            "refused": self.refused,
            "unconfirmed": self.unconfirmed,
            "errors": dict(self.errors),
        }


class RecordSink(Protocol):
    """Where the publisher sends records (Kafka, or an in-memory fake in tests)."""

    @property
    def counts(self) -> DeliveryCounts:
        """Live delivery counts."""
        ...

    def send(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        """Queue records for delivery, in order."""
        ...

    def flush(self, timeout_s: float) -> DeliveryCounts:
        """Wait for outstanding deliveries (at most `timeout_s`) and return the final counts."""
        ...


def producer_config(
    bootstrap_servers: str, settings: ProducerSettings, security: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """librdkafka settings: idempotent, acks=all, compressed, batched for throughput; `security`: the
    connection's TLS/SASL settings (KafkaSettings.client_security)."""
    return {
        **(security or {}),
        "bootstrap.servers": bootstrap_servers,
        "client.id": "tickstream-producer",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": settings.compression,
        "linger.ms": settings.linger_ms,
        "batch.size": settings.batch_size_bytes,
        "batch.num.messages": 100_000,
        "queue.buffering.max.messages": settings.queue_max_messages,
        "queue.buffering.max.kbytes": 1_048_576,
        "message.timeout.ms": 120_000,
        "delivery.report.only.error": settings.delivery_reports == "errors",
    }


class KafkaTickSink:
    """Sends records to one topic with a confluent-kafka Producer and counts delivery reports."""

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        """Create the client; `config` is librdkafka's (see `producer_config`).

        With `delivery.report.only.error` set, the client reports failures only; acks are then inferred as
        sent - failed - outstanding (librdkafka reports every message it does not deliver, so this is
        exact once the final flush leaves nothing outstanding) and cost no Python callback per record.
        """
        self._topic = topic
        self._counts = DeliveryCounts()
        self._infer_acks = bool(config.get("delivery.report.only.error", False))
        self._producer = producer_factory({**config, "on_delivery": self._on_delivery})

    @property
    def counts(self) -> DeliveryCounts:
        """Live delivery counts (updated while the client is polled)."""
        if self._infer_acks:
            self._counts.acked = max(0, self._counts.sent - self._counts.failed - len(self._producer))
        return self._counts

    def send(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        """Queue records in order; on a full client queue, serve deliveries until there is room."""
        produce = self._producer.produce
        poll = self._producer.poll
        topic = self._topic
        counts = self._counts
        queued = 0
        for key, value in zip(keys, values, strict=True):
            try:
                produce(topic, value, key)
            except BufferError:
                counts.sent += queued
                queued = 0
                self._produce_when_room(key, value)
            except KafkaException as exc:
                self._refuse(exc)
                continue
            queued += 1
            if queued >= POLL_EVERY_RECORDS:
                counts.sent += queued
                queued = 0
                poll(0)
        counts.sent += queued
        poll(0)

    def flush(self, timeout_s: float) -> DeliveryCounts:
        """Wait up to `timeout_s` for outstanding deliveries; the rest stay `unconfirmed`."""
        self._producer.flush(timeout_s)
        return self.counts.snapshot()

    def _produce_when_room(self, key: bytes, value: bytes) -> None:
        while True:
            self._producer.poll(BUFFER_FULL_POLL_S)
            try:
                self._producer.produce(self._topic, value, key)
                return
            except BufferError:
                continue

    def _refuse(self, exc: KafkaException) -> None:
        self._counts.refused += 1
        self._counts.errors[_error_name(exc.args[0] if exc.args else None)] += 1

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self._counts.acked += 1
        else:
            self._counts.failed += 1
            self._counts.errors[_error_name(err)] += 1


def _error_name(err: object) -> str:
    return err.name() if isinstance(err, KafkaError) else str(err)
