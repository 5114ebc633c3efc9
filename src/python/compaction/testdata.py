"""Synthetic lake content for tests and the benchmark: hours of ticks and bars appended as the stream does.

Rows are appended to a test lake's Iceberg tables one small commit at a time (`testkit.lake`),
like the streaming job's micro-batches; a status object whose watermark closes the hours lets the
compaction job run; DuckDB reads an hour back through the table's current snapshot.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import duckdb
import numpy as np
import pyarrow as pa

from testkit.expected import expected_bar_table
from testkit.lake import TestLake
from tickstream.catalog import metadata_location
from tickstream.contracts import Tick
from tickstream.duckdb_lake import iceberg_scan
from tickstream.lake import BARS_1M, STATUS_KEY, TICKS, LakeLocation, put_object

SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY", "BRK.B", "JPM")
HOUR_US = 3_600_000_000


def hour_start(date: str, hour: str) -> datetime:
    """UTC start of an hour."""
    return datetime.strptime(f"{date} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC)


def synthetic_ticks(start: datetime, first: int, rows: int, hour_rows: int, seed: int = 0) -> pa.Table:
    """Rows `first`..`first + rows` of `hour_rows` ticks spread evenly over the hour starting at `start`."""
    start_us = int(start.timestamp() * 1_000_000)
    step_us = HOUR_US // max(1, hour_rows)
    rng = np.random.default_rng(seed + first)
    index = np.arange(first, first + rows, dtype=np.int64)
    cents = 10_000 + rng.integers(0, 5_000, rows)
    ts_us = start_us + (index * step_us) % HOUR_US
    return pa.table(
        {
            "schema_version": pa.array(np.ones(rows, dtype=np.int32)),
            "symbol": pa.array(np.array(SYMBOLS)[index % len(SYMBOLS)]),
            "seq": pa.array(index // len(SYMBOLS) + 1),
            "ts_us": pa.array(ts_us),
            "price": pa.array(cents / 100.0),
            "size": pa.array(rng.integers(1, 500, rows)),
            "bid": pa.array((cents - 1) / 100.0),
            "ask": pa.array((cents + 1) / 100.0),
            "kafka_partition": pa.array((index % 3).astype(np.int32)),
            "kafka_offset": pa.array(index),
            "event_time": pa.array(ts_us).cast(pa.timestamp("us", tz="UTC")),
            "kafka_ts": pa.array(ts_us).cast(pa.timestamp("us", tz="UTC")),
        }
    ).cast(TICKS.schema)


def bars_of(ticks: pa.Table) -> pa.Table:
    """The true 1-minute bars of ticks-table rows (`testkit.expected`)."""
    return expected_bar_table(
        cast(list[Tick], ticks.select(["symbol", "seq", "ts_us", "price", "size"]).to_pylist())
    )


def fill_hour(lake: TestLake, date: str, hour: str, batches: int, rows_per_batch: int) -> pa.Table:
    """Append `batches` small commits of ticks to one hour, and the hour's true bars in as many commits."""
    start = hour_start(date, hour)
    written = []
    for batch in range(batches):
        ticks = synthetic_ticks(start, batch * rows_per_batch, rows_per_batch, batches * rows_per_batch)
        lake.append(TICKS, ticks)
        written.append(ticks)
    ticks = pa.concat_tables(written)
    bars = bars_of(ticks)
    size = -(-bars.num_rows // batches)
    for first in range(0, bars.num_rows, size):
        lake.append(BARS_1M, bars.slice(first, size))
    return ticks


def write_status(
    location: LakeLocation, watermark: datetime, queries: tuple[str, ...] = ("ticks", "bars_1m")
) -> None:
    """A `_status/streaming.json` whose entries report `watermark` (what closes hours)."""
    mark = watermark.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    status = {
        "updated_at": mark,
        "queries": {
            q: {"state": "active", "query_id": str(uuid.uuid4()), "watermark": mark} for q in queries
        },
    }
    filesystem, base = location.filesystem()
    put_object(filesystem, f"{base}/{STATUS_KEY}", json.dumps(status).encode())


TICKS_SUMMARY = (
    "SELECT symbol, count(*) AS n, sum(size) AS size, sum(CAST(price AS DECIMAL(38, 8))) AS price, "
    "min(ts_us) AS first_us, max(ts_us) AS last_us FROM {relation} "
    "WHERE event_time >= ? AND event_time < ? GROUP BY symbol ORDER BY symbol"
)


def ticks_summary(
    con: duckdb.DuckDBPyConnection, lake: TestLake, date: str, hour: str
) -> list[tuple[Any, ...]]:
    """Per-symbol count, sums and time range of an hour of ticks, read by DuckDB from the current snapshot."""
    location = metadata_location(lake.catalog, lake.settings, TICKS)
    if location is None:
        return []
    start = hour_start(date, hour)
    query = TICKS_SUMMARY.format(relation=iceberg_scan(location))
    return con.execute(query, [start, start + timedelta(hours=1)]).fetchall()
