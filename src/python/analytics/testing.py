"""Fixture lakes for the dbt tests, and the marts they must give, computed independently with polars.

A fixture lake is a `testkit.lake.TestLake` (a private Iceberg catalog and warehouse): ticks are
appended as the streaming job commits them (one snapshot per micro-batch, late ticks in later commits),
an hour is compacted by rewriting its files in one commit, and the 1-minute bars are those of
`testkit.expected.expected_bars`. The expectations below never use DuckDB or dbt: they are a
second implementation of the marts' definitions (docs/analytics.md), for tests to compare against.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest

from testkit.expected import expected_bar_table, expected_bars
from testkit.lake import TestLake, tick_rows
from tickstream.contracts import Tick, make_tick
from tickstream.lake import BARS_1M, TICKS

MINUTE_US = 60_000_000
HOUR_US = 3_600_000_000
SPREAD = 1e-4
"""Fixture quotes are price -/+ 1 bp: a spread of 2 bps of the mid price."""


def ts_us(moment: str) -> int:
    """Microseconds since the epoch of an ISO UTC timestamp, e.g. '2024-03-01T09:00:30'."""
    return int(datetime.fromisoformat(moment).replace(tzinfo=UTC).timestamp() * 1_000_000)


def tick(symbol: str, seq: int, moment: str | int, price: float, size: int) -> Tick:
    """A valid tick at `moment` (ISO UTC or µs) whose quote is price -/+ 1 bp."""
    at = moment if isinstance(moment, int) else ts_us(moment)
    return make_tick(symbol, seq, at, price, size, price * (1 - SPREAD), price * (1 + SPREAD))


def append_ticks(lake: TestLake, ticks: Sequence[Tick], first_offset: int = 0) -> None:
    """One streaming micro-batch of ticks: one commit to the ticks table."""
    lake.append(TICKS, tick_rows(ticks, first_offset=first_offset))


# --- the hand-checked fixture --------------------------------------------------------------------------

FIXTURE_COMMITS: dict[str, list[Tick]] = {
    # 2024-03-01 hour 09, compacted after e2
    "e1": [
        tick("AAPL", 1, "2024-03-01T09:00:00", 100.0, 10),
        tick("AAPL", 2, "2024-03-01T09:00:30", 102.0, 20),
        tick("MSFT", 1, "2024-03-01T09:00:00", 400.0, 5),
        tick("MSFT", 2, "2024-03-01T09:00:00", 401.0, 5),  # same ts_us as seq 1: seq decides the open
    ],
    # one tick in hour 09, one in hour 10
    "e2": [
        tick("AAPL", 3, "2024-03-01T09:01:10", 99.0, 10),
        tick("AAPL", 4, "2024-03-01T10:00:05", 101.0, 30),
    ],
    "e3": [tick("AAPL", 5, "2024-03-01T10:59:59", 103.0, 10)],
    # a late tick of hour 09, committed after the hour was compacted
    "e4": [tick("MSFT", 3, "2024-03-01T09:30:00", 402.0, 10)],
    # 2024-03-02 hour 00
    "e5": [
        tick("AAPL", 6, "2024-03-02T00:00:10", 123.6, 10),
        tick("MSFT", 4, "2024-03-02T00:00:10", 394.0, 10),
    ],
}
"""The hand-checked fixture (dbt_project_test.py has the expected marts), by commit."""


def build_fixture_lake(lake: TestLake) -> list[Tick]:
    """The hand-checked fixture lake; returns its ticks.

    Ticks: e1..e3 committed one by one, hour 2024-03-01T09 then compacted (its files rewritten into one),
    e4 (late, into the compacted hour) and e5 appended after. Bars: 2024-03-01's, then 2024-03-02's.
    """
    offset = 0
    for name in ("e1", "e2", "e3"):
        append_ticks(lake, FIXTURE_COMMITS[name], first_offset=offset)
        offset += len(FIXTURE_COMMITS[name])
    lake.compact_hour(TICKS, datetime(2024, 3, 1, 9, tzinfo=UTC))
    for name in ("e4", "e5"):
        append_ticks(lake, FIXTURE_COMMITS[name], first_offset=offset)
        offset += len(FIXTURE_COMMITS[name])
    ticks = [t for commit in FIXTURE_COMMITS.values() for t in commit]
    for day in ("2024-03-01", "2024-03-02"):
        lake.append(BARS_1M, expected_bar_table([t for t in ticks if utc_date(t["ts_us"]) == day]))
    return ticks


# --- a generated lake ----------------------------------------------------------------------------------


def random_ticks(seed: int, symbols: Sequence[str], first_hour: str, hours: int, per_hour: int) -> list[Tick]:
    """Seeded random ticks: `per_hour` per symbol and hour over `hours` hours from `first_hour`.

    Prices are whole cents from a random walk, sizes 1..500, and about one tick in ten shares its ts_us
    with the previous tick of its symbol (seq breaks the tie). Sorted by (symbol, seq).
    """
    rng = random.Random(seed)
    start = ts_us(first_hour)
    ticks: list[Tick] = []
    for symbol in symbols:
        price = rng.uniform(20, 500)
        times = sorted(start + rng.randrange(hours * HOUR_US) for _ in range(hours * per_hour))
        for seq, at in enumerate(times, start=1):
            if seq > 1 and rng.random() < 0.1:
                at = ticks[-1]["ts_us"]
            price = max(1.0, price * math.exp(rng.gauss(0, 0.002)))
            ticks.append(tick(symbol, seq, at, round(price, 2), rng.randint(1, 500)))
    return ticks


def build_random_lake(lake: TestLake, ticks: Sequence[Tick], batch: int, seed: int) -> None:
    """Commit `ticks` in batches of `batch` in a shuffled arrival order (late ticks land in later commits,
    in hours already committed), compact every second hour, and append the bars of each day."""
    arrival = list(ticks)
    random.Random(seed).shuffle(arrival)
    for first in range(0, len(arrival), batch):
        append_ticks(lake, arrival[first : first + batch], first_offset=first)
    hours = sorted({t["ts_us"] // HOUR_US * HOUR_US for t in ticks})
    for hour_start in hours[::2]:
        lake.compact_hour(TICKS, datetime.fromtimestamp(hour_start / 1e6, UTC))
    for day in sorted({utc_date(t["ts_us"]) for t in ticks}):
        lake.append(BARS_1M, expected_bar_table([t for t in ticks if utc_date(t["ts_us"]) == day]))


# --- independent expectations of the marts -------------------------------------------------------------


def utc_date(at_us: int) -> str:
    """The UTC date (YYYY-MM-DD) of a time in µs since the epoch."""
    return datetime.fromtimestamp(at_us / 1e6, UTC).date().isoformat()


def _frame(ticks: Sequence[Tick]) -> pl.DataFrame:
    return pl.DataFrame(list(ticks)).with_columns(
        trade_date=pl.col("ts_us").map_elements(utc_date, return_dtype=pl.String),
        trade_hour=(pl.col("ts_us") // HOUR_US % 24).cast(pl.Int32),
        notional=pl.col("price") * pl.col("size"),
        spread_bps=(pl.col("ask") - pl.col("bid")) / ((pl.col("ask") + pl.col("bid")) / 2) * 10_000,
    )


def expected_ohlcv_daily(ticks: Sequence[Tick]) -> dict[tuple[str, str], dict[str, Any]]:
    """fct_ohlcv_daily by (symbol, trade_date): open/close by (ts_us, seq), VWAP = notional / volume."""
    daily = (
        _frame(ticks)
        .sort("ts_us", "seq")
        .group_by("symbol", "trade_date", maintain_order=True)
        .agg(
            open_usd=pl.col("price").first(),
            high_usd=pl.col("price").max(),
            low_usd=pl.col("price").min(),
            close_usd=pl.col("price").last(),
            volume_shares=pl.col("size").sum(),
            notional_usd=pl.col("notional").sum(),
            trade_count=pl.len(),
        )
        .with_columns(vwap_usd=pl.col("notional_usd") / pl.col("volume_shares"))
    )
    return {(r.pop("symbol"), r.pop("trade_date")): r for r in daily.iter_rows(named=True)}


def expected_activity_hourly(ticks: Sequence[Tick]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """fct_activity_hourly by (symbol, trade_date, trade_hour)."""
    hourly = (
        _frame(ticks)
        .group_by("symbol", "trade_date", "trade_hour")
        .agg(
            trade_count=pl.len(),
            volume_shares=pl.col("size").sum(),
            notional_usd=pl.col("notional").sum(),
            high_usd=pl.col("price").max(),
            low_usd=pl.col("price").min(),
            avg_spread_bps=pl.col("spread_bps").mean(),
        )
        .with_columns(vwap_usd=pl.col("notional_usd") / pl.col("volume_shares"))
    )
    return {
        (r.pop("symbol"), r.pop("trade_date"), r.pop("trade_hour")): r for r in hourly.iter_rows(named=True)
    }


def expected_daily_returns(ticks: Sequence[Tick]) -> dict[tuple[str, str], float | None]:
    """fct_daily_returns.daily_return by (symbol, trade_date): close over the previous trading day's close."""
    daily = expected_ohlcv_daily(ticks)
    returns: dict[tuple[str, str], float | None] = {}
    previous: dict[str, float] = {}
    for symbol, day in sorted(daily):
        close = daily[(symbol, day)]["close_usd"]
        returns[(symbol, day)] = close / previous[symbol] - 1 if symbol in previous else None
        previous[symbol] = close
    return returns


