"""Integration tests against a real broker: N simulated ticks in, exactly N out, keyed and in order; the
CLI through SASL."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr
from typer.testing import CliRunner

from ops.services.kafka import KafkaService
from producer.cli import app
from producer.kafka_sink import KafkaTickSink, producer_config
from producer.publish import publish
from producer.settings import ProducerSettings
from producer.simulator import SimulatedFeed, SimulationConfig
from tickstream.contracts import Rejection, decode_tick, now_us
from tickstream.kafka import topic_offsets
from tickstream.settings import environment
from tickstream.topology import TICKS_TOPIC

pytestmark = pytest.mark.integration

TICK_COUNT = 50_000


@pytest.fixture
def scratch_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh topic shaped like `ticks`, deleted after the test."""
    name = f"ticks-it-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=TICKS_TOPIC.partitions, replication_factor=1)]
    )
    futures[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


def consume_all(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 120.0
) -> list[tuple[bytes, bytes]]:
    """Every record of `topic`: read until `expected` arrived and one more poll finds nothing new."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"it-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(num_messages=10_000, timeout=1.0)
            if not batch and len(records) >= expected:
                break
            for message in batch:
                assert message.error() is None, message.error()
                records.append((message.key(), message.value()))  # type: ignore[arg-type]
    finally:
        consumer.close()
    return records


def test_produce_n_consume_exactly_n_keyed_in_seq_order(kafka_bootstrap: str, scratch_topic: str) -> None:
    topic = scratch_topic
    settings = ProducerSettings(topic=topic, linger_ms=5)
    sink = KafkaTickSink(producer_config(kafka_bootstrap, settings), topic)
    feed = SimulatedFeed(SimulationConfig(start_ts_us=now_us() - 60_000_000, seed=123), TICK_COUNT)

    report = publish(feed, sink, flush_timeout_s=60)

    assert report.ok, report.as_dict()
    assert report.delivery.acked == TICK_COUNT
    records = consume_all(kafka_bootstrap, topic, TICK_COUNT)
    assert len(records) == TICK_COUNT
    seqs: dict[str, list[int]] = defaultdict(list)
    for key, value in records:
        tick = decode_tick(value)
        assert not isinstance(tick, Rejection), tick
        assert key == tick["symbol"].encode()
        seqs[tick["symbol"]].append(tick["seq"])
    for symbol_seqs in seqs.values():
        assert symbol_seqs == list(range(1, len(symbol_seqs) + 1))


def test_cli_simulate_exits_zero_after_every_record_is_acked(
    kafka_bootstrap: str, scratch_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = scratch_topic
    monkeypatch.setenv("TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    args = ["simulate", "--count", "2000", "--duplicates", "0.05", "--malformed", "0.01", "--topic", topic]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(consume_all(kafka_bootstrap, topic, 2_000)) > 2_000  # plus duplicates and malformed records


def test_cli_replay_of_bars_sends_four_ticks_per_bar(
    kafka_bootstrap: str, scratch_topic: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bars = tmp_path / "bars.parquet"
    pl.DataFrame(
        {
            "symbol": ["SPY", "QQQ", "SPY"],
            "timestamp": [datetime(2026, 1, 2, 14, 30, tzinfo=UTC)] * 2
            + [datetime(2026, 1, 2, 14, 31, tzinfo=UTC)],
            "open": [520.0, 440.0, 521.0],
            "high": [521.0, 441.0, 522.0],
            "low": [519.0, 439.0, 520.5],
            "close": [521.0, 439.5, 521.5],
            "volume": [1_000, 2_000, 3_000],
        }
    ).write_parquet(bars)
    monkeypatch.setenv("TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    result = CliRunner().invoke(app, ["replay", str(bars), "--speed", "0", "--topic", scratch_topic])
    assert result.exit_code == 0, result.output
    records = consume_all(kafka_bootstrap, scratch_topic, 12)
    assert sorted(key for key, _ in records) == [b"QQQ"] * 4 + [b"SPY"] * 8


def test_cli_publishes_to_a_sasl_broker_with_the_kafka_security_settings(
    private_sasl_kafka: KafkaService, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = private_sasl_kafka.settings
    security = settings.client_security()
    bootstrap = private_sasl_kafka.endpoint
    # the broker refuses clients without its user's password
    wrong = settings.model_copy(update={"sasl_password": SecretStr("not-the-password")})
    for refused in ({}, wrong.client_security()):
        admin = AdminClient({**refused, "bootstrap.servers": bootstrap, "socket.timeout.ms": 3000})
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=5)
    # the producer CLI, configured only through the environment, publishes every tick
    for name, value in environment(settings).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["simulate", "--count", "500", "--topic", TICKS_TOPIC.name])
    assert result.exit_code == 0, result.output
    offsets = topic_offsets(bootstrap, TICKS_TOPIC.name, config=security)  # the offset lookups too
    assert sum(high for _, high in offsets.values()) == 500
    # the broker's configuration holds the password: owner-only
    assert private_sasl_kafka.server_properties.stat().st_mode & 0o077 == 0
