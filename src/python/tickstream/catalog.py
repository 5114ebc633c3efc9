"""The lake's Iceberg catalog from Python (pyiceberg): open it, create the tables, find a table's metadata.

The catalog is Iceberg's JDBC catalog (docs/lake.md): a database (SQLite locally, PostgreSQL in
deployment) whose `iceberg_tables` row for a table holds the location of its current metadata file. A
commit is one conditional UPDATE of that row, so any number of writers (the streaming job, the compaction
job, a rebuild) commit atomically. Spark talks to the same database through Iceberg's `JdbcCatalog`
(`jdbc_catalog_properties`); Python through pyiceberg's `SqlCatalog`, which shares the layout.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import HourTransform, IdentityTransform
from pyiceberg.types import (
    BinaryType,
    DecimalType,
    DoubleType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from tickstream.lake import TABLES, LakeTable
from tickstream.settings import CatalogSettings, S3Settings

TABLE_PROPERTIES: dict[str, str] = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    # Every commit writes a new metadata file. A reader pins one for as long as it runs (a dbt run reads the
    # same snapshot in every model), so keep the newest 1000 (about half an hour of streaming commits) and
    # delete older ones as new commits come. Snapshots expire separately (stream and hourly maintenance).
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "1000",
    # The streaming job and maintenance commit to the same tables: retry a conflicting commit.
    "commit.retry.num-retries": "20",
    "commit.retry.min-wait-ms": "50",
    # Streaming batches are written as they are partitioned, without a shuffle by partition first.
    "write.distribution-mode": "none",
    "write.spark.fanout.enabled": "true",
}
"""Properties every lake table is created with."""
SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite catalog connection waits for another writer's lock before failing."""


def _iceberg_type(arrow: pa.DataType) -> IcebergType:
    if pa.types.is_string(arrow):
        return StringType()
    if pa.types.is_binary(arrow):
        return BinaryType()
    if pa.types.is_int32(arrow):
        return IntegerType()
    if pa.types.is_int64(arrow):
        return LongType()
    if pa.types.is_float64(arrow):
        return DoubleType()
    if pa.types.is_decimal(arrow):
        return DecimalType(arrow.precision, arrow.scale)
    if pa.types.is_timestamp(arrow) and arrow.unit == "us" and arrow.tz in ("UTC", "+00:00"):
        return TimestamptzType()
    raise TypeError(f"no Iceberg type for the lake's Arrow type {arrow}")


def iceberg_schema(table: LakeTable) -> Schema:
    """The table's Iceberg schema: its Arrow columns in order, field ids 1..n, all nullable."""
    return Schema(
        *[
            NestedField(field_id=i, name=field.name, field_type=_iceberg_type(field.type), required=False)
            for i, field in enumerate(table.schema, start=1)
        ]
    )


def partition_spec(table: LakeTable) -> PartitionSpec:
    """Hidden partitioning by the UTC hour of the table's partition column."""
    source = iceberg_schema(table).find_field(table.partition_column)
    return PartitionSpec(
        PartitionField(
            source_id=source.field_id,
            field_id=1000,
            transform=HourTransform(),
            name=f"{table.partition_column}_hour",
        )
    )


def sort_order(table: LakeTable) -> SortOrder:
    """The table's sort order (ascending, nulls first) over its sort keys."""
    schema = iceberg_schema(table)
    return SortOrder(
        *[
            SortField(source_id=schema.find_field(key).field_id, transform=IdentityTransform())
            for key in table.sort_keys
        ]
    )


def s3_file_io_properties(s3: S3Settings) -> dict[str, str]:
    """pyiceberg's S3 FileIO settings for the configured endpoint and keys."""
    properties = {
        "s3.access-key-id": s3.access_key_id,
        "s3.secret-access-key": s3.secret_access_key.get_secret_value(),
        "s3.region": s3.region,
        "s3.force-virtual-addressing": str(not s3.path_style).lower(),
    }
    if s3.endpoint_url:
        properties["s3.endpoint"] = s3.endpoint_url
    return properties


