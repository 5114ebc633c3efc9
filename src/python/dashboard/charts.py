"""Plotly figures of the dashboard, built from the frames `dashboard.data` returns (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

MA_COLOURS = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2")


def candlestick(bars: pl.DataFrame, symbol: str, ma_windows: Sequence[int]) -> go.Figure:
    """1-minute candles with VWAP and moving averages above, volume below; the live minute is marked.

    `bars` holds one symbol's rows of `data.with_moving_averages` output. `uirevision` keeps the user's
    zoom and hidden traces when the figure is replaced by the next refresh.
    """
    times = bars["window_start"].to_list()
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.03)
    figure.add_trace(
        go.Candlestick(
            x=times,
            open=bars["open"].to_list(),
            high=bars["high"].to_list(),
            low=bars["low"].to_list(),
            close=bars["close"].to_list(),
            name=symbol,
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Scatter(
            x=times, y=bars["vwap"].to_list(), name="VWAP", mode="lines", line={"width": 1.2, "dash": "dot"}
        ),
        row=1,
        col=1,
    )
    for colour, window in zip(MA_COLOURS, ma_windows, strict=False):
        column = f"ma_{window}"
        if column in bars.columns:
            figure.add_trace(
                go.Scatter(
                    x=times,
                    y=bars[column].to_list(),
                    name=f"MA {window}",
                    mode="lines",
                    line={"width": 1, "color": colour},
                ),
                row=1,
                col=1,
            )
    colours = ["#26a69a" if c >= o else "#ef5350" for o, c in zip(bars["open"], bars["close"], strict=True)]
    figure.add_trace(
        go.Bar(x=times, y=bars["volume"].to_list(), name="Volume", marker_color=colours, showlegend=False),
        row=2,
        col=1,
    )
    live = bars.filter(pl.col("live"))
    if live.height:
        last_minute: datetime = bars["window_start"].max()  # type: ignore[assignment]
        figure.add_vrect(
            x0=live["window_start"].min(),
            x1=last_minute + timedelta(minutes=1),
            fillcolor="#ffd54f",
            opacity=0.15,
            line_width=0,
            annotation_text="live",
            annotation_position="top left",
        )
    figure.update_layout(
        height=560,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_rangeslider_visible=False,
        legend={"orientation": "h", "y": 1.06},
        uirevision=symbol,
    )
    figure.update_yaxes(title_text="USD", row=1, col=1)
    figure.update_yaxes(title_text="shares", row=2, col=1)
    return figure


def daily_candles(
    frame: pl.DataFrame, date: str, symbol_column: str, symbol: str, suffix: str = ""
) -> go.Figure:
    """Daily OHLC candles of one symbol from a mart with a date and open/high/low/close<suffix> columns."""
    rows = frame.filter(pl.col(symbol_column) == symbol).sort(date)
    figure = go.Figure(
        go.Candlestick(
            x=rows[date].to_list(),
            open=rows[f"open{suffix}"].to_list(),
            high=rows[f"high{suffix}"].to_list(),
            low=rows[f"low{suffix}"].to_list(),
            close=rows[f"close{suffix}"].to_list(),
            name=symbol,
        )
    )
    figure.update_layout(
        height=420, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_rangeslider_visible=False
    )
    return figure
