"""Replay recorded ticks or 1-minute bars from CSV or Parquet as contract ticks, paced in event time.

Input columns (names are case-sensitive):

* ticks: `symbol`, a time column, `price`, `size`, and optionally `bid`, `ask` (missing quotes become
  bid = ask = price);
* 1-minute bars: `symbol`, a time column (bar start), `open`, `high`, `low`, `close`, `volume`. Each bar
  becomes four ticks: open at +0 s, then low and high (high first on a down bar) at +15 s and +30 s, close
  at +59 s, each with a quarter of the volume (at least one share).

The time column is `ts_us` (integer epoch microseconds) or one of `timestamp`, `ts`, `time`, `datetime`
(a datetime, a date or an ISO-8601 string; without a time zone it is taken as UTC, a date as its midnight).
Rows are replayed in time order and get fresh per-symbol `seq` numbers from 1, as the contract requires for a
producer run.

Speed factor: 1.0 replays in real time, 100.0 a hundred times faster, 0 or infinity as fast as possible.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from producer.publish import Clock, SystemClock
from producer.records import RecordBatch
from tickstream.contracts import encode_tick_columns

TIME_COLUMNS = ("ts_us", "timestamp", "ts", "time", "datetime")
BAR_COLUMNS = ("open", "high", "low", "close", "volume")
TICK_COLUMNS = ("symbol", "ts_us", "seq", "price", "size", "bid", "ask")
BAR_LEG_OFFSETS_US = (0, 15_000_000, 30_000_000, 59_000_000)

PACING_SLACK_S = 1e-6
"""Ticks due within this many seconds are sent now (sleeping less is pointless and may not advance time)."""

InputKind = Literal["ticks", "bars"]


def read_table(path: Path) -> pl.DataFrame:
    """Read a CSV (`.csv`) or Parquet (`.parquet`, `.pq`) file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pl.read_csv(path, try_parse_dates=True)
    if suffix in (".parquet", ".pq"):
        return pl.read_parquet(path)
    raise ValueError(f"{path}: expected a .csv or .parquet file")


def detect_kind(frame: pl.DataFrame) -> InputKind:
    """Whether `frame` holds ticks (`price` column) or bars (`open`..`volume` columns)."""
    if "price" in frame.columns:
        return "ticks"
    if all(name in frame.columns for name in BAR_COLUMNS):
        return "bars"
    raise ValueError(f"columns {frame.columns}: need 'price' (ticks) or {', '.join(BAR_COLUMNS)} (bars)")


def to_tick_frame(frame: pl.DataFrame, kind: InputKind | None = None) -> pl.DataFrame:
    """Normalise recorded ticks or bars to the contract's columns, in replay order, with `seq`."""
    kind = kind or detect_kind(frame)
    timed = frame.with_columns(_ts_us_series(frame))
    ticks = _ticks_from_ticks(timed) if kind == "ticks" else _ticks_from_bars(timed)
    ordered = ticks.sort(["ts_us", "symbol"], maintain_order=True)
    return ordered.with_columns(seq=(pl.int_range(pl.len(), dtype=pl.Int64) + 1).over("symbol")).select(
        TICK_COLUMNS
    )


def _ts_us_series(frame: pl.DataFrame) -> pl.Series:
    name = next((c for c in TIME_COLUMNS if c in frame.columns), None)
    if name is None:
        raise ValueError(f"columns {frame.columns}: need a time column, one of {TIME_COLUMNS}")
    column = frame[name]
    if name == "ts_us" and column.dtype.is_integer():
        return column.cast(pl.Int64).alias("ts_us")
    if column.dtype == pl.String:
        column = column.str.to_datetime(time_unit="us")  # eager: infers offsets like -05:00
    if column.dtype == pl.Date:  # daily bars: the day starts at midnight UTC
        column = column.cast(pl.Datetime("us"))
    dtype = column.dtype
    if not isinstance(dtype, pl.Datetime):
        raise ValueError(f"time column {name!r} has type {dtype}; expected datetime, ISO string or ts_us")
    in_utc = (
        column.dt.replace_time_zone("UTC") if dtype.time_zone is None else column.dt.convert_time_zone("UTC")
    )
    return in_utc.dt.epoch("us").cast(pl.Int64).alias("ts_us")


