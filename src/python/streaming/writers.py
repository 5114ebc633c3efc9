"""Executor-side Parquet writes of one micro-batch: one object per (table, date, hour, task), idempotent.

`write_batch` runs on the micro-batch as the query's last stateful operator partitioned it (by the
de-duplication key or the bar key, a partitioning fixed by the checkpoint), without another shuffle: each
Spark task writes each hour of each table it holds as ONE Parquet object named only from the query id, the
epoch and the task's partition index (`tickstream.lake.object_key`), rows sorted by the table's key. A
replayed epoch recomputes the same rows in the same partitions and overwrites the same keys with the same
bytes; a single-object PUT is atomic, so plain S3 readers see every row once, whatever attempt wrote it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import TaskContext
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import from_arrow_schema

from streaming.transforms import PARTITION_TIME, TABLE, TABLE_COLUMNS, bar_partials
from tickstream.lake import (
    BAR_PARTIALS,
    QUARANTINE,
    TABLES,
    TICKS,
    LakeLocation,
    TableSpec,
    date_hour,
    object_key,
    parquet_bytes,
    put_object,
)

HOUR_US = 3_600_000_000
_HOUR = "_hour"
_WRITTEN_ARROW = pa.schema(
    [
        ("table", pa.string()),
        ("key", pa.string()),
        ("rows", pa.int64()),
        ("bytes", pa.int64()),
        ("reasons", pa.map_(pa.string(), pa.int64())),
    ]
)
WRITTEN_SCHEMA = from_arrow_schema(_WRITTEN_ARROW)


@dataclass(frozen=True)
class WrittenObject:
    """One Parquet object a micro-batch wrote; `reasons` counts quarantine reasons (quarantine only)."""

    table: str
    key: str
    rows: int
    bytes: int
    reasons: dict[str, int]


@dataclass(frozen=True)
class BatchOutput:
    """Everything one micro-batch wrote."""

    epoch_id: int
    objects: tuple[WrittenObject, ...]
    write_ms: int = 0

    def rows(self, table: str) -> int:
        """Rows written to `table`."""
        return sum(o.rows for o in self.objects if o.table == table)

    def reasons(self) -> Counter[str]:
        """Quarantined records by reason."""
        counts: Counter[str] = Counter()
        for written in self.objects:
            counts.update(written.reasons)
        return counts


def hour_groups(rows: pa.Table) -> Iterator[tuple[str, str, str, pa.Table]]:
    """Split routed rows into (table, date, hour, rows of that table/hour) groups, hours in UTC."""
    ts_us = rows[PARTITION_TIME].cast(pa.int64()).to_numpy()
    hours = pa.array(np.floor_divide(ts_us, HOUR_US))
    keyed = pa.table({TABLE: rows[TABLE], _HOUR: hours})
    for key in keyed.group_by([TABLE, _HOUR]).aggregate([]).to_pylist():
        mask = pc.and_(pc.equal(keyed[TABLE], key[TABLE]), pc.equal(hours, key[_HOUR]))
        date, hour = date_hour(key[_HOUR] * HOUR_US)
        yield key[TABLE], date, hour, rows.filter(mask)


def table_rows(table: str, rows: pa.Table) -> pa.Table:
    """The table's own columns, sorted by its key, so the object's bytes are the same on every replay."""
    spec = TABLES[table]
    selected = rows.select(list(TABLE_COLUMNS[table]))
    return selected.sort_by([(key, "ascending") for key in spec.sort_keys])


@dataclass(frozen=True)
class PartitionWriter:
    """The mapInArrow function: writes one Spark partition's hours, yields what it wrote."""

    lake: LakeLocation
    query_id: str
    epoch_id: int

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Write every (table, date, hour) group of this partition as one object."""
        context = TaskContext.get()
        yield from self.write(batches, context.partitionId() if context else 0)

    def write(self, batches: Iterable[pa.RecordBatch], task: int | None) -> Iterator[pa.RecordBatch]:
        """Write the rows of `batches` (all of task `task`, None for a whole batch at once)."""
        collected = list(batches)
        if not collected or not sum(b.num_rows for b in collected):
            return
        filesystem, base = self.lake.filesystem()
        written: list[dict[str, object]] = []

        def put(spec: TableSpec, date: str, hour: str, rows: pa.Table, reasons: dict[str, int]) -> None:
            key = object_key(spec, date, hour, self.query_id, self.epoch_id, task)
            payload = parquet_bytes(rows)
            put_object(filesystem, f"{base}/{key}", payload)
            written.append(
                {
                    "table": spec.name,
                    "key": key,
                    "rows": rows.num_rows,
                    "bytes": payload.size,
                    "reasons": list(reasons.items()),
                }
            )

        for table, date, hour, group in hour_groups(pa.Table.from_batches(collected)):
            reasons = _reason_counts(group) if table == QUARANTINE.name else {}
            put(TABLES[table], date, hour, table_rows(table, group), reasons)
            if table == TICKS.name:  # the bars query's input: this task's partial bars of the hour
                put(BAR_PARTIALS, date, hour, bar_partials(group), {})
        yield pa.RecordBatch.from_pylist(written, schema=_WRITTEN_ARROW)


def _reason_counts(rows: pa.Table) -> dict[str, int]:
    counts = pc.value_counts(rows["reason"]).to_pylist()
    return {entry["values"]: entry["counts"] for entry in counts}


def write_batch(
    routed: DataFrame, lake: LakeLocation, query_id: str, epoch_id: int, in_driver: bool = False
) -> BatchOutput:
    """Write a routed micro-batch (`transforms.route_*_batch`) to the lake; return what was written.

    `in_driver`: collect the batch and write it from the driver, one object per (table, hour) - for
    small outputs (bars), where starting Python tasks would cost more than the rows.
    """
    started = time.perf_counter()
    writer = PartitionWriter(lake, query_id, epoch_id)
    if in_driver:
        rows = routed.toArrow()
        batches = pa.Table.from_batches(writer.write(rows.to_batches(), None), schema=_WRITTEN_ARROW)
        written = batches.to_pylist()
    else:
        written = [row.asDict() for row in routed.mapInArrow(writer, WRITTEN_SCHEMA).collect()]
    objects = tuple(
        WrittenObject(row["table"], row["key"], row["rows"], row["bytes"], dict(row["reasons"] or {}))
        for row in written
    )
    write_ms = round((time.perf_counter() - started) * 1000)
    return BatchOutput(epoch_id, tuple(sorted(objects, key=lambda o: o.key)), write_ms)
