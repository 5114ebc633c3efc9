"""Fixtures for the compaction tests: one local SparkSession per test process; services and test lakes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from testkit.spark import test_session


@pytest.fixture(scope="session")
def spark(spark_connector_jars: list[Path]) -> Iterator[SparkSession]:
    """A local[2] SparkSession with Iceberg; each test registers its own lake's catalog."""
    session = test_session("tickstream-compaction-tests", spark_connector_jars)
    yield session
    session.stop()
