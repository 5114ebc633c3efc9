"""Pure DataFrame transformations of the streaming job: parse/validate, dedup, bars, lake routing.

Nothing here starts a query or touches S3, so every function runs on static DataFrames in tests.
Validation is the contract's own (`tickstream.contracts.decode_tick_batch`, run on Arrow batches inside
Spark's Python workers), with one deliberate choice: the "absurd timestamp" bound is the Kafka record
timestamp, not the wall clock, so that a replayed batch classifies every record exactly as its first
attempt did.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from tickstream.contracts import DEDUP_KEY_FIELDS, FIELD_NAMES, TICK_FIELDS, decode_tick_batch
from tickstream.lake import BARS_1M, QUARANTINE, TICKS

EVENT_TIME = "event_time"
"""Timestamp column the watermark runs on: the tick's ts_us; NULL for rejected records."""
TABLE = "_table"
"""Routing column: which lake table a row of a micro-batch belongs to."""
PARTITION_TIME = "_partition_time"
"""Routing column: the timestamp whose UTC date and hour place a row (the writer derives date=/hour=)."""
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
_DEDUP_COLUMNS = ("_dedup_a", "_dedup_b", "_dedup_c")


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


def parse_ticks(records: DataFrame) -> DataFrame:
    """Parse and validate raw records (`from_kafka` output); keep every row, valid or not.

    Adds the contract's typed fields (NULL where unusable), `reason`/`detail` (NULL for valid ticks) and
    `event_time` (the tick's time for valid ticks, NULL for rejected ones so the watermark ignores them).
    Only rejected rows keep `raw_value` and `kafka_topic` (the quarantine needs them, the ticks table does
    not), so valid ticks carry less through the shuffles.
    """
    return records.mapInArrow(decode_arrow_records, PARSED_SCHEMA)


def decode_arrow_records(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The mapInArrow function of `parse_ticks`: each batch of Kafka records decoded by the contract."""
    for batch in batches:
        yield decode_record_batch(batch)


def decode_record_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """One Arrow batch of `from_kafka` rows as `PARSED_SCHEMA` rows."""
    kafka_ts = batch.column("kafka_ts")
    decoded = decode_tick_batch(batch.column("raw_value"), pc.cast(kafka_ts, pa.int64()))
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


# --- event time: watermark and de-duplication --------------------------------------------------------


def dedup_within_watermark(parsed: DataFrame, watermark_delay: str) -> DataFrame:
    """Watermark on event time and drop re-sent ticks (same symbol, seq, ts_us) within the watermark.

    Ticks older than the watermark are dropped too (Spark counts them as numRowsDroppedByWatermark).
    Rejected rows carry a unique key (their Kafka coordinates, prefixed by a character no symbol can
    hold) and a NULL event time, so they are neither de-duplicated nor dropped as late.
    """
    key = (
        F.when(is_valid(), F.col(name)).otherwise(fallback)
        for name, fallback in zip(
            DEDUP_KEY_FIELDS,
            (
                F.concat(F.lit("\u0000"), F.col("kafka_topic")),
                F.col("kafka_partition"),
                F.col("kafka_offset"),
            ),
            strict=True,
        )
    )
    keyed = parsed.select("*", *[k.alias(n) for k, n in zip(key, _DEDUP_COLUMNS, strict=True)])
    return (
        keyed.withWatermark(EVENT_TIME, watermark_delay)
        .dropDuplicatesWithinWatermark(list(_DEDUP_COLUMNS))
        .drop(*_DEDUP_COLUMNS)
    )


# --- 1-minute bars -----------------------------------------------------------------------------------

MINUTE_US = 60_000_000
PRICE_SCALE = 8
"""VWAP notional is exact in units of 10^-PRICE_SCALE USD (prices rounded to 8 decimals, as decimal(18,8))."""
_PRICED_BELOW = 1e10
"""Prices from here on do not fit decimal(18,8): such a tick makes its bar's VWAP NULL."""
_INT64_MAX = 2**63 - 1
_NOTIONAL_TYPE = pa.decimal128(38, PRICE_SCALE)
BAR_PARTIALS_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("window_start", pa.timestamp("us", tz="UTC")),
        ("open", pa.float64()),
        ("open_ts_us", pa.int64()),
        ("open_seq", pa.int64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("close_ts_us", pa.int64()),
        ("close_seq", pa.int64()),
        ("volume", pa.int64()),
        ("notional", _NOTIONAL_TYPE),
        ("priced_count", pa.int64()),
        ("trade_count", pa.int64()),
    ]
)
"""Columns of a partial bar: one (symbol, minute) over the ticks of one micro-batch task."""
BAR_PARTIALS_SPARK_SCHEMA = from_arrow_schema(BAR_PARTIALS_SCHEMA)
"""The same columns as Spark types (the bars query's file source, rebuilds' mapInArrow)."""


