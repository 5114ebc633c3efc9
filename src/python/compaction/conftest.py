"""Fixtures for the compaction tests: one local SparkSession per test session; the services fixtures."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from streaming.settings import StreamingSettings
from streaming.spark_session import build_spark_session, spark_conf
from tickstream.settings import S3Settings
from tickstream.testing.services import (  # noqa: F401  (fixtures for the integration tests)
    kafka_bootstrap,
    kafka_service,
    s3_service,
    s3_settings,
    services_paths,
    spark_connector_jars,
)


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """A local[2] SparkSession with the job's settings but no connector jars (local lake directories)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["TZ"] = "UTC"
    time.tzset()
    settings = StreamingSettings(
        master="local[2]", shuffle_partitions=2, app_name="tickstream-compaction-tests"
    )
    conf = spark_conf(settings, S3Settings(), jars=[])
    conf["spark.sql.adaptive.enabled"] = "false"
    session = build_spark_session(conf)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
