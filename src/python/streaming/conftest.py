"""Fixtures for the streaming tests: one local SparkSession per test session; the services fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

from streaming.settings import StreamingSettings
from streaming.spark_session import spark_conf
from testkit.spark import test_session
from tickstream.settings import CatalogSettings, S3Settings


@pytest.fixture(scope="session")
def spark(spark_connector_jars: list[Path]) -> Iterator[SparkSession]:
    """A local[2] SparkSession with Iceberg and the job's state settings; tests register their lakes."""
    settings = StreamingSettings(master="local[2]", shuffle_partitions=2)
    conf = {
        key: value
        for key, value in spark_conf(settings, S3Settings(), CatalogSettings(), []).items()
        if key.startswith("spark.sql.streaming") or "arrow" in key
    }
    session = test_session("tickstream-streaming-tests", spark_connector_jars, conf)
    yield session
    session.stop()


KAFKA_TS = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
"""Kafka record timestamp of the rows `kafka_rows` makes."""
KafkaRows = Callable[[Sequence[bytes | None]], DataFrame]


@pytest.fixture(scope="session")
def kafka_rows(spark: SparkSession) -> KafkaRows:
    """Factory of static rows shaped like `transforms.from_kafka` output: offsets 0..n-1, partition 0."""
    schema = (
        "raw_value binary, kafka_topic string, kafka_partition int, kafka_offset bigint, kafka_ts timestamp"
    )

    def make(values: Sequence[bytes | None]) -> DataFrame:
        rows = [(value, "ticks", 0, offset, KAFKA_TS) for offset, value in enumerate(values)]
        return spark.createDataFrame(rows, schema)

    return make
