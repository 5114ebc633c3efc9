"""Tests of the idempotent micro-batch writer on a local-directory lake."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame

from streaming.conftest import KAFKA_TS, KafkaRows
from streaming.transforms import PARTITION_TIME, TABLE, parse_ticks, route_ticks_batch
from streaming.writers import hour_groups, write_batch
from tickstream.contracts import encode_tick, make_tick
from tickstream.lake import LakeLocation

QUERY_ID = "0123abcd-0000-0000-0000-000000000000"


def _routed(kafka_rows: KafkaRows) -> DataFrame:
    """Ticks in two hours (09h, 10h) and two rejected records (Kafka time 09:30)."""
    ts_us = int(KAFKA_TS.timestamp() * 1_000_000)
    ticks = [
        make_tick("MSFT", 7, ts_us + 3_600_000_000, 400.0, 5, 399.9, 400.1),
        make_tick("AAPL", 1, ts_us, 1.5, 1, 1.4, 1.6),
    ]
    values = [encode_tick(ticks[0]), b"garbage", encode_tick(ticks[1]), b"[]"]
    return route_ticks_batch(parse_ticks(kafka_rows(values)))


def _objects(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def test_one_object_per_table_hour_and_task_named_by_epoch(kafka_rows: KafkaRows, tmp_path: Path) -> None:
    lake = LakeLocation(str(tmp_path))
    output = write_batch(_routed(kafka_rows).coalesce(1), lake, QUERY_ID, 42)
    assert sorted(o.key for o in output.objects) == [
        "quarantine/date=2024-03-01/hour=09/part-0123abcd-e000000000042-p000.parquet",
        "stream/_bar_partials/date=2024-03-01/hour=09/part-0123abcd-e000000000042-p000.parquet",
        "stream/_bar_partials/date=2024-03-01/hour=10/part-0123abcd-e000000000042-p000.parquet",
        "stream/ticks/date=2024-03-01/hour=09/part-0123abcd-e000000000042-p000.parquet",
        "stream/ticks/date=2024-03-01/hour=10/part-0123abcd-e000000000042-p000.parquet",
    ]
    assert output.rows("bar_partials") == 2  # one (symbol, minute) per tick here
    assert (output.rows("ticks"), output.rows("quarantine")) == (2, 2)
    assert dict(output.reasons()) == {"not_json": 1, "not_object": 1}
    quarantine = pq.read_table(tmp_path / output.objects[0].key)
    assert quarantine.column_names == [
        "raw_value",
        "reason",
        "detail",
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_ts",
    ]
    assert quarantine.column("kafka_offset").to_pylist() == [1, 3]  # sorted by Kafka coordinates
    assert all(o.bytes == (tmp_path / o.key).stat().st_size for o in output.objects)


def test_replayed_epoch_rewrites_identical_objects(kafka_rows: KafkaRows, tmp_path: Path) -> None:
    lake = LakeLocation(str(tmp_path))
    routed = _routed(kafka_rows).repartition(2, "kafka_offset")  # as a stateful operator partitions rows
    output = write_batch(routed, lake, QUERY_ID, 3)
    first = _objects(tmp_path)
    assert {o.key.rsplit("-", 1)[1] for o in output.objects} == {"p000.parquet", "p001.parquet"}
    assert (output.rows("ticks"), output.rows("quarantine")) == (2, 2)
    write_batch(routed, lake, QUERY_ID, 3)
    assert _objects(tmp_path) == first
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_batch_written_from_the_driver_is_one_object_per_table_hour(
    kafka_rows: KafkaRows, tmp_path: Path
) -> None:
    lake = LakeLocation(str(tmp_path))
    output = write_batch(
        _routed(kafka_rows).repartition(2, "kafka_offset"), lake, QUERY_ID, 5, in_driver=True
    )
    assert [o.key.rsplit("/", 1)[1] for o in output.objects] == ["part-0123abcd-e000000000005.parquet"] * 5
    assert (output.rows("ticks"), output.rows("quarantine"), dict(output.reasons())) == (
        2,
        2,
        {"not_json": 1, "not_object": 1},
    )


def test_empty_batch_writes_nothing(kafka_rows: KafkaRows, tmp_path: Path) -> None:
    output = write_batch(_routed(kafka_rows).limit(0), LakeLocation(str(tmp_path)), QUERY_ID, 0)
    assert output.objects == ()
    assert not _objects(tmp_path)


def test_hours_are_utc_hours_of_the_partition_time() -> None:
    moments = [-1, 0, 3_599_999_999, 3_600_000_000, 1_709_287_200_000_000]  # 1969, 1970 00h/01h, 2024
    rows = pa.table(
        {
            TABLE: ["ticks", "ticks", "ticks", "quarantine", "ticks"],
            PARTITION_TIME: pa.array(moments, pa.timestamp("us", tz="UTC")),
            "n": list(range(5)),
        }
    )
    groups = {(t, d, h): g["n"].to_pylist() for t, d, h, g in hour_groups(rows)}
    assert groups == {
        ("ticks", "1969-12-31", "23"): [0],
        ("ticks", "1970-01-01", "00"): [1, 2],
        ("quarantine", "1970-01-01", "01"): [3],
        ("ticks", "2024-03-01", "10"): [4],
    }
