"""The lake's tables in code: one definition of each Iceberg table's columns, partitioning and sort order.

The lake is a set of Apache Iceberg tables in one catalog (docs/lake.md): the streaming job appends to them,
the compaction job maintains them, and every reader (dbt, the dashboard, tests, any engine) opens them
through the catalog. This module is pure pyarrow: it says *what* the tables are; `tickstream.catalog`
creates and opens them, `tickstream.duckdb_lake` reads them with DuckDB.

It also names the few plain objects the platform keeps beside the tables in the bucket (the streaming
job's status object, dbt's run results, the marts' Parquet exports), through `LakeLocation`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tickstream.contracts import ARROW_TYPES, TICK_FIELDS
from tickstream.settings import S3Settings

TIMESTAMP_UTC = pa.timestamp("us", tz="UTC")
"""Every timestamp in the lake: microseconds, UTC (Iceberg's timestamptz)."""
STATUS_KEY = "_status/streaming.json"
"""Object holding the streaming job's per-query progress (see `streaming.status`)."""
PARQUET_COMPRESSION = "zstd"


@dataclass(frozen=True)
class LakeTable:
    """One Iceberg table of the lake: its columns, its hidden hourly partitioning and its sort order."""

    name: str
    schema: pa.Schema
    partition_column: str
    """A timestamp column; the table is partitioned by its UTC hour (Iceberg's `hour` transform)."""
    sort_keys: tuple[str, ...]
    """The table's sort order: rows inside every data file are sorted by these columns."""
    description: str

    @property
    def columns(self) -> tuple[str, ...]:
        """Column names, in table order."""
        return tuple(self.schema.names)

    def empty(self) -> pa.Table:
        """A table with no rows and this table's columns."""
        return self.schema.empty_table()


TICKS = LakeTable(
    name="ticks",
    schema=pa.schema(
        [
            *[(f.name, ARROW_TYPES[f.kind]) for f in TICK_FIELDS],
            ("kafka_partition", pa.int32()),
            ("kafka_offset", pa.int64()),
            ("event_time", TIMESTAMP_UTC),
            ("kafka_ts", TIMESTAMP_UTC),
        ]
    ),
    partition_column="event_time",
    sort_keys=("symbol", "ts_us", "seq"),
    description=(
        "One row per accepted tick, however late: the contract's fields, the Kafka partition, offset and "
        "record timestamp (arrival time) of the copy kept, and event_time (ts_us as a timestamp), by whose "
        "hour the table is partitioned."
    ),
)
BARS_1M = LakeTable(
    name="bars_1m",
    schema=pa.schema(
        [
            ("symbol", pa.string()),
            ("window_start", TIMESTAMP_UTC),
            ("window_end", TIMESTAMP_UTC),
            ("open", pa.float64()),
            ("high", pa.float64()),
            ("low", pa.float64()),
            ("close", pa.float64()),
            ("volume", pa.int64()),
            ("vwap", pa.float64()),
            ("trade_count", pa.int64()),
        ]
    ),
    partition_column="window_start",
    sort_keys=("symbol", "window_start"),
    description="One row per (symbol, minute) with at least one accepted tick: OHLCV, VWAP, trade count.",
)
QUARANTINE = LakeTable(
    name="quarantine",
    schema=pa.schema(
        [
            ("raw_value", pa.binary()),
            ("reason", pa.string()),
            ("detail", pa.string()),
            ("kafka_topic", pa.string()),
            ("kafka_partition", pa.int32()),
            ("kafka_offset", pa.int64()),
            ("kafka_ts", TIMESTAMP_UTC),
        ]
    ),
    partition_column="kafka_ts",
    sort_keys=("kafka_partition", "kafka_offset"),
    description="One row per rejected Kafka record: its bytes, the reason code and its Kafka coordinates.",
)
TABLES: dict[str, LakeTable] = {table.name: table for table in (TICKS, BARS_1M, QUARANTINE)}


def lake_table(table: str | LakeTable) -> LakeTable:
    """The LakeTable of a table name (or the table itself); ValueError naming the tables otherwise."""
    if isinstance(table, LakeTable):
        return table
    try:
        return TABLES[table]
    except KeyError:
        raise ValueError(f"unknown table {table!r}; choose from {', '.join(TABLES)}") from None


def hour_starts(start: datetime, end: datetime) -> list[datetime]:
    """UTC hour starts h with start <= h < end, `start` rounded down to its hour."""
    current = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = []
    while current < end:
        hours.append(current)
        current += timedelta(hours=1)
    return hours


# --- plain objects beside the tables (status, dbt artefacts, mart exports) -----------------------------


@dataclass(frozen=True)
class LakeLocation:
    """Where the lake's bucket is: `s3://bucket[/prefix]` (with S3 settings) or a local directory (tests).

    Picklable, so Spark can ship it to executors.
    """

    root: str
    s3: S3Settings | None = None

    @classmethod
    def for_bucket(cls, s3: S3Settings) -> LakeLocation:
        """The configured bucket."""
        return cls(root=f"s3://{s3.bucket}", s3=s3)

    @classmethod
    def of(cls, root: str | None, s3: S3Settings) -> LakeLocation:
        """`root` (s3://bucket[/prefix] or a directory) if given, else the configured bucket."""
        return cls(root=root.rstrip("/"), s3=s3) if root else cls.for_bucket(s3)

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem and the base path inside it that keys are appended to."""
        parsed = urlparse(self.root)
        if parsed.scheme == "s3":
            if self.s3 is None:
                raise ValueError(f"{self.root} needs S3 settings")
            return s3_filesystem(self.s3), f"{parsed.netloc}{parsed.path}".rstrip("/")
        if parsed.scheme in ("", "file"):
            return pafs.LocalFileSystem(), parsed.path.rstrip("/") or "/"
        raise ValueError(f"unsupported lake root {self.root!r}: use s3://bucket or a local path")

    def url(self, key: str) -> str:
        """URL of `key` for readers given whole URLs (DuckDB: s3://bucket/key; local: the file path)."""
        return f"{self.root.rstrip('/')}/{key}"


def parquet_bytes(rows: pa.Table) -> pa.Buffer:
    """Rows encoded in memory as one Parquet object (PARQUET_COMPRESSION), ready for put_object."""
    sink = pa.BufferOutputStream()
    pq.write_table(rows, sink, compression=PARQUET_COMPRESSION)
    return sink.getvalue()


def put_object(filesystem: pafs.FileSystem, path: str, payload: bytes | pa.Buffer) -> None:
    """Write one whole object atomically: a single S3 PUT (or multipart completion); locally a rename."""
    if isinstance(filesystem, pafs.LocalFileSystem):
        parent = path.rsplit("/", 1)[0]
        filesystem.create_dir(parent, recursive=True)
        temporary = f"{parent}/.{path.rsplit('/', 1)[1]}.tmp"
        with filesystem.open_output_stream(temporary) as out:
            out.write(payload)
        filesystem.move(temporary, path)
        return
    with filesystem.open_output_stream(path) as out:
        out.write(payload)


def read_status(location: LakeLocation, attempts: int = 5) -> dict[str, Any]:
    """The streaming job's status object (`STATUS_KEY`), or {} if absent.

    pyarrow reads an object with a HEAD then ranged GETs, so a read racing the job's next PUT can mix two
    versions; such a read does not parse and is retried (the last failure is raised).
    """
    filesystem, base = location.filesystem()
    for attempt in range(attempts):
        try:
            with filesystem.open_input_stream(f"{base}/{STATUS_KEY}") as stream:
                loaded = json.loads(stream.read())
            return loaded if isinstance(loaded, dict) else {}
        except FileNotFoundError:
            return {}
        except ValueError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
    return {}


def s3_filesystem(s3: S3Settings) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem for the configured endpoint, keys and addressing style."""
    endpoint = urlparse(s3.endpoint_url) if s3.endpoint_url else None
    return pafs.S3FileSystem(
        access_key=s3.access_key_id,
        secret_key=s3.secret_access_key.get_secret_value(),
        region=s3.region,
        endpoint_override=endpoint.netloc if endpoint else None,
        scheme=endpoint.scheme if endpoint else "https",
        force_virtual_addressing=not s3.path_style,
        allow_bucket_creation=False,
        allow_bucket_deletion=False,
    )
