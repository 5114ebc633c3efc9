"""Pure DataFrame transformations of the streaming job: parse/validate, dedup, bars, lake routing.

Nothing here starts a query or touches S3, so every function runs on static DataFrames in tests. The
validation mirrors `tickstream.contracts.decode_tick` check by check (same reason codes, same order),
with one deliberate difference: "absurd timestamp" is judged against the Kafka record timestamp, not the
wall clock, so that a replayed batch classifies every record exactly as its first attempt did.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tickstream.contracts import (
    DEDUP_KEY_FIELDS,
    FIELD_NAMES,
    FLOAT_FIELDS,
    INT_FIELDS,
    POSITIVE_PRICE_FIELDS,
    REJECT_ABSURD_TIMESTAMP,
    REJECT_BAD_SCHEMA_VERSION,
    REJECT_BAD_SEQ,
    REJECT_BAD_SYMBOL,
    REJECT_CROSSED_QUOTE,
    REJECT_MISSING_FIELD,
    REJECT_NON_POSITIVE_PRICE,
    REJECT_NON_POSITIVE_SIZE,
    REJECT_NOT_JSON,
    REJECT_NOT_OBJECT,
    REJECT_WRONG_TYPE,
    SCHEMA_VERSION,
    SYMBOL_PATTERN,
    TICK_FIELDS,
    TS_MAX_FUTURE_US,
    TS_MIN_US,
)
from tickstream.lake import BARS_1M, QUARANTINE, TICKS

EVENT_TIME = "event_time"
"""Timestamp column the watermark runs on: the tick's ts_us; NULL for rejected records."""
TABLE = "_table"
"""Routing column: which lake table a row of a micro-batch belongs to."""
KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_ts")
_SPARK_TYPES = {"int": "int", "long": "bigint", "double": "double", "string": "string"}
_CHECK_TYPES = {**_SPARK_TYPES, "int": "bigint"}
"""Types the checks read fields as: every integer as bigint, so an out-of-range value cannot become NULL."""
_KINDS = {f.name: f.kind for f in TICK_FIELDS}
_FAST = "_fast"
JSON_OPTIONS = {"allowSingleQuotes": "false", "allowNonNumericNumbers": "false"}
"""Spark JSON reader options that match a strict JSON parser (orjson, the contract's reference)."""
_DEDUP_COLUMNS = ("_dedup_a", "_dedup_b", "_dedup_c")


@dataclass(frozen=True)
class Check:
    """One validation rule: rows where `failed` is true are rejected with `reason` and `detail`."""

    failed: Column
    reason: str
    detail: Column


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


def _variant() -> Column:
    """The record parsed as VARIANT (NULL if not JSON): exact JSON types, for the slow, explaining path."""
    return F.try_parse_json(F.col("raw_value").cast("string"))


def _field(name: str) -> Column:
    return F.variant_get(_variant(), f"$.{name}", "variant")


def _json_type(name: str) -> Column:
    return F.schema_of_variant(_field(name))


def _is_number(type_name: Column) -> Column:
    return type_name.isin("BIGINT", "DOUBLE") | type_name.startswith("DECIMAL")


def structure_checks() -> list[Check]:
    """JSON-level rules, in contract order: parses, is an object, has every field of the right type."""
    checks = [
        Check(_variant().isNull(), REJECT_NOT_JSON, F.lit("value is not valid JSON")),
        Check(
            ~F.schema_of_variant(_variant()).startswith("OBJECT"),
            REJECT_NOT_OBJECT,
            F.concat(F.lit("JSON "), F.schema_of_variant(_variant()), F.lit(", expected an object")),
        ),
    ]
    checks += [
        Check(_field(name).isNull(), REJECT_MISSING_FIELD, F.lit(f"missing field '{name}'"))
        for name in FIELD_NAMES
    ]
    expected = [(name, _json_type(name) != "BIGINT", "integer") for name in INT_FIELDS]
    expected += [(name, ~_is_number(_json_type(name)), "number") for name in FLOAT_FIELDS]
    expected += [("symbol", _json_type("symbol") != "STRING", "string")]
    checks += [
        Check(
            bad,
            REJECT_WRONG_TYPE,
            F.concat(F.lit(f"'{name}' is "), _json_type(name), F.lit(f", expected {want}")),
        )
        for name, bad, want in expected
    ]
    return checks


def value_checks() -> list[Check]:
    """Rules on typed values, in contract order; timestamps are bounded by the Kafka record time."""
    ts_max = F.unix_micros(F.col("kafka_ts")) + F.lit(TS_MAX_FUTURE_US)
    ts = F.col("ts_us")
    checks = [
        Check(
            F.col("schema_version") != SCHEMA_VERSION,
            REJECT_BAD_SCHEMA_VERSION,
            F.format_string(f"schema_version %d != {SCHEMA_VERSION}", F.col("schema_version")),
        ),
        Check(
            ~F.col("symbol").rlike(SYMBOL_PATTERN),
            REJECT_BAD_SYMBOL,
            F.format_string(f"symbol '%s' does not match {SYMBOL_PATTERN}", F.col("symbol")),
        ),
        Check(F.col("seq") < 1, REJECT_BAD_SEQ, F.format_string("seq %d < 1", F.col("seq"))),
        Check(
            (ts < TS_MIN_US) | (ts > ts_max),
            REJECT_ABSURD_TIMESTAMP,
            F.format_string("ts_us %d outside [2000-01-01, Kafka timestamp + 1 day]", ts),
        ),
    ]
    checks += [
        Check(
            ~(F.col(name) > 0.0) | F.isnan(F.col(name)),
            REJECT_NON_POSITIVE_PRICE,
            F.format_string(f"'{name}' %s <= 0", F.col(name).cast("string")),
        )
        for name in POSITIVE_PRICE_FIELDS
    ]
    checks += [
        Check(F.col("size") <= 0, REJECT_NON_POSITIVE_SIZE, F.format_string("size %d <= 0", F.col("size"))),
        Check(
            F.col("bid") > F.col("ask"),
            REJECT_CROSSED_QUOTE,
            F.format_string("bid %s > ask %s", F.col("bid").cast("string"), F.col("ask").cast("string")),
        ),
    ]
    return checks


