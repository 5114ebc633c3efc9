"""Iceberg maintenance of the lake's hours, run by the compaction job (`compaction.job`): correct the bars of
hours whose bars differ from their ticks, rewrite an hour's small files into few sorted ones, and each
table's upkeep (expire snapshots, merge manifests, delete old orphan files).

Every function takes a running SparkSession: pyspark is imported only for type checking, so the job's
`--check-closed` never starts Spark.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from compaction.plan import HourPartition
from compaction.settings import CompactionSettings
from tickstream.lake import BARS_1M, TICKS, LakeTable
from tickstream.settings import CatalogSettings

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession


@dataclass
class HourReport:
    """What the job did to one hour (one log line, one entry of the JSON report)."""

    table: str
    date: str
    hour: str
    action: str
    """compact (files rewritten), noop (already compacted), empty (no rows) or failed."""
    files_before: int = 0
    bytes_before: int = 0
    files_after: int = 0
    bytes_after: int = 0
    rows: int = 0
    bars_corrected: bool = False
    """bars_1m only: the hour's bars differed from the bars of its stored ticks and were replaced."""
    duration_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class HourFiles:
    """The data files of one hour in a table's current snapshot."""

    files: int
    rows: int
    bytes: int


def hour_files(spark: SparkSession, catalog: CatalogSettings, partition: HourPartition) -> HourFiles:
    """Count the hour's data files, rows and bytes from the table's `files` metadata table."""
    table = partition.table
    row = spark.sql(
        f"SELECT count(*) AS files, coalesce(sum(record_count), 0) AS rows, "
        f"coalesce(sum(file_size_in_bytes), 0) AS bytes FROM {catalog.spark_identifier(table.name)}.files "
        f"WHERE partition.{table.partition_column}_hour = {partition.ordinal}"
    ).collect()[0]
    return HourFiles(int(row["files"]), int(row["rows"]), int(row["bytes"]))


def _sql_time(moment: datetime) -> str:
    return f"TIMESTAMP '{moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')}'"


def rewrite_files(
    spark: SparkSession,
    catalog: CatalogSettings,
    table: LakeTable,
    start: datetime,
    end: datetime,
    settings: CompactionSettings,
) -> dict[str, int]:
    """Rewrite the small files of the hours in [start, end) into sorted files of about the target size, in
    one atomic commit.

    An hour holding a single file, or files already near the target size, is not rewritten, so a compacted
    hour is a no-op. The table's sort order (its sort keys) orders the rows inside every new file.
    """
    where = f"{table.partition_column} >= {_sql_time(start)} AND {table.partition_column} < {_sql_time(end)}"
    options = {
        "target-file-size-bytes": str(settings.target_bytes),
        "min-input-files": "2",
        "partial-progress.enabled": "false",
        "rewrite-job-order": "files-desc",
    }
    option_map = ", ".join(f"'{key}', '{value}'" for key, value in options.items())
    row = spark.sql(
        f"CALL {catalog.name}.system.rewrite_data_files(table => '{catalog.spark_identifier(table.name)}', "
        f"strategy => 'sort', where => \"{where}\", options => map({option_map}))"
    ).collect()[0]
    return {key: int(value) for key, value in row.asDict().items()}


def rewrite_hour(
    spark: SparkSession, catalog: CatalogSettings, partition: HourPartition, settings: CompactionSettings
) -> dict[str, int]:
    """`rewrite_files` of one hour."""
    return rewrite_files(spark, catalog, partition.table, partition.start, partition.end, settings)


