"""The Spark side of compaction: read committed objects, checksum rows, write sorted right-sized objects.

Spark does the distributed work (range partitioning, sorting, checksums); objects are read and written by
its tasks with pyarrow through `tickstream.lake.LakeLocation`, so the job needs no s3a connector.

Objects are written from executors with pyarrow (as `streaming.writers` does), one per range partition of the
table key, named `part-<partition>.parquet` under the run's directory: the names depend only on the run id
(itself a function of the inputs) and the partition index, so a re-run overwrites its own earlier attempt.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark import TaskContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from tickstream.lake import PARQUET_COMPRESSION, LakeLocation, LakeObject, TableSpec

ROW_GROUP_ROWS = 512 * 1024
"""Rows per Parquet row group of a compacted object (DuckDB and Spark parallelise per row group)."""
SUMMED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "ticks": (("size", "decimal(38,0)"), ("price", "decimal(38,8)")),
    "bars_1m": (("volume", "decimal(38,0)"), ("trade_count", "decimal(38,0)"), ("vwap", "decimal(38,8)")),
    "quarantine": (("kafka_offset", "decimal(38,0)"),),
}
"""Business sums that must survive compaction exactly, per table (besides rows, keys and a content hash)."""
WRITTEN_SCHEMA = "key string, rows bigint, bytes bigint"


READ_THREADS = 8
"""Objects each Spark task fetches concurrently (small objects: the cost is S3 round trips, not bytes)."""


@dataclass(frozen=True)
class ObjectReader:
    """The mapInArrow function: reads the objects named in its partition of keys with pyarrow.

    Thousands of small objects are read far faster this way than by Spark's file source, which opens
    each object in turn (several S3 round trips each); here every task keeps READ_THREADS requests in flight.
    """

    location: LakeLocation
    schema: pa.Schema

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Yield the rows of every object in this partition, with the table's schema."""
        filesystem, _ = self.location.filesystem()
        keys = [key for batch in batches for key in batch.column("key").to_pylist()]

        def read(key: str) -> pa.Table:
            return pq.read_table(self.location.path(key), filesystem=filesystem)

        with ThreadPoolExecutor(READ_THREADS) as pool:
            for start in range(0, len(keys), READ_THREADS * 4):
                for table in pool.map(read, keys[start : start + READ_THREADS * 4]):
                    yield from table.select(self.schema.names).cast(self.schema).to_batches()


def read_objects(
    spark: SparkSession, location: LakeLocation, keys: Sequence[str], schema: pa.Schema
) -> DataFrame:
    """The rows of exactly these objects, with the table's own columns (no path-derived date/hour)."""
    tasks = max(1, min(len(keys), spark.sparkContext.defaultParallelism * 2))
    names = spark.sparkContext.parallelize([(key,) for key in keys], tasks).toDF("key string")
    return names.mapInArrow(ObjectReader(location, schema), from_arrow_schema(schema))


def table_schema(location: LakeLocation, key: str) -> pa.Schema:
    """The Arrow schema of an existing object of the table (compacted objects keep it exactly)."""
    filesystem, _ = location.filesystem()
    with filesystem.open_input_file(location.path(key)) as source:
        return pq.read_schema(source).remove_metadata()


def checksum(frame: DataFrame, spec: TableSpec) -> dict[str, str]:
    """Order-independent fingerprint of a set of rows: count, distinct keys, content hash, business sums.

    `content_hash` is the exact (decimal) sum of xxhash64 over every column, so any changed, lost or
    duplicated row changes it; sums are exact decimals, so they do not depend on row order either.
    """
    columns = sorted(frame.columns)
    aggregates = [
        F.count(F.lit(1)).alias("rows"),
        F.count_distinct(*(F.col(k) for k in spec.sort_keys)).alias("distinct_keys"),
        F.sum(F.xxhash64(*(F.col(c) for c in columns)).cast("decimal(38,0)")).alias("content_hash"),
    ]
    for column, kind in SUMMED_COLUMNS.get(spec.name, ()):
        if column in frame.columns:
            aggregates.append(F.sum(F.expr(f"try_cast(`{column}` AS {kind})")).alias(f"sum_{column}"))
    row = frame.agg(*aggregates).first()
    assert row is not None
    return {name: str(value) for name, value in row.asDict().items()}


@dataclass(frozen=True)
class SortedPartitionWriter:
    """The mapInArrow function: writes one range partition (rows already sorted) as one zstd object."""

    location: LakeLocation
    output_dir: str
    schema: pa.Schema

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Stream the batches into `<output_dir>/part-<partition>.parquet`; yield what was written.

        On S3 the object appears whole when its (multipart) upload completes; locally it is renamed into
        place. Row groups hold ROW_GROUP_ROWS rows (Spark's Arrow batches are much smaller).
        """
        context = TaskContext.get()
        partition = context.partitionId() if context else 0
        key = f"{self.output_dir}/part-{partition:05d}.parquet"
        filesystem, _ = self.location.filesystem()
        path = self.location.path(key)
        local = isinstance(filesystem, pafs.LocalFileSystem)
        target = f"{path}.tmp" if local else path
        rows = 0
        sink: Any = None
        writer: pq.ParquetWriter | None = None
        pending: list[pa.RecordBatch] = []
        try:
            for batch in batches:
                pending.append(batch)
                if sum(b.num_rows for b in pending) < ROW_GROUP_ROWS:
                    continue
                if writer is None:
                    sink, writer = self._open(filesystem, target, local)
                rows += self._write(writer, pending)
                pending = []
            if sum(b.num_rows for b in pending):
                if writer is None:
                    sink, writer = self._open(filesystem, target, local)
                rows += self._write(writer, pending)
        finally:
            if writer is not None:
                writer.close()
                sink.close()
        if writer is None:
            return  # an empty range partition writes nothing
        if local:
            filesystem.move(target, path)
        size = filesystem.get_file_info(path).size or 0
        yield pa.RecordBatch.from_pylist([{"key": key, "rows": rows, "bytes": size}])

    def _open(self, filesystem: pafs.FileSystem, path: str, local: bool) -> tuple[Any, pq.ParquetWriter]:
        if local:
            filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        sink = filesystem.open_output_stream(path)
        return sink, pq.ParquetWriter(sink, self.schema, compression=PARQUET_COMPRESSION)

    def _write(self, writer: pq.ParquetWriter, batches: list[pa.RecordBatch]) -> int:
        table = pa.Table.from_batches(batches).select(self.schema.names).cast(self.schema)
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        return table.num_rows


def write_sorted(
    frame: DataFrame, spec: TableSpec, location: LakeLocation, output_dir: str, files: int, schema: pa.Schema
) -> list[LakeObject]:
    """Write `frame` as `files` objects, range-partitioned and sorted by the table key; return them."""
    keys = [F.col(k) for k in spec.sort_keys]
    writer = SortedPartitionWriter(location, output_dir, schema)
    ranged = frame.repartitionByRange(files, *keys).sortWithinPartitions(*keys)
    written = ranged.mapInArrow(writer, WRITTEN_SCHEMA).collect()
    return sorted((LakeObject(r.key, r.bytes, r.rows) for r in written), key=lambda o: o.key)
