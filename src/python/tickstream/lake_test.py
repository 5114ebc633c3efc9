"""Tests of the lake's tables in code and their Iceberg form: schemas, hidden partitioning, sort orders,
creation through the catalog, and what every engine reads back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.transforms import HourTransform

from testkit.lake import TestLake, tick_rows
from tickstream.catalog import (
    TABLE_PROPERTIES,
    ensure_tables,
    iceberg_schema,
    jdbc_catalog_properties,
    load_table,
    metadata_location,
    partition_spec,
    sort_order,
    sqlalchemy_url,
)
from tickstream.contracts import FIELD_NAMES, make_tick
from tickstream.duckdb_lake import connect, iceberg_scan
from tickstream.lake import (
    BARS_1M,
    QUARANTINE,
    TABLES,
    TICKS,
    LakeLocation,
    hour_starts,
    lake_table,
    put_object,
    read_status,
)
from tickstream.settings import CatalogSettings


def test_ticks_columns_are_the_contracts_plus_lineage_and_event_time() -> None:
    assert TICKS.columns == (*FIELD_NAMES, "kafka_partition", "kafka_offset", "event_time", "kafka_ts")
    assert TICKS.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    for table in TABLES.values():
        assert set(table.sort_keys) <= set(table.columns)
        assert pa.types.is_timestamp(table.schema.field(table.partition_column).type)
    assert lake_table("bars_1m") is BARS_1M
    with pytest.raises(ValueError, match="choose from ticks, bars_1m, quarantine"):
        lake_table("candles")


def test_iceberg_form_of_each_table() -> None:
    for table in TABLES.values():
        schema = iceberg_schema(table)
        assert [f.name for f in schema.fields] == list(table.columns)
        assert [f.field_id for f in schema.fields] == list(range(1, len(table.columns) + 1))
        (field,) = partition_spec(table).fields
        assert isinstance(field.transform, HourTransform)
        assert schema.find_field(field.source_id).name == table.partition_column
        assert [schema.find_field(f.source_id).name for f in sort_order(table).fields] == list(
            table.sort_keys
        )
    assert TABLE_PROPERTIES["write.parquet.compression-codec"] == "zstd"


def test_jdbc_properties_reach_the_same_database() -> None:
    sqlite = CatalogSettings(uri="sqlite:////var/lib/catalog.db", warehouse="s3://b/w")
    assert jdbc_catalog_properties(sqlite)["uri"] == "jdbc:sqlite:/var/lib/catalog.db"
    postgres = CatalogSettings(uri="postgresql://cat:s3cret@db:5433/iceberg", warehouse="s3://b/w")
    assert jdbc_catalog_properties(postgres) == {
        "uri": "jdbc:postgresql://db:5433/iceberg",
        "jdbc.user": "cat",
        "jdbc.password": "s3cret",
        "jdbc.schema-version": "V1",
    }
    with pytest.raises(ValueError, match="use sqlite or postgresql"):
        jdbc_catalog_properties(CatalogSettings(uri="mysql://db/x", warehouse="s3://b/w"))


def test_tables_are_created_once_and_read_alike_by_pyiceberg_and_duckdb(local_lake: TestLake) -> None:
    lake = local_lake
    assert ensure_tables(lake.catalog, lake.settings) == []  # the fixture created them: idempotent
    assert {name for _, name in lake.catalog.list_tables(lake.settings.namespace)} == set(TABLES)
    assert load_table(lake.catalog, lake.settings, QUARANTINE).sort_order().fields  # as declared
    empty = metadata_location(lake.catalog, lake.settings, TICKS)
    assert empty is not None and metadata_location(lake.catalog, lake.settings, "nope") is None

    t0 = int(datetime(2024, 3, 1, 9, 59, 30, tzinfo=UTC).timestamp() * 1_000_000)
    ticks = [make_tick("AAPL", i, t0 + i * 20_000_000, 100.0 + i, 10, 99.9 + i, 100.1 + i) for i in range(4)]
    lake.append(TICKS, tick_rows(ticks))  # 09:59:30 .. 10:00:30: two hours
    location = metadata_location(lake.catalog, lake.settings, TICKS)
    assert location is not None and location != empty
    with connect(None) as con:
        assert con.execute(f"SELECT count(*) FROM {iceberg_scan(empty)}").fetchall() == [(0,)]
        rows = con.execute(
            f"SELECT seq, ts_us, epoch_us(event_time) FROM {iceberg_scan(location)} ORDER BY seq"
        ).fetchall()
    assert rows == [(t["seq"], t["ts_us"], t["ts_us"]) for t in ticks]
    assert sorted(lake.read(TICKS)["seq"].to_pylist()) == [0, 1, 2, 3]
    files = load_table(lake.catalog, lake.settings, TICKS).inspect.files()
    assert (
        len({p["event_time_hour"] for p in files["partition"].to_pylist()}) == 2
    )  # hidden hourly partitions


def test_a_table_of_an_older_schema_gains_the_new_columns(local_lake: TestLake) -> None:
    lake = local_lake
    ticks = load_table(lake.catalog, lake.settings, TICKS)
    with ticks.update_schema() as update:
        update.delete_column("kafka_ts")  # as the ticks table was before it kept the arrival time
    assert "kafka_ts" not in load_table(lake.catalog, lake.settings, TICKS).schema().column_names
    assert ensure_tables(lake.catalog, lake.settings) == []
    assert tuple(load_table(lake.catalog, lake.settings, TICKS).schema().column_names) == TICKS.columns
    assert ensure_tables(lake.catalog, lake.settings) == []  # nothing left to add


def test_hour_starts_are_utc_hours() -> None:
    start = datetime(2024, 3, 1, 22, 30, tzinfo=UTC)
    assert hour_starts(start, datetime(2024, 3, 2, 0, 30, tzinfo=UTC)) == [
        datetime(2024, 3, 1, 22, tzinfo=UTC),
        datetime(2024, 3, 1, 23, tzinfo=UTC),
        datetime(2024, 3, 2, 0, tzinfo=UTC),
    ]


def test_status_object_round_trip_on_a_local_location(tmp_path: Path) -> None:
    location = LakeLocation(str(tmp_path))
    assert read_status(location) == {}
    filesystem, base = location.filesystem()
    put_object(filesystem, f"{base}/_status/streaming.json", b'{"queries": {}}')
    assert read_status(location) == {"queries": {}}
    assert not list(tmp_path.rglob(".*.tmp"))  # written through a rename
    with pytest.raises(ValueError, match="unsupported lake root"):
        LakeLocation("ftp://x").filesystem()


def test_a_bare_postgresql_url_uses_the_installed_driver() -> None:
    assert (
        sqlalchemy_url("postgresql://cat:pw@db:5432/iceberg")
        == "postgresql+psycopg2://cat:pw@db:5432/iceberg"
    )
    assert sqlalchemy_url("sqlite:////tmp/c.db") == "sqlite:////tmp/c.db"
