"""Tests of the lake layout helpers: deterministic object names and partition values."""

from __future__ import annotations

import pytest

from tickstream.lake import BARS_1M, TICKS, LakeLocation, date_hour, epoch_of, object_key, object_name

QUERY_ID = "8a04952a-1370-4d47-a976-c0c4423c8dcf"


def test_object_name_depends_only_on_query_id_and_epoch() -> None:
    assert object_name(QUERY_ID, 7) == "part-8a04952a-e000000000007.parquet"
    assert object_name(QUERY_ID, 7) == object_name(QUERY_ID.upper(), 7)


def test_object_key_is_hive_partitioned() -> None:
    key = object_key(TICKS, "2024-03-01", "09", QUERY_ID, 12)
    assert key == "stream/ticks/date=2024-03-01/hour=09/part-8a04952a-e000000000012.parquet"
    assert object_key(BARS_1M, "2024-03-01", "09", QUERY_ID, 12).startswith("stream/bars_1m/date=")
    assert epoch_of(key) == 12
    assert epoch_of("compacted/ticks/date=2024-03-01/hour=09/run-1/part-0.parquet") is None


@pytest.mark.parametrize(("query_id", "epoch"), [("not-a-uuid", 1), (QUERY_ID, -1)])
def test_object_name_rejects_bad_input(query_id: str, epoch: int) -> None:
    with pytest.raises(ValueError):
        object_name(query_id, epoch)


def test_date_hour_is_utc() -> None:
    assert date_hour(1_709_283_600_000_000) == ("2024-03-01", "09")  # 2024-03-01T09:00:00Z


def test_local_lake_location(tmp_path) -> None:
    filesystem, base = LakeLocation(str(tmp_path)).filesystem()
    assert base == str(tmp_path)
    assert LakeLocation(str(tmp_path)).path("a/b") == f"{tmp_path}/a/b"
    with pytest.raises(ValueError):
        LakeLocation("s3://bucket").filesystem()
