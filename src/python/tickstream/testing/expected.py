"""Independent expectations for tests: what the lake's tables must hold, computed with polars from ticks.

No Spark and no DuckDB here, so a test comparing the lake with these values checks the pipeline against a
separate implementation of the contract's rules (docs/lake.md): 1-minute windows by event time, open and
close by (ts_us, seq), VWAP from exact cents.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import polars as pl

from tickstream.contracts import Tick

MINUTE_US = 60_000_000


def expected_bars(ticks: Iterable[Tick]) -> list[tuple[Any, ...]]:
    """Sorted 1-minute bars: (symbol, window start µs, open, high, low, close, volume, vwap, trade count)."""
    frame = pl.DataFrame(list(ticks)).with_columns(
        window_us=(pl.col("ts_us") // MINUTE_US) * MINUTE_US,
        notional_cents=(pl.col("price") * 100).round().cast(pl.Int64) * pl.col("size"),
    )
    bars = (
        frame.sort("ts_us", "seq")
        .group_by("symbol", "window_us", maintain_order=True)
        .agg(
            open=pl.col("price").first(),
            high=pl.col("price").max(),
            low=pl.col("price").min(),
            close=pl.col("price").last(),
            volume=pl.col("size").sum(),
            notional_cents=pl.col("notional_cents").sum(),
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
            float(Decimal(b["notional_cents"]) / 100) / b["volume"],
            b["trade_count"],
        )
        for b in bars.iter_rows(named=True)
    )
