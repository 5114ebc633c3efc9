"""Bar maths of the live view on polars frames (no I/O): time ranges, the live edge, quotes, the overview.

A bar frame has `BAR_SCHEMA`: one row per (symbol, minute) with OHLCV, VWAP and trade count, and `live`
telling whether the row is a bar of the lake's `bars_1m` table (False) or a provisional bar the dashboard
computed from raw ticks for a minute that has no written bar yet (True).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from dashboard.errors import NoData
from tickstream.lake import BARS_1M

US_PER_MINUTE = 60_000_000
LIVE_TICKS_HOURS = 2
"""The live edge (minutes without a written bar yet) is computed from raw ticks of at most this many hours."""
BAR_SCHEMA: dict[str, pl.DataType] = {
    **{
        name: dtype
        for name, dtype in pl.DataFrame(BARS_1M.schema.empty_table()).schema.items()
        if name != "window_end"
    },
    "live": pl.Boolean(),
}
"""The bars table's columns (from `tickstream.lake`, less `window_end`) and `live`."""
BAR_COLUMNS = list(BAR_SCHEMA)


@dataclass(frozen=True)
class TimeRange:
    """A half-open UTC interval [start, end)."""

    start: datetime
    end: datetime

    @classmethod
    def last(cls, span: timedelta, now: datetime) -> TimeRange:
        """The `span` ending at `now`."""
        return cls(now - span, now)

    def hours(self) -> list[datetime]:
        """Start of every UTC hour overlapping the range, oldest first."""
        hour = self.start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        hours = []
        while hour < self.end:
            hours.append(hour)
            hour += timedelta(hours=1)
        return hours


def from_us(ts_us: int) -> datetime:
    """Aware UTC datetime of epoch microseconds."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_us)


def floor_minute(moment: datetime) -> datetime:
    """The start of the minute holding `moment`."""
    return moment.replace(second=0, microsecond=0)


def empty_bars() -> pl.DataFrame:
    """A bar frame with no rows."""
    return pl.DataFrame(schema=BAR_SCHEMA)


def as_bars(frame: pl.DataFrame) -> pl.DataFrame:
    """A query result with the bar columns (the minute as `window_start_us`, epoch µs) as a bar frame."""
    return frame.select(
        pl.col("symbol").cast(pl.String),
        pl.from_epoch(pl.col("window_start_us"), time_unit="us")
        .dt.replace_time_zone("UTC")
        .alias("window_start"),
        *(pl.col(c).cast(BAR_SCHEMA[c]) for c in BAR_COLUMNS[2:]),
    )


def merge_partials(partials: pl.DataFrame, since_us: int, until_us: int) -> pl.DataFrame:
    """Live bars of the minutes in [since, until) from partial bars (one row per file, symbol and minute).

    A partial holds a file's ticks of one symbol and minute: its first and last tick's (ts_us, seq) and
    price, high, low, volume, exact notional Σ price·size, trade count. Merged exactly as the streaming
    job's bars are: open of the earliest (ts_us, seq), close of the latest, VWAP = Σ notional / Σ volume.
    """
    rows = partials.filter((pl.col("minute_us") >= since_us) & (pl.col("minute_us") < until_us))
    if rows.is_empty():
        return empty_bars()
    merged = rows.group_by("symbol", "minute_us").agg(
        pl.col("open").sort_by(["first_ts", "first_seq"]).first(),
        pl.col("high").max(),
        pl.col("low").min(),
        pl.col("close").sort_by(["last_ts", "last_seq"]).last(),
        pl.col("volume").sum(),
        pl.col("notional").sum(),
        pl.col("trade_count").sum(),
    )
    return as_bars(
        merged.with_columns(
            pl.col("minute_us").alias("window_start_us"),
            (pl.col("notional").cast(pl.Float64) / pl.col("volume")).alias("vwap"),
            pl.lit(True).alias("live"),
        )
    )


def live_edge_start(written: pl.DataFrame, time_range: TimeRange) -> datetime | None:
    """First minute computed from raw ticks: after the newest written bar, at most LIVE_TICKS_HOURS back.

    None when the whole range is covered by written bars (a range in the past).
    """
    start = max(time_range.start, time_range.end - timedelta(hours=LIVE_TICKS_HOURS))
    if written.height:
        newest: datetime = written["window_start"].max()  # type: ignore[assignment]
        start = max(start, newest + timedelta(minutes=1))
    start = floor_minute(start)
    return start if start < time_range.end else None


def combine_bars(written: pl.DataFrame, live: pl.DataFrame, time_range: TimeRange) -> pl.DataFrame:
    """Written bars plus live bars of minutes after each symbol's newest written bar, in the range, sorted."""
    inside = (pl.col("window_start") >= time_range.start) & (pl.col("window_start") < time_range.end)
    written = written.filter(inside)
    if live.height:
        last_written = written.group_by("symbol").agg(pl.col("window_start").max().alias("last_written"))
        live = (
            live.join(last_written, on="symbol", how="left")
            .filter(pl.col("last_written").is_null() | (pl.col("window_start") > pl.col("last_written")))
            .filter(inside)
            .drop("last_written")
        )
    return pl.concat([written.select(BAR_COLUMNS), live.select(BAR_COLUMNS)]).sort(["symbol", "window_start"])


def with_moving_averages(bars: pl.DataFrame, windows: Iterable[int]) -> pl.DataFrame:
    """Add `ma_<n>`: the simple moving average of the close over the last n bars (per symbol)."""
    return bars.with_columns(
        pl.col("close").rolling_mean(window_size=n, min_samples=n).over("symbol").alias(f"ma_{n}")
        for n in windows
    )


@dataclass(frozen=True)
class Quote:
    """Latest price of a symbol and its change against the open of the range."""

    symbol: str
    price: float
    open: float
    as_of: datetime

    @property
    def change(self) -> float:
        """Absolute change since the open (USD)."""
        return self.price - self.open

    @property
    def change_pct(self) -> float:
        """Relative change since the open, in percent."""
        return 100.0 * self.change / self.open if self.open else math.nan


def quote(bars: pl.DataFrame, symbol: str) -> Quote:
    """Latest close (live minute included) vs the first open of `bars` for `symbol`."""
    rows = bars.filter(pl.col("symbol") == symbol).sort("window_start")
    if rows.is_empty():
        raise NoData(f"No bars for {symbol} in this time range.")
    return Quote(symbol, float(rows["close"][-1]), float(rows["open"][0]), rows["window_start"][-1])


def overview(bars: pl.DataFrame) -> pl.DataFrame:
    """One row per symbol: latest price, % change vs the range's open, volume, volatility.

    Volatility is the standard deviation of 1-minute log returns of the close over the range, in percent
    (not annualised); it needs at least three bars.
    """
    if bars.is_empty():
        raise NoData("No bars in this time range.")
    return (
        bars.sort(["symbol", "window_start"])
        .with_columns((pl.col("close") / pl.col("close").shift(1)).log().over("symbol").alias("log_return"))
        .group_by("symbol")
        .agg(
            pl.col("close").last().alias("price"),
            ((pl.col("close").last() / pl.col("open").first() - 1.0) * 100.0).alias("change_pct"),
            pl.col("volume").sum().alias("volume"),
            (pl.col("log_return").drop_nulls().std() * 100.0).alias("volatility_pct"),
            pl.col("window_start").last().alias("as_of"),
        )
        .sort("symbol")
    )