def correct_bars(spark: SparkSession, catalog: CatalogSettings, start: datetime, end: datetime) -> int:
    """Make the bars of the hours in [start, end) equal the bars of their stored ticks
    (`streaming.transforms.bars_1m`): the hours whose bars differ (ticks that arrived late, a crash before
    the stream corrected them) are replaced in one commit; return how many."""
    from pyspark.sql import functions as F

    from streaming.transforms import EVENT_TIME, bars_1m

    def between(column: str, low: datetime, high: datetime) -> Column:
        return (F.col(column) >= F.lit(low)) & (F.col(column) < F.lit(high))

    bars_table = catalog.spark_identifier(BARS_1M.name)
    ticks = spark.table(catalog.spark_identifier(TICKS.name)).where(between(EVENT_TIME, start, end))
    expected = bars_1m(ticks).select(*BARS_1M.columns).coalesce(1).cache()  # one file per hour
    try:
        stored = spark.table(bars_table).where(between("window_start", start, end)).select(*BARS_1M.columns)
        differences = expected.exceptAll(stored).unionByName(stored.exceptAll(expected))
        hour = F.date_trunc("hour", F.col("window_start")).alias("hour")
        hours = sorted(row["hour"] for row in differences.select(hour).distinct().collect())
        if not hours:
            return 0
        in_hours = any_of([between("window_start", h, h + timedelta(hours=1)) for h in hours])
        expected.where(in_hours).writeTo(bars_table).overwrite(in_hours)  # those hours' files, atomically
        return len(hours)
    finally:
        expected.unpersist()


def any_of(conditions: Sequence[Column]) -> Column:
    """The OR of conditions, as a balanced tree (thousands of hours stay shallow)."""
    if len(conditions) == 1:
        return conditions[0]
    middle = len(conditions) // 2
    return any_of(conditions[:middle]) | any_of(conditions[middle:])


def correct_bars_hour(spark: SparkSession, catalog: CatalogSettings, partition: HourPartition) -> bool:
    """`correct_bars` of one hour: whether its bars were replaced."""
    return correct_bars(spark, catalog, partition.start, partition.end) > 0


def compact_span(
    spark: SparkSession,
    catalog: CatalogSettings,
    tables: Sequence[LakeTable],
    start: datetime,
    end: datetime,
    settings: CompactionSettings,
) -> dict[str, Any]:
    """The `--only-dirty` run: over every hour of [start, end) at once, correct the bars that differ from
    their ticks, then rewrite the hours holding several files (one commit per table)."""
    started = time.perf_counter()
    report: dict[str, Any] = {"start": start.isoformat(), "end": end.isoformat()}
    if BARS_1M in tables:
        report["bars_hours_corrected"] = correct_bars(spark, catalog, start, end)
    for table in tables:
        report[table.name] = rewrite_files(spark, catalog, table, start, end, settings)
    report["duration_s"] = round(time.perf_counter() - started, 3)
    return report


def compact_hour(
    spark: SparkSession, catalog: CatalogSettings, partition: HourPartition, settings: CompactionSettings
) -> HourReport:
    """Compact one closed hour (bars: corrected first); report the files before and after."""
    started = time.perf_counter()
    corrected = partition.table == BARS_1M and correct_bars_hour(spark, catalog, partition)
    before = hour_files(spark, catalog, partition)
    report = HourReport(
        partition.table.name,
        partition.date,
        partition.hour,
        "empty",
        files_before=before.files,
        bytes_before=before.bytes,
        rows=before.rows,
        bars_corrected=corrected,
    )
    if before.files:
        counts = rewrite_hour(spark, catalog, partition, settings)
        after = hour_files(spark, catalog, partition)
        report.action = "compact" if counts.get("rewritten_data_files_count") else "noop"
        report.files_after, report.bytes_after, report.rows = after.files, after.bytes, after.rows
        if after.rows < before.rows:
            raise RuntimeError(f"{partition}: {before.rows} rows before the rewrite, {after.rows} after")
    report.duration_s = round(time.perf_counter() - started, 3)
    return report


def maintain_table(
    spark: SparkSession, catalog: CatalogSettings, table: str, settings: CompactionSettings, now: datetime
) -> dict[str, Any]:
    """Expire old snapshots, merge manifests and delete old orphan files of one table."""
    from tickstream.spark_iceberg import expire_snapshots, remove_orphan_files, rewrite_manifests

    started = time.perf_counter()
    expired = expire_snapshots(
        spark,
        catalog,
        table,
        now - timedelta(minutes=settings.snapshot_retention_minutes),
        settings.retain_snapshots,
    )
    manifests = rewrite_manifests(spark, catalog, table)
    orphans = remove_orphan_files(spark, catalog, table, now - timedelta(hours=settings.orphan_age_hours))
    return {
        "table": table,
        "expired": expired,
        "manifests": manifests,
        "orphan_files_deleted": orphans,
        "duration_s": round(time.perf_counter() - started, 3),
    }
