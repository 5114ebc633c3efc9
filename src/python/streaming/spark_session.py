"""Spark settings of the jobs: the cached jars, the lake's Iceberg catalog, small shuffles, UTC.

`base_conf` is what every Tickstream Spark application shares (the compaction job and the rebuild use it
too); the lake's catalog comes from `tickstream.spark.iceberg_conf`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from streaming.settings import StreamingSettings
from tickstream.services.spark_jars import spark_jars_dir
from tickstream.settings import CatalogSettings, PathsSettings, S3Settings
from tickstream.spark import iceberg_conf

REQUIRED_JARS = ("spark-sql-kafka-0-10", "iceberg-spark-runtime", "iceberg-aws-bundle", "sqlite-jdbc")


class MissingJarsError(RuntimeError):
    """The Spark connector jars are not in the local cache."""


def cached_connector_jars(paths: PathsSettings | None = None) -> list[Path]:
    """The Kafka connector, Iceberg and JDBC driver jars from the local cache; never downloads."""
    directory = spark_jars_dir(paths)
    jars = sorted(directory.glob("*.jar"))
    missing = [name for name in REQUIRED_JARS if not any(jar.name.startswith(name) for jar in jars)]
    if missing:
        raise MissingJarsError(
            f"no {', '.join(missing)} jar in {directory}; install Spark's extra jars first "
            "(tickstream.services.spark_jars.install_spark_jars, run by `tickstream services up`)"
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
        **iceberg_conf(catalog, s3),
    }


SCHEDULER_POOLS = """<?xml version="1.0"?>
<allocations>
  <pool name="ticks"><schedulingMode>FIFO</schedulingMode><weight>4</weight><minShare>1</minShare></pool>
  <pool name="upkeep"><schedulingMode>FIFO</schedulingMode><weight>1</weight><minShare>0</minShare></pool>
</allocations>
"""
"""Fair-scheduler pools of the streaming job: its query's jobs first, the upkeep (bars, expiry) after."""


def scheduler_pools_file() -> str:
    """A file holding SCHEDULER_POOLS (Spark reads pool definitions from a file)."""
    path = Path(tempfile.gettempdir()) / "tickstream-scheduler-pools.xml"
    if not path.is_file() or path.read_text() != SCHEDULER_POOLS:
        path.write_text(SCHEDULER_POOLS)
    return str(path)


def spark_conf(
    settings: StreamingSettings, s3: S3Settings, catalog: CatalogSettings, jars: list[str]
) -> dict[str, str]:
    """Every Spark setting the streaming job needs, as plain strings."""
    return {
        **base_conf(settings.master, settings.app_name, settings.driver_memory, s3, catalog, jars),
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.scheduler.mode": "FAIR",
        "spark.scheduler.allocation.file": scheduler_pools_file(),
        "spark.sql.streaming.metricsEnabled": "false",
        # Int.MaxValue turns off the per-row byte-size check of Arrow batches to Python workers (it sized
        # the whole batch for every row: 14 % of the JVM's time); maxRecordsPerBatch still caps them
        "spark.sql.execution.arrow.maxBytesPerBatch": str(2**31 - 1),
        # a micro-batch is cached once and read twice (its tables' appends): plain columns are cheaper
        # to build than compressed ones (10-20 % more ticks/s on a backlog, measured)
        "spark.sql.inMemoryColumnarStorage.compressed": "false",
    }
