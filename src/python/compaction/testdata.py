"""Synthetic lake content for tests and the benchmark: stream objects named like the streaming job's.

Writes hours of ticks (and bars) directly with pyarrow through `tickstream.lake` names, plus a status
object whose watermark closes them, and reads hours back with DuckDB through the reader rule.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from tickstream.lake import (
    BARS_1M,
    BARS_1M_ARROW_SCHEMA,
    STATUS_KEY,
    TICKS,
    TICKS_ARROW_SCHEMA,
    LakeLocation,
    committed_objects,
    object_key,
    parquet_bytes,
    put_object,
)
from tickstream.services.seaweedfs import SeaweedFSService, SeaweedFSSettings
from tickstream.settings import PathsSettings, S3Settings
from tickstream.testing.services import free_port

SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY", "BRK.B", "JPM")


def hour_start(date: str, hour: str) -> datetime:
    """UTC start of a (date, hour) partition."""
    return datetime.strptime(f"{date} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC)


@dataclass
class StreamWriter:
    """Writes objects of one hour as successive micro-batches of one fake streaming query."""

    location: LakeLocation
    date: str
    hour: str
    query_id: str = "0c0ffee0-0000-4000-8000-000000000000"
    next_epoch: int = 0
    next_offset: int = 0

    def ticks(
        self, batches: int, rows_per_batch: int, seed: int = 0, hour_rows: int | None = None
    ) -> pa.Table:
        """Write `batches` objects of ticks; return every row written.

        Tick i (counting from `next_offset`) is at hour start + i * 1 h / `hour_rows` (default: the rows of
        this call), so writers given disjoint offset ranges fill one hour together.
        """
        start_us = int(hour_start(self.date, self.hour).timestamp() * 1_000_000)
        step_us = 3_600_000_000 // max(1, hour_rows or batches * rows_per_batch)
        rng = np.random.default_rng(seed + self.next_epoch)
        written = []
        filesystem, _ = self.location.filesystem()
        for _ in range(batches):
            n = rows_per_batch
            first = self.next_offset
            index = np.arange(first, first + n, dtype=np.int64)
            symbols = np.array(SYMBOLS)[index % len(SYMBOLS)]
            cents = 10_000 + rng.integers(0, 5_000, n)
            table = pa.table(
                {
                    "schema_version": pa.array(np.ones(n, dtype=np.int32)),
                    "symbol": pa.array(symbols),
                    "seq": pa.array(index // len(SYMBOLS) + 1),
                    "ts_us": pa.array(start_us + (index * step_us) % 3_600_000_000),
                    "price": pa.array(cents / 100.0),
                    "bid": pa.array((cents - 1) / 100.0),
                    "ask": pa.array((cents + 1) / 100.0),
                    "size": pa.array(rng.integers(1, 500, n)),
                    "kafka_partition": pa.array((index % 3).astype(np.int32)),
                    "kafka_offset": pa.array(index),
                },
                schema=TICKS_ARROW_SCHEMA,
            ).sort_by([(k, "ascending") for k in TICKS.sort_keys])
            self._put(TICKS.name, table, filesystem)
            self.next_offset += n
            written.append(table)
        return pa.concat_tables(written)

    def bars(self, batches: int, seed: int = 0) -> pa.Table:
        """Write `batches` objects of 1-minute bars (one minute per batch and symbol); return the rows."""
        start = hour_start(self.date, self.hour)
        rng = np.random.default_rng(seed + 1000 + self.next_epoch)
        written = []
        filesystem, _ = self.location.filesystem()
        for b in range(batches):
            minute = start + timedelta(minutes=(self.next_epoch + b) % 60)
            n = len(SYMBOLS)
            prices = 100 + rng.random((4, n)) * 10
            table = pa.table(
                {
                    "symbol": pa.array(SYMBOLS),
                    "window_start": pa.array([minute] * n, pa.timestamp("us", tz="UTC")),
                    "window_end": pa.array([minute + timedelta(minutes=1)] * n, pa.timestamp("us", tz="UTC")),
                    "open": pa.array(prices[0]),
                    "high": pa.array(prices.max(axis=0)),
                    "low": pa.array(prices.min(axis=0)),
                    "close": pa.array(prices[3]),
                    "volume": pa.array(rng.integers(1, 10_000, n)),
                    "vwap": pa.array(prices.mean(axis=0)),
                    "trade_count": pa.array(rng.integers(1, 100, n)),
                },
                schema=BARS_1M_ARROW_SCHEMA,
            ).sort_by([(k, "ascending") for k in BARS_1M.sort_keys])
            self._put(BARS_1M.name, table, filesystem)
            written.append(table)
        return pa.concat_tables(written)

    def _put(self, table: str, rows: pa.Table, filesystem: Any) -> None:
        spec = TICKS if table == TICKS.name else BARS_1M
        key = object_key(spec, self.date, self.hour, self.query_id, self.next_epoch)
        put_object(filesystem, self.location.path(key), parquet_bytes(rows))
        self.next_epoch += 1


def write_status(
    location: LakeLocation, watermark: datetime, queries: tuple[str, ...] = ("ticks", "bars_1m")
) -> None:
    """A `_status/streaming.json` whose queries report `watermark` (what closes hours)."""
    mark = watermark.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    status = {
        "updated_at": mark,
        "queries": {
            q: {"state": "active", "query_id": str(uuid.uuid4()), "watermark": mark} for q in queries
        },
    }
    filesystem, _ = location.filesystem()
    put_object(filesystem, location.path(STATUS_KEY), json.dumps(status).encode())


def duckdb_connection(s3: S3Settings | None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that reads the lake (httpfs loaded from the PyPI package, S3 secret set)."""
    con = duckdb.connect()
    if s3 is None:
        return con
    import duckdb_extension_httpfs

    extension = (
        Path(duckdb_extension_httpfs.__file__).parent
        / f"extensions/v{duckdb.__version__}/httpfs.duckdb_extension"
    )
    scheme, host = s3.endpoint_url.split("://", 1)
    con.execute(f"LOAD '{extension}'")
    con.execute(
        "CREATE SECRET lake (TYPE s3, KEY_ID ?, SECRET ?, ENDPOINT ?, URL_STYLE ?, USE_SSL ?, REGION ?)",
        [
            s3.access_key_id,
            s3.secret_access_key,
            host,
            "path" if s3.path_style else "vhost",
            scheme == "https",
            s3.region,
        ],
    )
    return con


