"""Kafka service against the real server: topology, round trips, kill -9 recovery."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ops.services.kafka import KafkaService
from tickstream.topology import TOPICS

pytestmark = pytest.mark.integration


def produce(bootstrap: str, topic: str, count: int) -> list[bytes]:
    values = [f"message-{i}".encode() for i in range(count)]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i, value in enumerate(values):
        producer.produce(topic, key=str(i % 7).encode(), value=value)
    assert producer.flush(30) == 0
    return values


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[bytes]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    received: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(received) < expected and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                received.append(message.value() or b"")
    finally:
        consumer.close()
    return received


def new_topic(bootstrap: str, partitions: int = 3) -> str:
    name = f"test-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
    return name


def test_topology_topics_exist(kafka_bootstrap: str) -> None:
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    for topic in TOPICS:
        assert len(topics[topic.name].partitions) == topic.partitions


def test_produce_and_consume(kafka_bootstrap: str) -> None:
    topic = new_topic(kafka_bootstrap)
    sent = produce(kafka_bootstrap, topic, 500)
    assert sorted(consume_all(kafka_bootstrap, topic, len(sent))) == sorted(sent)


def test_kill_9_then_up_recovers_without_data_loss(private_kafka: KafkaService) -> None:
    pid = private_kafka.daemon.pid()
    assert pid is not None
    assert private_kafka.up() is False, "up on a running broker must be a no-op"
    bootstrap = private_kafka.endpoint
    topic = new_topic(bootstrap)
    sent = produce(bootstrap, topic, 2000)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while private_kafka.daemon.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not private_kafka.healthy()
    assert private_kafka.up() is True
    assert private_kafka.daemon.pid() not in (None, pid)
    assert sorted(consume_all(bootstrap, topic, len(sent))) == sorted(sent)