def bar_partials(ticks: pa.Table) -> pa.Table:
    """Partial 1-minute bars of some valid ticks (a writer task's, an Arrow batch), for `merge_bar_partials`.

    Open/close carry their (ts_us, seq) so that partials merge in any order; volume and notional are exact
    (Python integers; NULL when they overflow bigint / decimal(38,8)), so merging them is exact too.
    """
    if ticks.num_rows == 0:
        return BAR_PARTIALS_SCHEMA.empty_table()
    columns = ticks.select(["symbol", "ts_us", "seq", "price", "size"])
    window = pc.multiply(pc.divide(columns["ts_us"], MINUTE_US), MINUTE_US)  # ts_us >= 2000: no rounding
    ordered = columns.append_column("window_us", window).sort_by(
        [("symbol", "ascending"), ("window_us", "ascending"), ("ts_us", "ascending"), ("seq", "ascending")]
    )
    symbol, window_us = ordered["symbol"].to_numpy(), ordered["window_us"].to_numpy()
    starts = np.flatnonzero(np.r_[True, (symbol[1:] != symbol[:-1]) | (window_us[1:] != window_us[:-1])])
    ends = np.r_[starts[1:], len(symbol)] - 1
    price = ordered["price"].to_numpy()
    ts_us, seq = ordered["ts_us"].to_numpy(), ordered["seq"].to_numpy()
    priced = np.isfinite(price) & (np.abs(price) < _PRICED_BELOW)
    units = np.where(priced, np.rint(np.where(priced, price, 0.0) * 10**PRICE_SCALE), 0).astype(np.int64)
    size = ordered["size"].to_numpy().astype(object)
    volume = np.add.reduceat(size, starts)
    notional = np.add.reduceat(units.astype(object) * size, starts)
    return pa.table(
        {
            "symbol": pa.array(symbol[starts], pa.string()),
            "window_start": pa.array(window_us[starts], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "open": price[starts],
            "open_ts_us": ts_us[starts],
            "open_seq": seq[starts],
            "high": np.maximum.reduceat(price, starts),
            "low": np.minimum.reduceat(price, starts),
            "close": price[ends],
            "close_ts_us": ts_us[ends],
            "close_seq": seq[ends],
            "volume": pa.array([int(v) if abs(v) <= _INT64_MAX else None for v in volume], pa.int64()),
            "notional": pa.array([_notional(int(n)) for n in notional], _NOTIONAL_TYPE),
            "priced_count": np.add.reduceat(priced.astype(np.int64), starts),
            "trade_count": np.diff(np.r_[starts, len(symbol)]),
        },
        schema=BAR_PARTIALS_SCHEMA,
    )


def _notional(units: int) -> Decimal | None:
    return Decimal(units).scaleb(-PRICE_SCALE) if abs(units) < 10**38 else None


def partial_bars_of_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow function: the partial bars (`bar_partials`) of each Arrow batch of ticks."""
    for batch in batches:
        yield from bar_partials(pa.Table.from_batches([batch])).to_batches()


def merge_bar_partials(partials: DataFrame) -> DataFrame:
    """1-minute bars merged from partial bars (`bar_partials`) of any slicing of the ticks.

    Merging is exact and order-free: open/close by (ts_us, seq), sums of integers and decimals; a bar whose
    volume or notional overflowed in any partial gets NULL there, and a bar with a price that does not fit
    decimal(18,8) gets a NULL vwap.
    """

    def all_present(name: str) -> Column:
        return F.count(F.col(name)) == F.count(F.lit(1))

    merged = partials.groupBy("symbol", "window_start").agg(
        F.min_by("open", F.struct("open_ts_us", "open_seq")).alias("open"),
        F.max("high").alias("high"),
        F.min("low").alias("low"),
        F.max_by("close", F.struct("close_ts_us", "close_seq")).alias("close"),
        F.when(all_present("volume"), F.try_sum("volume")).alias("volume"),
        F.when(all_present("notional"), F.try_sum("notional")).alias("_notional"),
        F.sum("priced_count").alias("_priced"),
        F.sum("trade_count").alias("trade_count"),
    )
    return merged.select(
        "symbol",
        "window_start",
        (F.col("window_start") + F.expr("INTERVAL 1 MINUTE")).alias("window_end"),
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


def bars_from_partials(partials: DataFrame, watermark_delay: str) -> DataFrame:
    """The bars query: `merge_bar_partials` in append mode, with the watermark on window_start.

    A bar is written once no partial of a later minute than window_start + delay can still come.
    """
    return merge_bar_partials(partials.withWatermark("window_start", watermark_delay))


def bars_1m(ticks: DataFrame) -> DataFrame:
    """1-minute OHLCV bars of valid, de-duplicated ticks in a batch job (rebuilds), by the streaming rules.

    The same code as the streaming bars: partial bars of each Arrow batch (`bar_partials`), merged
    (`merge_bar_partials`), so a rebuilt hour holds exactly the bars streaming would have written.
    """
    columns = ticks.select("symbol", "ts_us", "seq", "price", "size")
    return merge_bar_partials(columns.mapInArrow(partial_bars_of_batches, BAR_PARTIALS_SPARK_SCHEMA))


# --- routing rows to lake tables ---------------------------------------------------------------------

TICK_COLUMNS: tuple[str, ...] = (*FIELD_NAMES, "kafka_partition", "kafka_offset")
QUARANTINE_COLUMNS: tuple[str, ...] = ("raw_value", "reason", "detail", *KAFKA_COLUMNS)
BAR_COLUMNS: tuple[str, ...] = (
    "symbol",
    "window_start",
    "window_end",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
)
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    TICKS.name: TICK_COLUMNS,
    QUARANTINE.name: QUARANTINE_COLUMNS,
    BARS_1M.name: BAR_COLUMNS,
}


def partition_columns(ts: Column) -> list[Column]:
    """The (date, hour) partition columns of a timestamp, in UTC, as zero-padded strings (batch jobs).

    Streaming batches carry `PARTITION_TIME` instead, and the writer derives the same strings per hour
    (`tickstream.lake.date_hour`), which spares formatting two strings per row.
    """
    return [F.date_format(ts, "yyyy-MM-dd").alias("date"), F.date_format(ts, "HH").alias("hour")]


def route_ticks_batch(batch: DataFrame) -> DataFrame:
    """One micro-batch of the ticks query as lake rows: valid ticks to `ticks`, the rest to `quarantine`.

    Ticks are partitioned by event time, quarantined records by Kafka timestamp. Columns a table does not
    use are NULL; the writer keeps only `TABLE_COLUMNS[table]`.
    """
    table = F.when(is_valid(), F.lit(TICKS.name)).otherwise(F.lit(QUARANTINE.name))
    ts = F.when(is_valid(), F.col(EVENT_TIME)).otherwise(F.col("kafka_ts"))
    columns = dict.fromkeys((*TICK_COLUMNS, *QUARANTINE_COLUMNS))
    return batch.select(table.alias(TABLE), ts.alias(PARTITION_TIME), *columns)


def route_bars_batch(batch: DataFrame) -> DataFrame:
    """One micro-batch of the bars query as lake rows, partitioned by window start."""
    return batch.select(
        F.lit(BARS_1M.name).alias(TABLE), F.col("window_start").alias(PARTITION_TIME), *BAR_COLUMNS
    )
