"""Independent expectations for tests: what the lake's tables must hold, computed with polars from ticks.

No Spark and no DuckDB here, so a test comparing the lake with these values checks the pipeline against a
separate implementation of the contract's rules (docs/lake.md): 1-minute windows by event time, open and
close by (ts_us, seq), VWAP from the exact sum of price x size with each price as decimal(18, 8).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tickstream.contracts import Tick
from tickstream.lake import BARS_1M

MINUTE_US = 60_000_000
PRICE_SCALE = Decimal("0.00000001")
"""The lake sums notionals of prices as decimal(18, 8) (docs/lake.md)."""

EXPECTED_BAR_SQL_COLUMNS = "symbol, epoch_us(window_start), open, high, low, close, volume, vwap, trade_count"
"""DuckDB select list reading bars_1m rows in the tuple form of `expected_bars`."""


def exact_price(price: float) -> Decimal:
    """A price as the lake sums it: its shortest decimal form rounded half up to 8 places (Spark's cast of a
    double to decimal(18, 8))."""
    return Decimal(repr(price)).quantize(PRICE_SCALE, rounding=ROUND_HALF_UP)


def expected_bars(ticks: Iterable[Tick]) -> list[tuple[Any, ...]]:
    """Sorted 1-minute bars: (symbol, window start µs, open, high, low, close, volume, vwap, trade count)."""
    rows = list(ticks)
    if not rows:
        return []
    notional: dict[tuple[str, int], Decimal] = {}
    for row in rows:
        key = (row["symbol"], row["ts_us"] // MINUTE_US * MINUTE_US)
        notional[key] = notional.get(key, Decimal(0)) + exact_price(row["price"]) * row["size"]
    frame = pl.DataFrame(rows).with_columns(window_us=(pl.col("ts_us") // MINUTE_US) * MINUTE_US)
    bars = (
        frame.sort("ts_us", "seq")
        .group_by("symbol", "window_us", maintain_order=True)
        .agg(
            open=pl.col("price").first(),
            high=pl.col("price").max(),
            low=pl.col("price").min(),
            close=pl.col("price").last(),
            volume=pl.col("size").sum(),
            trade_count=pl.len(),
        )
    )
    return sorted(
        (
            b["symbol"],
            b["window_us"],
            b["open"],
            b["high"],
            b["low"],
            b["close"],
            b["volume"],
            float(notional[(b["symbol"], b["window_us"])]) / b["volume"],
            b["trade_count"],
        )
        for b in bars.iter_rows(named=True)
    )


def expected_bar_table(ticks: Iterable[Tick]) -> pa.Table:
    """`expected_bars` as rows of the bars_1m table (its schema from `tickstream.lake`), e.g. to append."""
    bars = expected_bars(ticks)
    columns: list[tuple[Any, ...]] = list(zip(*bars, strict=True)) if bars else [() for _ in range(9)]
    symbol, starts, *values = columns
    window = pa.array(starts, pa.int64())
    arrays = {
        "symbol": list(symbol),
        "window_start": window.cast(pa.timestamp("us", tz="UTC")),
        "window_end": pc.add(window, MINUTE_US).cast(pa.timestamp("us", tz="UTC")),
        **{
            name: list(column)
            for name, column in zip(
                ("open", "high", "low", "close", "volume", "vwap", "trade_count"), values, strict=True
            )
        },
    }
    return pa.table({name: arrays[name] for name in BARS_1M.columns}).cast(BARS_1M.schema)
