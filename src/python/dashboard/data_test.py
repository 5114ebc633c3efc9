"""The dashboard's reads and rules without Streamlit pages, on Iceberg test lakes.

Bars are compared with `testkit.expected.expected_bars` (polars), a computation independent of
the dashboard's DuckDB SQL and its partial-bar merge.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dashboard.bars import TimeRange, combine_bars, empty_bars
from dashboard.conftest import BARS_UNTIL, FIXTURE_TICKS, NOW, at, fixture_status, objects_at
from dashboard.data import Sources, clear_caches
from dashboard.errors import SourceUnavailable
from dashboard.health import (
    compaction_check,
    consumer_lag,
    files_table,
    freshness_check,
    ingestion_check,
    ingestion_stopped,
    reads_kafka,
    streaming_checks,
)
from dashboard.lake_reader import Lake, bars_sql
from dashboard.settings import DashboardSettings
from dashboard.table_files import HourFiles, Rewrite, TableFiles
from dashboard.testing import DashboardLake, tick
from testkit.expected import expected_bars
from testkit.lake import TestLake
from tickstream import duckdb_lake
from tickstream.contracts import Tick, to_us
from tickstream.lake import BARS_1M, TICKS
from tickstream.settings import CatalogSettings, KafkaSettings, S3Settings

MINUTE = timedelta(minutes=1)


def lake_of(dashboard_lake: DashboardLake, **settings: Any) -> Lake:
    return Lake(
        DashboardSettings(lake_root=dashboard_lake.objects.root, **settings),
        dashboard_lake.lake.s3,
        dashboard_lake.lake.settings,
    )


def sources_of(dashboard_lake: DashboardLake) -> Sources:
    return Sources(
        DashboardSettings(lake_root=dashboard_lake.objects.root, now=NOW),
        dashboard_lake.lake.s3,
        dashboard_lake.lake.settings,
        KafkaSettings(bootstrap_servers="127.0.0.1:1"),
    )


def rows(bars: pl.DataFrame) -> list[tuple[Any, ...]]:
    """Bars as expected_bars' tuples (VWAP rounded: the two sides sum in different orders)."""
    return sorted(
        (
            r["symbol"],
            to_us(r["window_start"]),
            r["open"],
            r["high"],
            r["low"],
            r["close"],
            r["volume"],
            round(r["vwap"], 9),
            r["trade_count"],
        )
        for r in bars.iter_rows(named=True)
    )


def expected(ticks: list[Tick]) -> list[tuple[Any, ...]]:
    return [(*bar[:7], round(bar[7], 9), bar[8]) for bar in expected_bars(ticks)]


def random_ticks(start: datetime, minutes: int, seed: int = 7) -> list[Tick]:
    """Ticks of three symbols over `minutes`, with equal timestamps (ties broken by seq), shuffled."""
    generator = random.Random(seed)
    ticks = []
    for symbol in ("AAA", "BBB", "CCC"):
        for seq in range(1, 40 * minutes + 1):
            ts = to_us(start) + generator.randrange(minutes * 60) * 1_000_000  # whole seconds: many ties
            ticks.append(
                tick(symbol, seq, ts, round(generator.uniform(50, 150), 2), generator.randint(1, 900))
            )
    generator.shuffle(ticks)
    return ticks


# -- pure rules ------------------------------------------------------------------------------------------


def test_time_range_hours_cover_partial_hours() -> None:
    hours = TimeRange(
        datetime(2024, 3, 1, 9, 47, tzinfo=UTC), datetime(2024, 3, 1, 11, 0, tzinfo=UTC)
    ).hours()
    assert hours == [datetime(2024, 3, 1, 9, tzinfo=UTC), datetime(2024, 3, 1, 10, tzinfo=UTC)]


