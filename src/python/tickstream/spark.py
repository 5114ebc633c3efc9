"""Spark's access to the lake (the spark resolve only): the connector jars, the settings every Tickstream
Spark application shares, the Iceberg catalog settings and session creation.

`iceberg_conf` is the one place Spark is told where the lake's catalog and files are; the streaming job, the
compaction job, the rebuild and the tests all build their sessions with `base_conf`, which includes it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import pyspark
from pyspark.sql import SparkSession

from tickstream.catalog import jdbc_catalog_properties
from tickstream.settings import CatalogSettings, PathsSettings, S3Settings

REQUIRED_JARS = ("spark-sql-kafka-0-10", "iceberg-spark-runtime", "iceberg-aws-bundle", "sqlite-jdbc")


class MissingJarsError(RuntimeError):
    """The Spark connector jars are not in the local cache."""


def cached_connector_jars(paths: PathsSettings) -> list[Path]:
    """The Kafka connector, Iceberg and JDBC driver jars for this pyspark's version from the local cache;
    never downloads."""
    directory = paths.spark_jars_dir(pyspark.__version__)
    jars = sorted(directory.glob("*.jar"))
    missing = [name for name in REQUIRED_JARS if not any(jar.name.startswith(name) for jar in jars)]
    if missing:
        raise MissingJarsError(
            f"no {', '.join(missing)} jar in {directory}; install Spark's extra jars first "
            "(ops.services.spark_jars.install_spark_jars, run by `tickstream services up`)"
        )
    return jars


def base_conf(
    master: str, app_name: str, driver_memory: str, s3: S3Settings, catalog: CatalogSettings, jars: list[str]
) -> dict[str, str]:
    """The settings every Tickstream Spark application shares (streaming, compaction, rebuilds)."""
    return {
        "spark.master": master,
        "spark.app.name": app_name,
        "spark.driver.memory": driver_memory,
        "spark.jars": ",".join(jars),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.speculation": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.pyspark.python": os.environ.get("PYSPARK_PYTHON", sys.executable),
        **driver_address_conf(os.environ),
        **iceberg_conf(catalog, s3),
    }


LOOPBACK = "127.0.0.1"


def driver_address_conf(env: Mapping[str, str]) -> dict[str, str]:
    """Where the driver listens (RPC, block manager): loopback, unless the environment names the address
    executors reach it at with Spark's own SPARK_LOCAL_IP or SPARK_LOCAL_HOSTNAME (a cluster deployment;
    compose sets it)."""
    if env.get("SPARK_LOCAL_IP") or env.get("SPARK_LOCAL_HOSTNAME"):
        return {}
    return {"spark.driver.bindAddress": LOOPBACK, "spark.driver.host": LOOPBACK}


def iceberg_conf(catalog: CatalogSettings, s3: S3Settings) -> dict[str, str]:
    """Spark settings for the lake's Iceberg catalog (Iceberg's JdbcCatalog) and its files on S3.

    Tables in an s3:// warehouse are read and written with Iceberg's S3FileIO (path-style addressing for
    SeaweedFS and MinIO); a file:// warehouse (tests) uses Hadoop's local filesystem. The catalog cache is
    off, so every query sees the newest commit of the other writers (streaming, compaction, rebuilds); the
    manifest cache is on (manifests are immutable).
    """
    prefix = f"spark.sql.catalog.{catalog.name}"
    conf = {
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "jdbc",
        f"{prefix}.warehouse": catalog.warehouse,
        f"{prefix}.cache-enabled": "false",
        # Manifests never change once written: keep their contents in memory, so planning a scan of the
        # open hour (every micro-batch's de-duplication reads its recent files) does not re-read them all.
        f"{prefix}.io.manifest.cache-enabled": "true",
        **{f"{prefix}.{key}": value for key, value in jdbc_catalog_properties(catalog).items()},
    }
    if urlparse(catalog.warehouse).scheme == "s3":
        conf.update(
            {
                f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
                f"{prefix}.s3.access-key-id": s3.access_key_id,
                f"{prefix}.s3.secret-access-key": s3.secret_access_key.get_secret_value(),
                f"{prefix}.s3.path-style-access": str(s3.path_style).lower(),
                f"{prefix}.client.region": s3.region,
            }
        )
        if s3.endpoint_url:
            conf[f"{prefix}.s3.endpoint"] = s3.endpoint_url
    return conf


def build_spark_session(conf: Mapping[str, str]) -> SparkSession:
    """Create (or reuse) the SparkSession with `conf`."""
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
