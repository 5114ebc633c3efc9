"""The streaming job's Kafka source against a broker that requires SASL: it reads with the Kafka settings'
security (KafkaSettings.spark_options), through Spark's own Kafka connector."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from pyspark.sql import SparkSession

from ops.services.kafka import KafkaService
from streaming.job import kafka_records, starting_offsets
from streaming.settings import StreamingSettings
from tickstream.topology import TICKS_TOPIC

pytestmark = pytest.mark.integration


def test_the_kafka_source_reads_a_sasl_broker(spark: SparkSession, private_sasl_kafka: KafkaService) -> None:
    kafka = private_sasl_kafka.settings
    producer = Producer({**kafka.client_security(), "bootstrap.servers": private_sasl_kafka.endpoint})
    for i in range(40):
        producer.produce(TICKS_TOPIC.name, key=b"k", value=f"record-{i}".encode())
    assert producer.flush(30) == 0
    settings = StreamingSettings(starting_offsets="earliest")
    # the job's offset lookup and its Spark source, both through SASL
    starting = starting_offsets(settings, kafka, {0: 0})
    query = (
        kafka_records(spark, settings, kafka, starting)
        .writeStream.format("memory")
        .queryName("sasl_records")
        .trigger(availableNow=True)
        .start()
    )
    try:
        assert query.awaitTermination(180)
        assert query.exception() is None
    finally:
        query.stop()
    values = {row.value.decode() for row in spark.table("sasl_records").collect()}
    assert values == {f"record-{i}" for i in range(40)}
