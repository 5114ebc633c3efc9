"""The dbt benchmark's day: ticks in the ticks table's schema, split into files as the stream writes them."""

from __future__ import annotations

import dbt_bench
import numpy as np

from tickstream.lake import BARS_1M, TICKS


def test_hour_ticks_are_in_their_hour_with_unique_keys() -> None:
    ticks = dbt_bench.hour_ticks(23, rate=2.0)
    assert ticks.schema == TICKS.schema
    assert ticks.num_rows == 7200
    ts = np.asarray(ticks.column("ts_us"))
    start_us = int(dbt_bench.DAY_START.timestamp() * 1_000_000) + 23 * dbt_bench.HOUR_US
    assert ts.min() >= start_us and ts.max() < start_us + dbt_bench.HOUR_US
    assert (np.asarray(ticks.column("event_time").cast("int64")) == ts).all()
    assert len(set(ticks.column("seq").to_pylist())) == ticks.num_rows
    assert dbt_bench.hour_ticks(23, rate=2.0).equals(ticks)  # the same day every run


def test_streamed_files_split_an_hour_by_batch_and_by_minute() -> None:
    ticks = dbt_bench.hour_ticks(5, rate=2.0)
    files = dbt_bench.streamed_files(TICKS, ticks, 5, 600 * 1_000_000)  # a 10-minute trigger
    assert [name for name, _ in files] == [f"05-{i:05d}" for i in range(6)]
    assert sum(rows.num_rows for _, rows in files) == ticks.num_rows
    bars = dbt_bench.bars_of(ticks)
    assert bars.schema == BARS_1M.schema
    minutes = dbt_bench.streamed_files(BARS_1M, bars, 5, dbt_bench.MINUTE_US)
    assert len(minutes) == 60
    assert all(len(set(rows.column("window_start").to_pylist())) == 1 for _, rows in minutes)
    assert dbt_bench.streamed_files(TICKS, ticks.slice(0, 0), 5, 1) == []