def test_only_the_ticks_query_has_a_consumer_lag() -> None:
    status = fixture_status()["queries"]
    assert reads_kafka(status["ticks"])
    assert not reads_kafka(status["bars_1m"])  # appended from the ticks table
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
            {**row, "window_start": minute + MINUTE, "trade_count": 2, "live": True},
        ],
        schema=empty_bars().schema,
    )
    bars = combine_bars(written, live, TimeRange(minute, minute + 5 * MINUTE))
    assert bars["trade_count"].to_list() == [1, 2]
    assert bars["live"].to_list() == [False, True]


def test_the_bars_entry_is_late_only_beyond_its_own_cadence() -> None:
    settings = DashboardSettings()  # fresh 30 s, bars every 60 s
    status = fixture_status(NOW - timedelta(seconds=80))
    checks = {c.name: c.state for c in streaming_checks(status, NOW, settings)}
    assert checks == {"Streaming bars_1m": "good", "Streaming query ticks": "late"}
    status = fixture_status(NOW - timedelta(seconds=100))
    assert {c.name: c.state for c in streaming_checks(status, NOW, settings)}["Streaming bars_1m"] == "late"
    status["queries"]["bars_1m"]["state"] = "failed"
    assert {c.name: c.state for c in streaming_checks(status, NOW, settings)}[
        "Streaming bars_1m"
    ] == "failing"


def test_ingestion_states_from_the_last_batch() -> None:
    settings = DashboardSettings()  # late and quarantined shares above 5 %: late
    status = fixture_status()
    ticks = status["queries"]["ticks"]
    assert ingestion_check(status, settings).state == "good"  # 1,480 of 1,500 stored, 17 late, 3 quarantined
    ticks.update(late=120)
    assert ingestion_check(status, settings).state == "late"  # 8 % late
    ticks.update(late=0, quarantined=100)
    assert ingestion_check(status, settings).state == "late"  # 7 % quarantined
    ticks.update(rows_written=0, quarantined=0, duplicates=1500)  # read, nothing stored
    stalled = ingestion_check(status, settings)
    assert (stalled.state, stalled.value) == ("failing", "stalled: 1,500 records read, none stored")
    assert ingestion_stopped([stalled, *streaming_checks(status, NOW, settings)]) == [stalled]
    ticks.update(input_rows=0)
    assert ingestion_check(status, settings).state == "good"  # an idle stream is not stalled
    assert ingestion_check({}, settings).state == "unknown"


def test_event_time_ahead_of_the_clock_is_failing() -> None:
    settings = DashboardSettings()  # more than 60 s ahead: failing
    ahead = freshness_check(NOW + timedelta(hours=20), NOW, settings)
    assert (ahead.state, ahead.value) == ("failing", "newest tick 72,000 s ahead of the clock")
    assert freshness_check(NOW + timedelta(seconds=30), NOW, settings).state == "good"
    assert ingestion_stopped([ahead]) == [ahead]


def hour_files(hour: datetime, commits: int, table: str = "ticks") -> HourFiles:
    return HourFiles(
        table,
        hour,
        files=commits * 2,
        commits=commits,
        rows=10,
        bytes=100,
        newest=None,
        added_by=frozenset(range(commits)),
    )


def test_compaction_states() -> None:
    now = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
    h = [datetime(2024, 3, 1, hour, tzinfo=UTC) for hour in range(7, 13)]

    def check(hours: list[HourFiles], rewrites: list[Rewrite] = []) -> tuple[str, str]:  # noqa: B006
        tables = [
            TableFiles(
                "ticks", hours, hours[0].hour if hours else None, hours[-1].hour if hours else None, rewrites
            )
        ]
        result = compaction_check(tables, now, late_hours=2.0)
        return result.state, result.value

    # A young lake: its first hour (11:00) is due only at 14:00.
    assert check([hour_files(h[4], 30), hour_files(h[5], 20)]) == ("pending", "no hour due yet")
    assert check([]) == ("pending", "no hour due yet")
    # 09:00 ended 2.5 h ago and still has 30 commits: late; 07:00 (ended 4.5 h ago): failing.
    assert check([hour_files(h[2], 30), hour_files(h[4], 30)])[0] == "late"
    assert check([hour_files(h[0], 9), hour_files(h[1], 1)])[0] == "failing"
    # Every due hour in one commit: good, whether the compaction snapshot is still retained or not.
    recent = Rewrite(now - timedelta(minutes=10), 1, files_before=60, files_after=1)
    assert check([hour_files(h[2], 1), hour_files(h[5], 40)], [recent]) == ("good", "10 min ago")
    assert check([hour_files(h[2], 1), hour_files(h[5], 40)]) == ("good", "closed hours compacted")