def first_failure(checks: list[Check]) -> tuple[Column, Column]:
    """(reason, detail) of the first failing check, both NULL when every check passes."""
    reason: Column = F.lit(None).cast("string")
    detail: Column = F.lit(None).cast("string")
    for check in reversed(checks):
        failed = F.coalesce(check.failed, F.lit(True))  # a rule that cannot be evaluated rejects
        reason = F.when(failed, F.lit(check.reason)).otherwise(reason)
        detail = F.when(failed, check.detail).otherwise(detail)
    return reason, detail


def parse_ticks(records: DataFrame) -> DataFrame:
    """Parse and validate raw records (`from_kafka` output); keep every row, valid or not.

    Adds the contract's typed fields (NULL where unusable), `reason`/`detail` (NULL for valid ticks) and
    `event_time` (the tick's time for valid ticks, NULL for rejected ones so the watermark ignores them).

    Fast path: `from_json` into the typed schema plus the value checks accepts a well-formed tick; only a
    record that fails it is re-parsed as VARIANT to find the exact reason (JSON types, missing fields), so
    the expensive explaining path runs for rejected records only. Known deviation from the contract's
    strict parser: both Spark parsers ignore content after the first JSON value (`{...} x` is judged by
    its object alone).
    """
    schema = ", ".join(f"{f.name} {_CHECK_TYPES[f.kind]}" for f in TICK_FIELDS)
    fast = records.select(
        "*", F.from_json(F.col("raw_value").cast("string"), schema, JSON_OPTIONS).alias(_FAST)
    )
    typed = fast.select(*records.columns, *[F.col(f"{_FAST}.{name}").alias(name) for name in FIELD_NAMES])
    value_reason, value_detail = first_failure(value_checks())
    structure_reason, structure_detail = first_failure(structure_checks())
    well_formed = reduce(operator.and_, [F.col(name).isNotNull() for name in FIELD_NAMES])
    fast_ok = well_formed & value_reason.isNull()
    validated = typed.select(
        *typed.columns,
        F.when(~fast_ok, F.coalesce(structure_reason, value_reason)).alias("reason"),
        F.when(~fast_ok, F.coalesce(structure_detail, value_detail)).alias("detail"),
    )
    return validated.select(
        *[_as_contract_type(c) for c in validated.columns],
        F.when(is_valid(), F.timestamp_micros(F.col("ts_us"))).alias(EVENT_TIME),
    )


def _as_contract_type(column: str) -> Column:
    kind = _KINDS.get(column)
    return F.col(column).try_cast(_SPARK_TYPES[kind]).alias(column) if kind else F.col(column)


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


def bars_1m(ticks: DataFrame) -> DataFrame:
    """1-minute OHLCV bars per symbol from valid, watermarked, de-duplicated ticks (append mode).

    Open/close are the prices of the earliest/latest tick by (ts_us, seq), so ties in time resolve the
    same way on every run; VWAP divides an exact decimal notional by the volume, so it does not depend on
    the order Spark adds rows in.
    """
    order = F.struct(F.col("ts_us"), F.col("seq"))
    # ANSI mode: an overflow must yield NULL, never an exception that would stop (and on replay re-stop)
    # the stream; prices >= 1e10 USD or per-minute notional >= 1e30 give a NULL vwap.
    notional = F.col("price").try_cast("decimal(18,8)") * F.col("size").cast("decimal(19,0)")
    return (
        ticks.groupBy(F.window(F.col(EVENT_TIME), "1 minute"), F.col("symbol"))
        .agg(
            F.min_by("price", order).alias("open"),
            F.max("price").alias("high"),
            F.min("price").alias("low"),
            F.max_by("price", order).alias("close"),
            F.try_sum("size").alias("volume"),
            F.try_sum(notional).alias("_notional"),
            F.count(notional).alias("_priced"),
            F.count(F.lit(1)).alias("trade_count"),
        )
        .select(
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
    )


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
    """The (date, hour) partition columns of a timestamp, in UTC, as zero-padded strings."""
    return [F.date_format(ts, "yyyy-MM-dd").alias("date"), F.date_format(ts, "HH").alias("hour")]


def route_ticks_batch(batch: DataFrame) -> DataFrame:
    """One micro-batch of the ticks query as lake rows: valid ticks to `ticks`, the rest to `quarantine`.

    Ticks are partitioned by event time, quarantined records by Kafka timestamp. Columns a table does not
    use are NULL; the writer keeps only `TABLE_COLUMNS[table]`.
    """
    table = F.when(is_valid(), F.lit(TICKS.name)).otherwise(F.lit(QUARANTINE.name))
    ts = F.when(is_valid(), F.col(EVENT_TIME)).otherwise(F.col("kafka_ts"))
    columns = dict.fromkeys((*TICK_COLUMNS, *QUARANTINE_COLUMNS))
    return batch.select(table.alias(TABLE), *partition_columns(ts), *columns)


def route_bars_batch(batch: DataFrame) -> DataFrame:
    """One micro-batch of the bars query as lake rows, partitioned by window start."""
    return batch.select(
        F.lit(BARS_1M.name).alias(TABLE), *partition_columns(F.col("window_start")), *BAR_COLUMNS
    )