TICKS_SUMMARY = (
    "SELECT symbol, count(*) AS n, sum(size) AS size, sum(CAST(price AS DECIMAL(38, 8))) AS price, "
    "min(ts_us) AS first_us, max(ts_us) AS last_us FROM read_parquet({files}) GROUP BY symbol ORDER BY symbol"
)


def ticks_summary(
    con: duckdb.DuckDBPyConnection, location: LakeLocation, date: str, hour: str
) -> list[tuple[Any, ...]]:
    """Per-symbol count, sums and time range of an hour of ticks, read through the reader rule."""
    keys = committed_objects(location, TICKS, date, hour)
    if not keys:
        return []
    files = "[" + ", ".join(f"'{location.url(k)}'" for k in keys) + "]"
    return con.execute(TICKS_SUMMARY.format(files=files)).fetchall()


@contextmanager
def private_s3_server() -> Iterator[SeaweedFSService]:
    """An S3 server of the caller alone (temporary home, free ports; other sessions may hold the defaults)."""
    home = Path(tempfile.mkdtemp(prefix="tickstream-private-s3-"))
    grpc = (0, 10000)  # SeaweedFS serves gRPC on port + 10000
    s3 = S3Settings(endpoint_url=f"http://127.0.0.1:{free_port(grpc)}")
    seaweed = SeaweedFSSettings(
        master_port=free_port(grpc), volume_port=free_port(grpc), filer_port=free_port(grpc)
    )
    service = SeaweedFSService(PathsSettings(home=home), s3, seaweed)
    service.up()
    try:
        yield service
    finally:
        service.down()
        shutil.rmtree(home, ignore_errors=True)