def _ticks_from_ticks(frame: pl.DataFrame) -> pl.DataFrame:
    price = pl.col("price").cast(pl.Float64)
    bid = pl.col("bid").cast(pl.Float64) if "bid" in frame.columns else price
    ask = pl.col("ask").cast(pl.Float64) if "ask" in frame.columns else price
    return frame.select(
        "symbol",
        "ts_us",
        price.alias("price"),
        pl.col("size").cast(pl.Int64),
        bid.alias("bid"),
        ask.alias("ask"),
    )


def _ticks_from_bars(frame: pl.DataFrame) -> pl.DataFrame:
    up = pl.col("close") >= pl.col("open")
    leg_prices = (
        pl.col("open"),
        pl.when(up).then(pl.col("low")).otherwise(pl.col("high")),
        pl.when(up).then(pl.col("high")).otherwise(pl.col("low")),
        pl.col("close"),
    )
    volume = pl.col("volume").cast(pl.Int64)
    quarter = volume // 4
    leg_sizes = (quarter, quarter, quarter, volume - 3 * quarter)
    legs = [
        frame.select(
            "symbol",
            (pl.col("ts_us") + offset_us).alias("ts_us"),
            price.cast(pl.Float64).alias("price"),
            pl.max_horizontal(size, pl.lit(1, dtype=pl.Int64)).alias("size"),
        )
        for offset_us, price, size in zip(BAR_LEG_OFFSETS_US, leg_prices, leg_sizes, strict=True)
    ]
    ticks = pl.concat(legs).sort("ts_us", maintain_order=True)
    return ticks.with_columns(bid=pl.col("price"), ask=pl.col("price"))


def encode_frame_slice(frame: pl.DataFrame) -> RecordBatch:
    """Encode normalised tick rows (see `to_tick_frame`) as Kafka records keyed by symbol."""
    symbols: list[str] = frame["symbol"].to_list()
    values = encode_tick_columns(
        symbols,
        frame["seq"].to_list(),
        frame["ts_us"].to_list(),
        frame["price"].to_list(),
        frame["size"].to_list(),
        frame["bid"].to_list(),
        frame["ask"].to_list(),
    )
    return RecordBatch([s.encode() for s in symbols], values, ticks=len(values))


def is_unpaced(speed: float) -> bool:
    """Speed 0 or infinity means: publish as fast as possible."""
    return speed <= 0 or math.isinf(speed)


def replay_batches(
    ticks: pl.DataFrame, speed: float, clock: Clock | None = None, batch_size: int = 16_384
) -> Iterator[RecordBatch]:
    """Yield record batches of `ticks` (normalised), each no earlier than its event time / `speed`.

    The first tick is due immediately; tick i is due `(ts_us[i] - ts_us[0]) / 1e6 / speed` seconds later.
    """
    clock = clock or SystemClock()
    n = ticks.height
    if is_unpaced(speed):
        for start in range(0, n, batch_size):
            yield encode_frame_slice(ticks.slice(start, batch_size))
        return
    ts_us = ticks["ts_us"].to_numpy()
    due_s = (ts_us - ts_us[0]) / 1e6 / speed if n else np.empty(0)
    origin = clock.monotonic()
    i = 0
    while i < n:
        elapsed_s = clock.monotonic() - origin
        j = int(np.searchsorted(due_s, elapsed_s + PACING_SLACK_S, side="right"))
        if j <= i:
            clock.sleep(float(due_s[i]) - elapsed_s)
            continue
        j = min(j, i + batch_size)
        yield encode_frame_slice(ticks.slice(i, j - i))
        i = j


def replay_file(
    path: Path, speed: float, clock: Clock | None = None, batch_size: int = 16_384
) -> Iterator[RecordBatch]:
    """Read, normalise and replay one file (see module docstring)."""
    return replay_batches(to_tick_frame(read_table(path)), speed, clock, batch_size)
