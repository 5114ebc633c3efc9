"""Spark-side operations on the lake's Iceberg tables: snapshot lookups and table maintenance.

Shared by the streaming job (the replay check, its own snapshot expiry) and the compaction job (the
maintenance the hourly DAG runs). Maintenance uses Iceberg's Spark procedures (`CALL <catalog>.system.*`);
snapshot lookups use Iceberg's Java API through the session's JVM.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import SparkSession

from tickstream.settings import CatalogSettings


def java_table(spark: SparkSession, identifier: str) -> Any:
    """The Iceberg table `catalog.namespace.table` through Iceberg's Java API (as the catalog has it now)."""
    jvm = spark._jvm
    assert jvm is not None, "a classic (JVM) SparkSession is needed"
    return jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(spark._jsparkSession, identifier)


def snapshot_summaries(spark: SparkSession, identifier: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(commit time in epoch ms, summary) of the table's retained snapshots, from the current one back."""
    table = java_table(spark, identifier)
    snapshot = table.currentSnapshot()
    while snapshot is not None:
        yield int(snapshot.timestampMillis()), {str(k): str(v) for k, v in snapshot.summary().items()}
        parent = snapshot.parentId()
        snapshot = table.snapshot(parent) if parent is not None else None


def newest_snapshot_summary(
    spark: SparkSession, identifier: str, only_if: dict[str, str]
) -> dict[str, str] | None:
    """The summary of the newest snapshot holding every `only_if` key with that value, else None."""
    return next(
        (
            summary
            for _, summary in snapshot_summaries(spark, identifier)
            if all(summary.get(k) == v for k, v in only_if.items())
        ),
        None,
    )


def newest_snapshot_property(spark: SparkSession, identifier: str, key: str) -> str | None:
    """The value of summary property `key` in the newest snapshot that has it, else None."""
    return next((s[key] for _, s in snapshot_summaries(spark, identifier) if key in s), None)


def _sql_timestamp(moment: datetime) -> str:
    return f"TIMESTAMP '{moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def expire_snapshots(
    spark: SparkSession, catalog: CatalogSettings, table: str, older_than: datetime, retain_last: int
) -> dict[str, int]:
    """Expire snapshots older than `older_than` (keeping the newest `retain_last`) and delete the files only
    they referenced; return the procedure's counts."""
    row = spark.sql(
        f"CALL {catalog.name}.system.expire_snapshots(table => '{catalog.spark_identifier(table)}', "
        f"older_than => {_sql_timestamp(older_than)}, retain_last => {int(retain_last)})"
    ).collect()[0]
    return {key: int(value) for key, value in row.asDict().items()}


def rewrite_manifests(spark: SparkSession, catalog: CatalogSettings, table: str) -> dict[str, int]:
    """Merge the table's manifests (one per small append) into few; return the procedure's counts."""
    row = spark.sql(
        f"CALL {catalog.name}.system.rewrite_manifests('{catalog.spark_identifier(table)}')"
    ).collect()[0]
    return {key: int(value) for key, value in row.asDict().items()}


def remove_orphan_files(
    spark: SparkSession, catalog: CatalogSettings, table: str, older_than: datetime
) -> int:
    """Delete files under the table's location that no snapshot references and that are older than
    `older_than` (files of commits in flight are younger); return how many were deleted.

    Iceberg's action API, which takes any age (its SQL procedure refuses less than 24 hours); the table's
    location is listed through the table's own FileIO (S3FileIO: no Hadoop S3 filesystem needed).
    """
    jvm = spark._jvm
    assert jvm is not None, "a classic (JVM) SparkSession is needed"
    actions = jvm.org.apache.iceberg.spark.actions.SparkActions.get(spark._jsparkSession)
    result = (
        actions.deleteOrphanFiles(java_table(spark, catalog.spark_identifier(table)))
        .usePrefixListing(True)
        .olderThan(int(older_than.timestamp() * 1000))
        .execute()
    )
    return sum(1 for _ in result.orphanFileLocations())
