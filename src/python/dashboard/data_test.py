"""dashboard.data without Streamlit pages: time ranges, Kafka lag, the live edge, the reader rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from dashboard.conftest import NOW, build_fixture_lake
from dashboard.data import (
    Lake,
    Sources,
    TimeRange,
    clear_caches,
    combine_bars,
    consumer_lag,
    empty_bars,
    from_us,
    reads_kafka,
)
from dashboard.settings import DashboardSettings
from dashboard.testing import compact_hour, write_status
from tickstream.lake import BARS_1M, TICKS, LakeLocation
from tickstream.settings import KafkaSettings, S3Settings


def test_time_range_hours_cover_partial_hours() -> None:
    hours = TimeRange(
        datetime(2024, 3, 1, 9, 47, tzinfo=UTC), datetime(2024, 3, 1, 11, 0, tzinfo=UTC)
    ).hours()
    assert hours == [datetime(2024, 3, 1, 9, tzinfo=UTC), datetime(2024, 3, 1, 10, tzinfo=UTC)]


def test_only_queries_reading_kafka_have_a_consumer_lag() -> None:
    assert reads_kafka({"source": "KafkaV2[Subscribe[ticks]]"})
    assert not reads_kafka({"source": "FileStreamSource[s3a://lake/stream/_bar_partials]"})
    assert reads_kafka({"end_offsets": {"ticks": {"0": 1}}})  # a status object from before `source`


def test_consumer_lag_per_partition() -> None:
    processed = {"ticks": {"0": 1234, "1": 987}}
    assert consumer_lag({0: 1300, 1: 987, 2: 50}, processed, "ticks") == {0: 66, 1: 0, 2: 50}
    assert consumer_lag({0: 10}, None, "ticks") == {0: 10}


def test_live_bars_only_after_the_newest_written_bar() -> None:
    minute = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    row = {"symbol": "AAA", "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1, "vwap": 1.0}
    written = pl.DataFrame(
        [{**row, "window_start": minute, "trade_count": 1, "live": False}], schema=empty_bars().schema
    )
    live = pl.DataFrame(
        [
            {**row, "window_start": minute, "trade_count": 9, "live": True},
            {**row, "window_start": minute + timedelta(minutes=1), "trade_count": 2, "live": True},
        ],
        schema=empty_bars().schema,
    )
    bars = combine_bars(written, live, TimeRange(minute, minute + timedelta(minutes=5)))
    assert bars["trade_count"].to_list() == [1, 2]
    assert bars["live"].to_list() == [False, True]


def lake_at(root: Path) -> Lake:
    return Lake(DashboardSettings(lake_root=str(root), now=NOW), S3Settings())


def test_reader_rule_reads_a_compacted_hour_once(tmp_path: Path) -> None:
    location = LakeLocation(root=str(tmp_path))
    build_fixture_lake(location)
    lake = lake_at(tmp_path)
    hour = datetime(2024, 3, 1, 9, tzinfo=UTC)
    bars = lake.bars([hour])
    assert bars.filter(pl.col("symbol") == "AAA")["volume"].to_list() == [40]  # not 80: one copy
    assert any("/compacted/" in url for url in lake.objects(BARS_1M, [hour]))


def test_newest_tick_in_a_fully_compacted_hour(tmp_path: Path) -> None:
    location = LakeLocation(root=str(tmp_path))
    build_fixture_lake(location)
    compact_hour(location, TICKS, "2024-03-01", "10")
    for path in (tmp_path / "stream" / "ticks" / "date=2024-03-01" / "hour=10").iterdir():
        path.unlink()  # the compaction job's grace period is over
    assert from_us(lake_at(tmp_path).newest_tick_us()) == datetime(2024, 3, 1, 10, 2, 20, tzinfo=UTC)


@pytest.mark.parametrize("root", ["", "s3://tickstream-lake/some/prefix"])
def test_s3_lake_urls(root: str) -> None:
    lake = Lake(DashboardSettings(lake_root=root), S3Settings(endpoint_url="http://127.0.0.1:1"))
    assert lake.is_s3
    assert lake.location.url("stream/ticks/x.parquet").startswith("s3://tickstream-lake/")


def test_hours_are_cached_as_closed_only_behind_the_bars_watermark(fixture_lake: Path) -> None:
    sources = Sources(DashboardSettings(), S3Settings(), KafkaSettings())
    assert sources.bars_closed_until() == NOW  # the fixture status' watermark
    status = {"queries": {"bars_1m": {"watermark": "2024-03-01T09:58:00.000Z"}}}
    write_status(LakeLocation(root=str(fixture_lake)), status)
    clear_caches()
    assert sources.bars_closed_until() == datetime(2024, 3, 1, 9, 58, tzinfo=UTC)