def expected_bar_indicators(ticks: Sequence[Tick]) -> dict[tuple[str, int], dict[str, Any]]:
    """fct_bars_1m_indicators by (symbol, window start µs): the bar's close and volume, the SMA of the last
    5 closes and the session VWAP to date, both within the bar's UTC day."""
    expected: dict[tuple[str, int], dict[str, Any]] = {}
    closes: dict[tuple[str, str], list[float]] = {}
    session: dict[tuple[str, str], list[float]] = {}  # notional, volume
    for symbol, start_us, _o, _h, _l, close, volume, vwap, _n in expected_bars(ticks):
        day = (symbol, utc_date(start_us))
        closes.setdefault(day, []).append(close)
        totals = session.setdefault(day, [0.0, 0.0])
        totals[0] += vwap * volume
        totals[1] += volume
        expected[(symbol, start_us)] = {
            "close_usd": close,
            "volume_shares": volume,
            "sma_5_close_usd": sum(closes[day][-5:]) / len(closes[day][-5:]),
            "session_vwap_usd": totals[0] / totals[1],
        }
    return expected


def assert_matches(got: Mapping[Any, Mapping[str, Any]], expected: Mapping[Any, Mapping[str, Any]]) -> None:
    """The same keys, and for each key the expected columns' values (floats approximately)."""
    assert set(got) == set(expected)
    for key, want in expected.items():
        assert {column: got[key][column] for column in want} == pytest.approx(want), key
