"""Pure DataFrame transformations of the streaming job: parse/validate, dedup, bars, lake routing.

Nothing here starts a query or touches S3, so every function runs on static DataFrames in tests.
Validation is the contract's own (`tickstream.contracts.decode_tick_batch`, run on Arrow batches inside
Spark's Python workers), with one deliberate choice: the clock of the event-time guard (`future_timestamp`)
is the Kafka record timestamp, not the wall clock, so that a replayed batch classifies every record exactly
as its first attempt did.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import partial, reduce
from itertools import pairwise

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tickstream.contracts import (
    DEDUP_KEY_FIELDS,
    FIELD_NAMES,
    TICK_FIELDS,
    TS_MAX_AHEAD_US,
    decode_tick_batch,
)
from tickstream.lake import QUARANTINE, TICKS

EVENT_TIME = TICKS.partition_column
"""The tick's ts_us as a timestamp (NULL for rejected records): the ticks table's partition column."""
TABLE = "_table"
"""Routing column: which lake table a row of a micro-batch belongs to."""
KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_ts")
_SPARK_TYPES = {"int": "int", "long": "bigint", "double": "double", "string": "string"}
PARSED_SCHEMA = ", ".join(
    [
        "raw_value binary",
        "kafka_topic string",
        "kafka_partition int",
        "kafka_offset bigint",
        "kafka_ts timestamp",
        *(f"{f.name} {_SPARK_TYPES[f.kind]}" for f in TICK_FIELDS),
        "reason string",
        "detail string",
        f"{EVENT_TIME} timestamp",
    ]
)
"""Columns of `parse_ticks` output (Spark DDL)."""


# --- parsing and validation -------------------------------------------------------------------------


def from_kafka(records: DataFrame) -> DataFrame:
    """Kafka source rows (key, value, topic, partition, offset, timestamp) to raw value + coordinates."""
    return records.select(
        F.col("value").alias("raw_value"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_ts"),
    )


def parse_ticks(records: DataFrame, max_ahead_us: int = TS_MAX_AHEAD_US) -> DataFrame:
    """Parse and validate raw records (`from_kafka` output); keep every row, valid or not.

    A tick more than `max_ahead_us` after its Kafka record timestamp is rejected (`future_timestamp`).
    Adds the contract's typed fields (NULL where unusable), `reason`/`detail` (NULL for valid ticks) and
    `event_time` (the tick's time for valid ticks, NULL for rejected ones).
    Only rejected rows keep `raw_value` and `kafka_topic` (the quarantine needs them, the ticks table does
    not), so valid ticks carry less through the shuffles.
    """
    return records.mapInArrow(partial(decode_arrow_records, max_ahead_us=max_ahead_us), PARSED_SCHEMA)


def decode_arrow_records(
    batches: Iterable[pa.RecordBatch], max_ahead_us: int = TS_MAX_AHEAD_US
) -> Iterator[pa.RecordBatch]:
    """The mapInArrow function of `parse_ticks`: each batch of Kafka records decoded by the contract."""
    for batch in batches:
        yield decode_record_batch(batch, max_ahead_us)


def decode_record_batch(batch: pa.RecordBatch, max_ahead_us: int = TS_MAX_AHEAD_US) -> pa.RecordBatch:
    """One Arrow batch of `from_kafka` rows as `PARSED_SCHEMA` rows."""
    kafka_ts = batch.column("kafka_ts")
    decoded = decode_tick_batch(batch.column("raw_value"), pc.cast(kafka_ts, pa.int64()), max_ahead_us)
    rejected = pc.is_valid(decoded.column("reason"))
    ts_type = pa.timestamp("us", tz="UTC")

    def rejected_only(name: str) -> pa.Array:
        column = batch.column(name)
        return (
            pc.if_else(rejected, column, pa.scalar(None, column.type))
            if decoded.column("reason").null_count < batch.num_rows
            else pa.nulls(batch.num_rows, column.type)
        )

    columns = {
        "raw_value": rejected_only("raw_value"),
        "kafka_topic": rejected_only("kafka_topic"),
        "kafka_partition": batch.column("kafka_partition"),
        "kafka_offset": batch.column("kafka_offset"),
        "kafka_ts": kafka_ts,
        **{name: decoded.column(name) for name in (*FIELD_NAMES, "reason", "detail")},
        EVENT_TIME: pc.cast(decoded.column("ts_us"), ts_type),
    }
    return pa.RecordBatch.from_arrays(
        [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in columns.values()],
        names=list(columns),
    )


def is_valid() -> Column:
    """True for rows that passed validation."""
    return F.col("reason").isNull()


# --- de-duplication against what is stored ---------------------------------------------------------


def new_ticks(ticks: DataFrame, stored: DataFrame) -> DataFrame:
    """A batch's valid ticks less its proven duplicates: one row per key (symbol, seq, ts_us), and none
    whose key `stored` (the ticks table, filtered to the batch's event times) already holds.

    Stateless: a tick is compared with what is in the lake, however late it is, so nothing is dropped
    for its lateness and a replay or a re-read of the topic appends nothing twice.
    """
    keys = list(DEDUP_KEY_FIELDS)
    return ticks.dropDuplicates(keys).join(stored.select(*keys), keys, "left_anti")


def merged_spans(spans: Iterable[tuple[datetime, datetime]], most: int) -> list[tuple[datetime, datetime]]:
    """At most `most` closed time ranges covering every span: overlapping spans are joined, and the
    nearest neighbours are merged (the smallest gaps first) until few enough remain."""
    ordered = sorted(spans)
    if not ordered:
        return []
    merged = [ordered[0]]
    for start, end in ordered[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    if len(merged) <= most:
        return merged
    gaps = sorted(range(1, len(merged)), key=lambda i: merged[i][0] - merged[i - 1][1], reverse=True)
    cuts = sorted(gaps[: most - 1])
    bounds = [0, *cuts, len(merged)]
    return [(merged[a][0], merged[b - 1][1]) for a, b in pairwise(bounds)]


def within(spans: Sequence[tuple[datetime, datetime]], column: str = EVENT_TIME) -> Column:
    """True where `column` lies in one of the closed ranges (Iceberg prunes files by their bounds)."""
    conditions = [F.col(column).between(F.lit(start), F.lit(end)) for start, end in spans]
    return reduce(lambda a, b: a | b, conditions) if conditions else F.lit(False)


# --- 1-minute bars -----------------------------------------------------------------------------------

PRICE_SCALE = 8
"""VWAP notional is exact in units of 10^-PRICE_SCALE USD: prices as decimal(18,8) times sizes, summed."""
_PRICE = f"decimal(18,{PRICE_SCALE})"


def bars_1m(ticks: DataFrame) -> DataFrame:
    """1-minute OHLCV/VWAP bars of valid, de-duplicated ticks (`symbol, ts_us, seq, price, size, event_time`).

    Spark's own aggregates, for the streaming job's bars updates and corrections, compaction's check and
    rebuilds alike: open/close are the prices of the first/last tick by (ts_us, seq); volume is the
    exact sum of sizes (NULL on bigint overflow); VWAP is the exact decimal(38,8) sum of price x size over
    the volume, NULL if a price does not fit decimal(18,8) or the sum overflows.
    """
    notional = F.col("price").try_cast(_PRICE) * F.col("size").cast("decimal(19,0)")
    merged = ticks.groupBy("symbol", F.window(EVENT_TIME, "1 minute").alias("window")).agg(
        F.min_by("price", F.struct("ts_us", "seq")).alias("open"),
        F.max("price").alias("high"),
        F.min("price").alias("low"),
        F.max_by("price", F.struct("ts_us", "seq")).alias("close"),
        F.try_sum("size").alias("volume"),
        F.try_sum(notional).alias("_notional"),
        F.count(notional).alias("_priced"),
        F.count(F.lit(1)).alias("trade_count"),
    )
    return merged.select(
        "symbol",
        F.col("window.start").alias("window_start"),
        F.col("window.end").alias("window_end"),
        "open",
        "high",
        "low",
        "close",
        "volume",
        F.when(
            F.col("_priced") == F.col("trade_count"), F.col("_notional").cast("double") / F.col("volume")
        ).alias("vwap"),
        "trade_count",
    )


# --- routing rows to lake tables ---------------------------------------------------------------------


def route_ticks_batch(batch: DataFrame) -> DataFrame:
    """One micro-batch of the ticks query as lake rows: valid ticks to `ticks`, the rest to `quarantine`.

    `TABLE` names each row's table; a table's own columns are `LakeTable.columns` (others are NULL).
    """
    table = F.when(is_valid(), F.lit(TICKS.name)).otherwise(F.lit(QUARANTINE.name))
    columns = dict.fromkeys((*TICKS.columns, *QUARANTINE.columns, "reason"))
    return batch.select(table.alias(TABLE), *columns)
