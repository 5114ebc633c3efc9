"""Building the SparkSession: connector jars from the local cache, s3a settings, small shuffles, UTC.

`s3a_conf` is the one place the s3a client is configured, reused for an s3a:// checkpoint and by the
compaction job.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from pyspark.sql import SparkSession

from streaming.settings import StreamingSettings
from tickstream.services.spark_jars import spark_jars_dir
from tickstream.settings import PathsSettings, S3Settings

REQUIRED_JARS = ("spark-sql-kafka-0-10", "hadoop-aws")
_STATE = "org.apache.spark.sql.execution.streaming.state"
STATE_STORE_PROVIDERS = {
    "memory": f"{_STATE}.HDFSBackedStateStoreProvider",
    "rocksdb": f"{_STATE}.RocksDBStateStoreProvider",
}
"""Spark's state store implementations, by the name the `state_store` setting uses."""


class MissingJarsError(RuntimeError):
    """The Spark connector jars are not in the local cache."""


def s3a_conf(s3: S3Settings) -> dict[str, str]:
    """Spark settings for Hadoop's s3a client against the configured S3 endpoint.

    Path-style addressing, multi-object delete off and change detection off are what SeaweedFS's S3
    gateway needs (see shared FIELD-NOTES); they are harmless on AWS S3.
    """
    prefix = "spark.hadoop.fs.s3a."
    conf = {
        "impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "access.key": s3.access_key_id,
        "secret.key": s3.secret_access_key,
        "aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "endpoint.region": s3.region,
        "path.style.access": str(s3.path_style).lower(),
        "multiobjectdelete.enable": "false",
        "change.detection.mode": "none",
    }
    if s3.endpoint_url:
        conf["endpoint"] = s3.endpoint_url
        conf["connection.ssl.enabled"] = str(urlparse(s3.endpoint_url).scheme == "https").lower()
    return {prefix + key: value for key, value in conf.items()}


def cached_connector_jars(paths: PathsSettings | None = None) -> list[Path]:
    """The Kafka and s3a connector jars from the local cache; never downloads."""
    directory = spark_jars_dir(paths)
    jars = sorted(directory.glob("*.jar"))
    missing = [name for name in REQUIRED_JARS if not any(jar.name.startswith(name) for jar in jars)]
    if missing:
        raise MissingJarsError(
            f"no {', '.join(missing)} jar in {directory}; install the connector jars first "
            "(tickstream.services.spark_jars.install_spark_jars, run by `tickstream services up`)"
        )
    return jars


def spark_conf(settings: StreamingSettings, s3: S3Settings, jars: list[str]) -> dict[str, str]:
    """Every Spark setting the job needs, as plain strings."""
    return {
        "spark.master": settings.master,
        "spark.app.name": settings.app_name,
        "spark.driver.memory": settings.driver_memory,
        "spark.jars": ",".join(jars),
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.streaming.stateStore.providerClass": STATE_STORE_PROVIDERS[settings.state_store],
        # RocksDB: commit a batch's state as a changelog (not a snapshot per partition): short commits
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": "false",
        "spark.sql.streaming.metricsEnabled": "false",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.speculation": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Int.MaxValue turns off the per-row byte-size check of Arrow batches to Python workers (it sized
        # the whole batch for every row: 14 % of the JVM's time); maxRecordsPerBatch still caps them
        "spark.sql.execution.arrow.maxBytesPerBatch": str(2**31 - 1),
        # 'memory' state: keep only the latest committed version on the heap (each batch copies it)
        "spark.sql.streaming.maxBatchesToRetainInMemory": "1",
        "spark.pyspark.python": os.environ.get("PYSPARK_PYTHON", sys.executable),
        **s3a_conf(s3),
    }


def build_spark_session(conf: Mapping[str, str]) -> SparkSession:
    """Create (or reuse) the SparkSession with `conf`."""
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
