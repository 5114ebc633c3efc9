"""Tests of the lake layout helpers: deterministic object names and partition values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tickstream.lake import (
    BARS_1M,
    TICKS,
    LakeLocation,
    LakeObject,
    Manifest,
    committed_hour,
    committed_objects,
    committed_objects_between,
    compacted_dir,
    date_hour,
    epoch_of,
    keys_fingerprint,
    object_key,
    object_name,
    read_manifest,
    write_manifest,
)

QUERY_ID = "8a04952a-1370-4d47-a976-c0c4423c8dcf"


def test_object_name_depends_only_on_query_id_epoch_and_task() -> None:
    assert object_name(QUERY_ID, 7) == "part-8a04952a-e000000000007.parquet"
    assert object_name(QUERY_ID, 7, 3) == "part-8a04952a-e000000000007-p003.parquet"
    assert object_name(QUERY_ID, 7) == object_name(QUERY_ID.upper(), 7)
    assert epoch_of(f"stream/ticks/date=2024-03-01/hour=09/{object_name(QUERY_ID, 7, 3)}") == 7


def test_object_key_is_hive_partitioned() -> None:
    key = object_key(TICKS, "2024-03-01", "09", QUERY_ID, 12)
    assert key == "stream/ticks/date=2024-03-01/hour=09/part-8a04952a-e000000000012.parquet"
    assert object_key(BARS_1M, "2024-03-01", "09", QUERY_ID, 12).startswith("stream/bars_1m/date=")
    assert epoch_of(key) == 12
    assert epoch_of("compacted/ticks/date=2024-03-01/hour=09/run-1/part-0.parquet") is None


@pytest.mark.parametrize(
    ("query_id", "epoch", "task"), [("not-a-uuid", 1, None), (QUERY_ID, -1, None), (QUERY_ID, 1, 1000)]
)
def test_object_name_rejects_bad_input(query_id: str, epoch: int, task: int | None) -> None:
    with pytest.raises(ValueError):
        object_name(query_id, epoch, task)


def test_date_hour_is_utc() -> None:
    assert date_hour(1_709_283_600_000_000) == ("2024-03-01", "09")  # 2024-03-01T09:00:00Z


def test_local_lake_location(tmp_path) -> None:
    filesystem, base = LakeLocation(str(tmp_path)).filesystem()
    assert base == str(tmp_path)
    assert LakeLocation(str(tmp_path)).path("a/b") == f"{tmp_path}/a/b"
    with pytest.raises(ValueError):
        LakeLocation("s3://bucket").filesystem()


def _put_stream_object(location: LakeLocation, epoch: int, hour: str = "09") -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    key = object_key(TICKS, "2024-03-01", hour, QUERY_ID, epoch)
    path = Path(location.path(key))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"seq": [epoch]}), path)
    return key


def test_reader_rule_stream_then_manifest_then_late_objects(tmp_path: Path) -> None:
    location = LakeLocation(str(tmp_path))
    assert committed_objects(location, "ticks", "2024-03-01", "09") == []
    stream = [_put_stream_object(location, epoch) for epoch in range(3)]
    Path(location.path("stream/ticks/date=2024-03-01/hour=09/notes.txt")).write_text("not an object")
    assert committed_objects(location, TICKS, "2024-03-01", "09") == stream

    compacted = LakeObject("compacted/ticks/date=2024-03-01/hour=09/r1/part-00000.parquet", 10, 3)
    manifest = Manifest(
        "ticks", "2024-03-01", "09", "r1", "2024-03-01T10:10:00.000Z", (compacted,), 3, {}, tuple(stream)
    )
    assert write_manifest(location, manifest) == "_manifests/compacted/ticks/date=2024-03-01/hour=09.json"
    assert read_manifest(location, TICKS, "2024-03-01", "09") == manifest
    assert committed_objects(location, TICKS, "2024-03-01", "09") == [compacted.key]

    late = _put_stream_object(location, 7)
    assert committed_objects(location, TICKS, "2024-03-01", "09") == [compacted.key, late]
    assert committed_hour(location, TICKS, "2024-03-01", "09").manifest == manifest

    other = _put_stream_object(location, 8, hour="10")
    assert committed_objects_between(
        location, TICKS, datetime(2024, 3, 1, 9, 30, tzinfo=UTC), datetime(2024, 3, 1, 11, tzinfo=UTC)
    ) == [compacted.key, late, other]


def test_manifest_json_round_trip_and_fingerprint() -> None:
    manifest = Manifest("bars_1m", "2024-03-01", "09", "r2", "t", (), 0, {"rows": "0"}, ("b", "a"))
    assert Manifest.from_json(manifest.to_json()) == Manifest(
        "bars_1m", "2024-03-01", "09", "r2", "t", (), 0, {"rows": "0"}, ("a", "b")
    )
    assert manifest.replaced_fingerprint == keys_fingerprint(["a", "b", "a"])
    with pytest.raises(ValueError):
        Manifest.from_json(b'{"version": 99}')
    with pytest.raises(ValueError):
        compacted_dir(TICKS, "2024-03-01", "09", "../escape")