# -- reads of an Iceberg lake ------------------------------------------------------------------------------


def test_live_bars_equal_an_independent_computation(local_lake: TestLake, tmp_path: Path) -> None:
    dashboard_lake = DashboardLake(local_lake, objects_at(tmp_path))
    start = datetime(2024, 3, 1, 9, 58, tzinfo=UTC)
    ticks = random_ticks(start, minutes=4)
    for batch in range(4):  # four commits, each with ticks of every minute (files overlap in time)
        dashboard_lake.append_ticks(ticks[batch::4], batch)
    lake = lake_of(dashboard_lake)
    until = start + 4 * MINUTE
    assert rows(lake.live_bars(start, until)) == expected(ticks)
    assert rows(lake.live_bars(start + 2 * MINUTE, until)) == expected(
        [t for t in ticks if t["ts_us"] >= at(10, 0, 0)]
    )
    # The next refresh reads only the new commit's file; its ticks join minutes already summarised.
    more = random_ticks(start, minutes=4, seed=8)
    more = [tick(t["symbol"], t["seq"] + 10_000, t["ts_us"], t["price"], t["size"]) for t in more]
    dashboard_lake.append_ticks(more, 4)
    assert rows(lake.live_bars(start, until)) == expected(ticks + more)
    # A pinned clock inside a minute: ticks after it are left out until the clock passes them.
    middle = start + timedelta(minutes=3, seconds=20)
    assert rows(lake.live_bars(start, middle)) == expected(
        [t for t in ticks + more if t["ts_us"] < to_us(middle)]
    )
    assert rows(lake.live_bars(start, until)) == expected(ticks + more)


def test_written_bars_and_the_live_minute_equal_an_independent_computation(
    fixture_lake: DashboardLake,
) -> None:
    bars = sources_of(fixture_lake).bars(TimeRange.last(timedelta(minutes=15), NOW))
    assert rows(bars) == expected(FIXTURE_TICKS)
    live = bars.filter(pl.col("live"))
    assert live["window_start"].to_list() == [BARS_UNTIL] and live["symbol"].to_list() == ["AAA"]


def test_a_new_bars_commit_replaces_the_live_minute_at_once(fixture_lake: DashboardLake) -> None:
    sources = sources_of(fixture_lake)
    time_range = TimeRange.last(timedelta(minutes=15), NOW)
    assert sources.bars(time_range)["live"].sum() == 1
    fixture_lake.append_bars(t for t in FIXTURE_TICKS if t["ts_us"] >= at(10, 2, 0))
    bars = sources.bars(time_range)  # same refresh period: the new snapshot is a new cache key
    assert rows(bars) == expected(FIXTURE_TICKS) and bars["live"].sum() == 0


def test_a_day_view_reads_only_the_hours_of_its_range(local_lake: TestLake, tmp_path: Path) -> None:
    dashboard_lake = DashboardLake(local_lake, objects_at(tmp_path))
    ticks = [
        tick("AAA", i, at(7, 30, 0) + i * 3_600_000_000, 100.0 + i, 10) for i in range(4)
    ]  # 07:30 .. 10:30
    for one in ticks:
        dashboard_lake.append_bars([one])
    lake = lake_of(dashboard_lake)
    location = lake.metadata_location(BARS_1M)
    assert location is not None
    sql = bars_sql(duckdb_lake.iceberg_scan(location))
    params = {"start": datetime(2024, 3, 1, 9, tzinfo=UTC), "end": datetime(2024, 3, 1, 11, tzinfo=UTC)}
    plan = str(lake.query(f"EXPLAIN ANALYZE {sql}", params)["explain_value"][0])
    assert re.findall(r"Total Files Read: (\d+)", plan) == ["2"], plan
    assert sorted(lake.bars(location, **params)["close"].to_list()) == [102.0, 103.0]