def sqlalchemy_url(uri: str) -> str:
    """The catalog URL with its SQLAlchemy driver: a bare postgresql:// means psycopg2 (installed here)."""
    url = make_url(uri)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    return url.render_as_string(hide_password=False)


def open_catalog(settings: CatalogSettings, s3: S3Settings) -> SqlCatalog:
    """The lake's catalog through pyiceberg (creates the catalog's own tables in an empty database)."""
    url = make_url(settings.uri)
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog(
        settings.name,
        uri=sqlalchemy_url(settings.uri),
        warehouse=settings.warehouse,
        **s3_file_io_properties(s3),
    )
    if url.get_backend_name() == "sqlite":
        with catalog.engine.connect() as connection:
            # Readers never wait for the writer, and the setting stays in the file for every client.
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    return catalog


def ensure_tables(catalog: SqlCatalog, settings: CatalogSettings) -> list[str]:
    """Create the namespace and every lake table not there yet, and add the columns an older table lacks
    (idempotent, additive schema evolution); return the tables created."""
    catalog.create_namespace_if_not_exists(settings.namespace)
    existing = {name for _, name in catalog.list_tables(settings.namespace)}
    created = []
    for table in TABLES.values():
        if table.name in existing:
            add_missing_columns(load_table(catalog, settings, table), table)
            continue
        catalog.create_table_if_not_exists(
            settings.identifier(table.name),
            schema=iceberg_schema(table),
            partition_spec=partition_spec(table),
            sort_order=sort_order(table),
            properties=TABLE_PROPERTIES,
        )
        created.append(table.name)
    return created


def add_missing_columns(iceberg: Table, table: LakeTable) -> list[str]:
    """Add the columns of `table` that the Iceberg table lacks, at the end (older rows read them as NULL)."""
    present = set(iceberg.schema().column_names)
    missing = [field for field in table.schema if field.name not in present]
    if missing:
        with iceberg.update_schema() as update:
            for field in missing:
                update.add_column(field.name, _iceberg_type(field.type))
    return [field.name for field in missing]


def load_table(catalog: SqlCatalog, settings: CatalogSettings, table: str | LakeTable) -> Table:
    """One lake table through pyiceberg."""
    name = table if isinstance(table, str) else table.name
    return catalog.load_table(settings.identifier(name))


def metadata_location(catalog: SqlCatalog, settings: CatalogSettings, table: str | LakeTable) -> str | None:
    """The location of a table's current metadata file, or None if the table does not exist.

    One indexed SELECT of the catalog row (no metadata file is read): what a reader pins for a consistent
    snapshot, e.g. DuckDB's `iceberg_scan(<location>)`.
    """
    name = table if isinstance(table, str) else table.name
    query = select(IcebergTables.metadata_location).where(
        IcebergTables.catalog_name == settings.name,
        IcebergTables.table_namespace == settings.namespace,
        IcebergTables.table_name == name,
    )
    with Session(catalog.engine) as session:
        return session.execute(query).scalar_one_or_none()


def jdbc_catalog_properties(settings: CatalogSettings) -> dict[str, str]:
    """Iceberg JdbcCatalog properties (for Spark) reaching the same database as `settings.uri`."""
    url = make_url(settings.uri)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return {
            "uri": f"jdbc:sqlite:{url.database}",
            "jdbc.busy_timeout": str(SQLITE_BUSY_TIMEOUT_MS),
            "jdbc.schema-version": "V1",
        }
    if backend == "postgresql":
        properties = {
            "uri": f"jdbc:postgresql://{url.host}:{url.port or 5432}/{url.database}",
            "jdbc.schema-version": "V1",
        }
        if url.username:
            properties["jdbc.user"] = url.username
        if url.password:
            properties["jdbc.password"] = url.password
        return properties
    raise ValueError(
        f"unsupported catalog database {backend!r} in TICKSTREAM_CATALOG_URI: use sqlite or postgresql"
    )
