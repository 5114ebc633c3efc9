"""Test lakes: a private Iceberg catalog per test, and rows appended the way the jobs commit them.

A test lake is a SQLite catalog file in the test's temporary directory with its own warehouse: a prefix of
the test S3 server's bucket (`tests/<random>`) or a local directory. Tables are created by the product's
own `tickstream.catalog.ensure_tables`; rows are appended through pyiceberg, one commit per call, so a
test can build any history of snapshots (many small appends, a compacted hour, ...) without Spark.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Operation, Summary
from pyiceberg.table.update.snapshot import _OverwriteFiles
from pyiceberg.typedef import EMPTY_DICT

from tickstream.catalog import ensure_tables, load_table, open_catalog
from tickstream.contracts import Tick
from tickstream.lake import TICKS, LakeTable, lake_table
from tickstream.settings import CatalogSettings, S3Settings, environment


def private_catalog_settings(directory: Path, s3: S3Settings | None) -> CatalogSettings:
    """Catalog settings of a test's own lake: the catalog file in `directory`, files on S3 (if given) under a
    fresh prefix of the bucket, else in `directory`; a catalog name of its own, so that one SparkSession can
    hold the catalogs of several tests (`testkit.spark.register_catalog`)."""
    directory.mkdir(parents=True, exist_ok=True)
    unique = uuid.uuid4().hex[:12]
    warehouse = f"s3://{s3.bucket}/tests/{unique}" if s3 is not None else (directory / "warehouse").as_uri()
    return CatalogSettings(
        uri=f"sqlite:///{directory / 'catalog.db'}", warehouse=warehouse, name=f"lake_{unique}"
    )


class TestLake:
    """A test's own lake: its catalog settings, the pyiceberg catalog, and helpers to append and read rows."""

    __test__ = False  # not a test class

    def __init__(self, settings: CatalogSettings, s3: S3Settings | None) -> None:
        """Open the catalog and create the lake's tables."""
        self.settings = settings
        self.s3 = s3 or S3Settings()
        self.catalog: SqlCatalog = open_catalog(settings, self.s3)
        ensure_tables(self.catalog, settings)

    def env(self) -> dict[str, str]:
        """The environment under which a child process (a job, the dashboard) uses this lake's catalog and
        S3 server."""
        return environment(self.settings, self.s3)

    def append(
        self, table: str | LakeTable, rows: pa.Table, properties: Mapping[str, str] | None = None
    ) -> None:
        """Append `rows` (the table's columns, in any order) to a lake table as one commit."""
        spec = lake_table(table)
        ordered = rows.select(list(spec.columns)).cast(spec.schema)
        load_table(self.catalog, self.settings, spec).append(
            ordered, snapshot_properties=dict(properties or {})
        )

    def table(self, table: str | LakeTable) -> Table:
        """The pyiceberg table (its snapshots, files, ...)."""
        return load_table(self.catalog, self.settings, table)

    def read(self, table: str | LakeTable) -> pa.Table:
        """Every row of a table's current snapshot (pyiceberg's scan)."""
        return load_table(self.catalog, self.settings, table).scan().to_arrow()

    def files(self, table: str | LakeTable) -> int:
        """Data files in the table's current snapshot."""
        return len(self.read_files(table))

    def compact_hour(self, table: str | LakeTable, hour: datetime) -> int:
        """Rewrite one hour partition's files into one, sorted by the table's keys, as one `replace` commit
        (as the hourly compaction leaves it); return how many files it replaced (0: fewer than two)."""
        spec = lake_table(table)
        iceberg = load_table(self.catalog, self.settings, spec)
        start, end = hour, hour + timedelta(hours=1)
        column = spec.partition_column
        in_hour = f"{column} >= '{start.isoformat()}' AND {column} < '{end.isoformat()}'"
        scan = iceberg.scan(row_filter=in_hour)
        old = [task.file for task in scan.plan_files()]
        if len(old) < 2:
            return 0
        rows = scan.to_arrow().sort_by([(key, "ascending") for key in spec.sort_keys])
        with iceberg.transaction() as transaction:
            rewrite = _RewriteFiles(operation=Operation.REPLACE, transaction=transaction, io=iceberg.io)
            for data_file in old:
                rewrite.delete_data_file(data_file)
            for data_file in _dataframe_to_data_files(transaction.table_metadata, rows, iceberg.io):
                rewrite.append_data_file(data_file)
            rewrite.commit()
        return len(old)

    def hour_files(self, table: str | LakeTable, hour: datetime) -> int:
        """Data files of one hour's partition in the table's current snapshot."""
        key, ordinal = f"{lake_table(table).partition_column}_hour", int(hour.timestamp()) // 3600
        partitions = load_table(self.catalog, self.settings, table).inspect.files()["partition"].to_pylist()
        return sum(1 for partition in partitions if partition.get(key) == ordinal)

    def read_files(self, table: str | LakeTable) -> list[str]:
        """Paths of the data files in the table's current snapshot (local paths for a local warehouse)."""
        files = load_table(self.catalog, self.settings, table).inspect.files()
        return [path.removeprefix("file://") for path in files["file_path"].to_pylist()]


def tick_rows(ticks: Sequence[Tick], kafka_partition: int = 0, first_offset: int = 0) -> pa.Table:
    """Rows of the ticks table for `ticks`, with consecutive Kafka offsets from `first_offset` (each tick
    arrived at its event time)."""
    rows = pa.Table.from_pylist([dict(t) for t in ticks])
    rows = rows.append_column("kafka_partition", pa.array([kafka_partition] * len(ticks), pa.int32()))
    rows = rows.append_column(
        "kafka_offset", pa.array(range(first_offset, first_offset + len(ticks)), pa.int64())
    )
    event_time = pc.cast(rows["ts_us"], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    rows = rows.append_column("event_time", event_time).append_column("kafka_ts", event_time)
    return rows.select(list(TICKS.columns)).cast(TICKS.schema)


class _RewriteFiles(_OverwriteFiles):
    """pyiceberg's overwrite committed as operation `replace` (pyiceberg has no rewrite of its own; its
    snapshot summary code knows only append, overwrite and delete, whose totals a rewrite shares)."""

    def _summary(self, snapshot_properties: dict[str, str] = EMPTY_DICT) -> Summary:
        self._operation = Operation.OVERWRITE
        try:
            summary = super()._summary(snapshot_properties)
        finally:
            self._operation = Operation.REPLACE
        return Summary(Operation.REPLACE, **summary.additional_properties)