def test_newest_tick_and_files_per_hour_from_the_metadata(fixture_lake: DashboardLake) -> None:
    lake = lake_of(fixture_lake)
    assert lake.newest(TICKS) == datetime(2024, 3, 1, 10, 2, 20, tzinfo=UTC)
    tables = [lake.table_files(table, datetime(2024, 3, 1, 5, tzinfo=UTC)) for table in (TICKS, BARS_1M)]
    closed_until = {"ticks": BARS_UNTIL, "bars_1m": BARS_UNTIL}
    table = files_table(tables, closed_until).to_dicts()
    assert [
        (r["table"], r["hour (UTC)"], r["files"], r["commits"], r["rows"], r["state"], r["rewritten from"])
        for r in table
    ] == [
        ("ticks", "2024-03-01 09:00", 1, 1, 3, "compacted", 2),  # two commits rewritten into one file
        ("ticks", "2024-03-01 10:00", 2, 2, 5, "open", None),
        ("bars_1m", "2024-03-01 09:00", 1, 1, 2, "compacted", None),
        ("bars_1m", "2024-03-01 10:00", 1, 1, 3, "open", None),
    ]
    assert sum(r["rows"] for r in table if r["table"] == "ticks") == len(fixture_lake.lake.read(TICKS))
    # Compacting hour 10 too keeps the newest tick, now from the rewritten file's bounds.
    assert fixture_lake.compact_hour(TICKS, datetime(2024, 3, 1, 10, tzinfo=UTC)) == 2
    assert lake.newest(TICKS) == datetime(2024, 3, 1, 10, 2, 20, tzinfo=UTC)
    assert [h.files for h in lake.table_files(TICKS, datetime(2024, 3, 1, 5, tzinfo=UTC)).hours] == [1, 1]


def test_hours_are_cached_as_closed_only_behind_the_bars_watermark(fixture_lake: DashboardLake) -> None:
    sources = sources_of(fixture_lake)
    assert sources.bars_closed_until() == BARS_UNTIL
    fixture_lake.write_status({"queries": {"bars_1m": {"watermark": "2024-03-01T09:58:00.000Z"}}})
    clear_caches()
    assert sources.bars_closed_until() == datetime(2024, 3, 1, 9, 58, tzinfo=UTC)
    assert sources.closed_until() == {
        "bars_1m": datetime(2024, 3, 1, 9, 58, tzinfo=UTC),
        "ticks": NOW - timedelta(minutes=5),
    }


def test_tables_on_an_unreachable_s3_are_unavailable_not_empty(fixture_lake: DashboardLake) -> None:
    """The catalog answers, but its tables' files are on an S3 endpoint nobody listens on."""
    catalog = fixture_lake.lake.catalog
    with catalog.engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE iceberg_tables "
            "SET metadata_location = 's3://tickstream-lake/gone/' || table_name || '.metadata.json'"
        )
    lake = Lake(
        DashboardSettings(lake_root=fixture_lake.objects.root),
        S3Settings(endpoint_url="http://127.0.0.1:1"),
        CatalogSettings(uri=fixture_lake.lake.settings.uri, warehouse="s3://tickstream-lake/gone"),
    )
    location = lake.metadata_location(BARS_1M)
    assert location is not None
    with pytest.raises(SourceUnavailable):
        lake.bars(location, NOW - timedelta(hours=1), NOW)
    with pytest.raises(SourceUnavailable):
        lake.newest(TICKS)
    with pytest.raises(SourceUnavailable):
        lake.live_bars(NOW - MINUTE, NOW)
