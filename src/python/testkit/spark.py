"""Spark in tests: one SparkSession per test process that can reach every test's own lake."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from pyspark.sql import SparkSession

from testkit.lake import TestLake
from tickstream.settings import CatalogSettings, S3Settings
from tickstream.spark import build_spark_session, iceberg_conf

SPARK_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"


def test_session(app_name: str, jars: list[Path], conf: dict[str, str] | None = None) -> SparkSession:
    """A local[2] SparkSession with Iceberg (and the other cached jars), in UTC, without a catalog yet."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["TZ"] = "UTC"  # PySpark returns naive timestamps in the Python process' zone
    time.tzset()
    settings = {
        "spark.master": "local[2]",
        "spark.app.name": app_name,
        "spark.jars": ",".join(str(jar) for jar in jars),
        "spark.sql.extensions": SPARK_EXTENSIONS,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "2",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.pyspark.python": sys.executable,
        **(conf or {}),
    }
    session = build_spark_session(settings)
    session.sparkContext.setLogLevel("ERROR")
    return session


def register_catalog(spark: SparkSession, catalog: CatalogSettings, s3: S3Settings) -> None:
    """Make a lake's catalog reachable as `catalog.name` in a running session (catalogs load on first use)."""
    for key, value in iceberg_conf(catalog, s3).items():
        if key != "spark.sql.extensions":
            spark.conf.set(key, value)


def register_lake(spark: SparkSession, lake: TestLake) -> TestLake:
    """`register_catalog` for a test lake; returns the lake."""
    register_catalog(spark, lake.settings, lake.s3)
    return lake
