"""Spark settings of the streaming job: `tickstream.spark.base_conf`, its scheduler pools, batch tuning."""

from __future__ import annotations

import tempfile
from pathlib import Path

from streaming.settings import StreamingSettings
from tickstream.settings import CatalogSettings, S3Settings
from tickstream.spark import base_conf

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
