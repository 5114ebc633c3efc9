"""The Streamlit app: live view, history (dbt marts), pipeline health. Run with `python -m dashboard`.

Stateless: every figure comes from the lake, the marts or Kafka through `dashboard.data`; a restart loses
nothing but the caches. Each panel catches its own source's failure and says so in plain words, so one
missing or unreachable source never takes the other panels (or the page) down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, time, timedelta
from typing import Any

import polars as pl
import streamlit as st
from pydantic import ValidationError

from dashboard import charts
from dashboard.bars import TimeRange, overview, quote, with_moving_averages
from dashboard.data import Sources
from dashboard.errors import NoData, SourceUnavailable
from dashboard.health import (
    Check,
    batch_rows,
    compaction_check,
    dbt_check,
    files_table,
    freshness_check,
    ingestion_check,
    ingestion_stopped,
    lag_checks,
    streaming_checks,
)
from dashboard.settings import DashboardSettings
from tickstream.settings import CatalogSettings, KafkaSettings, S3Settings

RANGES = {"15 min": timedelta(minutes=15), "1 h": timedelta(hours=1), "1 day": timedelta(days=1)}
MA_CHOICES = (5, 10, 20, 50)
# Badge colour per health state: colour plus the word, no emoji (headless browsers may lack the font).
# (No bare string literals at module level here: Streamlit's "magic" would render them on the page.)
STATE_COLOURS = {"good": "green", "late": "orange", "failing": "red", "pending": "blue", "unknown": "gray"}


@contextmanager
def panel(name: str) -> Iterator[None]:
    """Turn a panel's data problem into a plain message instead of a traceback."""
    try:
        yield
    except NoData as exc:
        st.info(f"{name}: {exc}")
    except SourceUnavailable as exc:
        st.warning(f"{name}: source unavailable: {exc}")
    except Exception as exc:  # never a traceback on the page; the message names the panel and the error
        st.error(f"{name} failed: {type(exc).__name__}: {str(exc)[:300]}")


def selected_range(sources: Sources) -> tuple[str, TimeRange]:
    """The time range picked in the sidebar (relative ranges end at the dashboard's clock, now)."""
    choice = (
        st.sidebar.segmented_control("Time range", [*RANGES, "custom"], default="1 h", key="range") or "1 h"
    )
    now = sources.now()
    if choice != "custom":
        return choice, TimeRange.last(RANGES[choice], now)
    start_day = st.sidebar.date_input(
        "From (UTC)", value=(now - timedelta(days=1)).date(), key="custom_from_day"
    )
    start_time = st.sidebar.time_input("at", value=time(0, 0), key="custom_from_time")
    end_day = st.sidebar.date_input("To (UTC)", value=now.date(), key="custom_to_day")
    end_time = st.sidebar.time_input(
        "at ", value=now.time().replace(second=0, microsecond=0), key="custom_to_time"
    )
    start = datetime.combine(start_day, start_time, tzinfo=UTC)  # type: ignore[arg-type]
    end = datetime.combine(end_day, end_time, tzinfo=UTC)  # type: ignore[arg-type]
    if end <= start:
        st.sidebar.warning("The end is before the start: showing the last hour.")
        return "1 h", TimeRange.last(RANGES["1 h"], now)
    return "custom", TimeRange(start, end)


def live_page(sources: Sources) -> None:
    """Per-ticker chart and price, and the overview of every ticker; refreshes itself."""
    st.title("Live market")
    label, _ = selected_range(sources)
    ma_windows = st.sidebar.multiselect("Moving averages (bars)", MA_CHOICES, default=[5, 20], key="ma")

    @st.fragment(run_every=sources.settings.refresh_seconds)
    def live() -> None:
        # Relative ranges move with the clock on every refresh; custom ranges stay put.
        time_range = (
            TimeRange.last(RANGES[label], sources.now()) if label in RANGES else selected_range_state(sources)
        )
        with panel("Market data"):
            bars = sources.bars(time_range)
            symbols = sorted(bars["symbol"].unique().to_list())
            if st.session_state.get("ticker") not in symbols:
                st.session_state["ticker"] = symbols[0]
            ticker_panel(bars, symbols, ma_windows, time_range)
            overview_panel(bars)
            st.caption(
                f"{time_range.start:%Y-%m-%d %H:%M} to {time_range.end:%Y-%m-%d %H:%M:%S} UTC · refreshed "
                f"every "
                f"{sources.settings.refresh_seconds:g} s · shaded minutes are live, computed from raw ticks"
            )

    live()


def selected_range_state(sources: Sources) -> TimeRange:
    """The custom range from the sidebar widgets' state (inside a fragment, widgets are not re-created)."""
    state = st.session_state
    now = sources.now()
    start = datetime.combine(
        state.get("custom_from_day", now.date()), state.get("custom_from_time", time(0)), tzinfo=UTC
    )
    end = datetime.combine(
        state.get("custom_to_day", now.date()), state.get("custom_to_time", now.time()), tzinfo=UTC
    )
    return TimeRange(start, end) if end > start else TimeRange.last(RANGES["1 h"], now)


def ticker_panel(
    bars: pl.DataFrame, symbols: list[str], ma_windows: list[int], time_range: TimeRange
) -> None:
    """Ticker picker, latest price with change vs the range's open, candlestick chart."""
    with panel("Ticker"):
        pick, price, change, stamp = st.columns([2, 2, 2, 3])
        symbol = pick.selectbox("Ticker", symbols, key="ticker")
        latest = quote(bars, symbol)
        price.metric("Latest price", f"{latest.price:,.2f} USD", f"{latest.change:+,.2f} USD")
        change.metric("Change vs open of range", f"{latest.change_pct:+.2f} %")
        stamp.metric("Minute of last trade (UTC)", f"{latest.as_of:%H:%M}")
        rows = with_moving_averages(bars.filter(pl.col("symbol") == symbol), ma_windows)
        st.plotly_chart(
            charts.candlestick(rows, symbol, ma_windows), key="candles", config={"displaylogo": False}
        )


def overview_panel(bars: pl.DataFrame) -> None:
    """Every ticker's latest price, change, volume and volatility; click a row to drill down."""
    with panel("Overview"):
        st.subheader("All tickers")
        table = overview(bars)
        st.session_state["overview_symbols"] = table["symbol"].to_list()
        st.dataframe(
            table.drop("as_of"),
            key="overview",
            on_select=drill_down,
            selection_mode="single-row",
            hide_index=True,
            column_config={
                "symbol": st.column_config.TextColumn("Ticker"),
                "price": st.column_config.NumberColumn("Price (USD)", format="%.2f"),
                "change_pct": st.column_config.NumberColumn("Change %", format="%+.2f"),
                "volume": st.column_config.NumberColumn("Volume", format="%d"),
                "volatility_pct": st.column_config.NumberColumn("Volatility % (1-min)", format="%.3f"),
            },
        )
        st.caption("Sort by clicking a column header; select a row to show that ticker above.")


def drill_down() -> None:
    """Selecting an overview row picks that ticker for the chart."""
    rows = st.session_state["overview"].selection.rows
    symbols = st.session_state.get("overview_symbols", [])
    if rows and rows[0] < len(symbols):
        st.session_state["ticker"] = symbols[rows[0]]


def history_page(sources: Sources) -> None:
    """The dbt marts: daily OHLCV, returns, volatility, top movers, when they are built."""
    st.title("History and analytics")
    with panel("dbt marts"):
        models = sources.mart_models()
        if not models:
            raise NoData(
                "The dbt marts are not built yet (nothing under "
                f"{sources.settings.marts_prefix}/ in the lake). They appear after the first dbt run."
            )
        preferred = ["fct_ohlcv_daily", "fct_daily_returns", "fct_top_movers"]
        models = sorted(models, key=lambda m: (preferred.index(m) if m in preferred else len(preferred), m))
        model = st.selectbox("Mart", models, key="mart")
        frame = sources.mart(model)
        if frame.is_empty():
            raise NoData(f"The mart {model!r} is empty.")
        show_mart(model, frame)


def show_mart(model: str, frame: pl.DataFrame) -> None:
    """A mart as a chart where its columns allow one (OHLC candles, a metric over dates), and as a table."""
    columns = set(frame.columns)
    symbol_column = next((c for c in ("symbol", "ticker") if c in columns), None)
    date_column = next(
        (c for c in ("date", "trade_date", "day", "date_day", "bar_date") if c in columns), None
    )
    ranked = any("rank" in c for c in columns)  # e.g. top movers: a ranking reads best as a table
    if symbol_column and date_column and not ranked:
        symbols = sorted(frame[symbol_column].unique().to_list())
        symbol = st.selectbox("Ticker", symbols, key=f"mart_symbol_{model}")
        ohlc = next(
            (s for s in ("", "_usd") if {f"{c}{s}" for c in ("open", "high", "low", "close")} <= columns),
            None,
        )
        if ohlc is not None:
            st.plotly_chart(
                charts.daily_candles(frame, date_column, symbol_column, symbol, ohlc),
                key=f"mart_candles_{model}",
            )
        else:
            metrics = [
                c for c in frame.columns if any(w in c for w in ("return", "vol_", "volatil", "change"))
            ]
            if metrics:
                rows = frame.filter(pl.col(symbol_column) == symbol).sort(date_column)
                st.line_chart(rows.select(date_column, *metrics), x=date_column, y=metrics)
    st.dataframe(frame, hide_index=True, key=f"mart_table_{model}")


def health_page(sources: Sources) -> None:
    """Freshness, streaming, Kafka lag, compaction and dbt checks; batches; files per hour partition."""
    st.title("Pipeline health")

    @st.fragment(run_every=sources.settings.health_refresh_seconds)
    def health() -> None:
        now = sources.now()
        settings = sources.settings
        checks: list[Check] = []
        status: dict[str, Any] = {}
        with panel("Data freshness"):
            checks.append(freshness_check(sources.newest_tick(), now, settings))
        with panel("Streaming job"):
            status = sources.status()
            checks.append(ingestion_check(status, settings))
            checks.extend(streaming_checks(status, now, settings))
        with panel("Kafka consumer lag"):
            checks.extend(lag_checks(sources.kafka_end_offsets(), status, settings))
        tables = []
        with panel("Compaction"):
            tables = sources.table_files()
            checks.append(compaction_check(tables, now, settings.compaction_late_hours))
        with panel("dbt"):
            checks.append(dbt_check(sources.dbt_run(), now, settings.dbt_late_hours))
        if checks:
            st.markdown(
                "  ".join(f":{STATE_COLOURS.get(c.state, 'gray')}-badge[{c.name}: {c.state}]" for c in checks)
            )
            st.dataframe(
                pl.DataFrame(
                    {
                        "check": [c.name for c in checks],
                        "state": [c.state for c in checks],
                        "value": [c.value for c in checks],
                        "detail": [c.detail for c in checks],
                    }
                ),
                hide_index=True,
                key="health_checks",
            )
        rows = batch_rows(status)
        if rows:
            st.subheader("Streaming batches")
            st.dataframe(pl.DataFrame(rows), hide_index=True, key="batches")
        if tables:
            with panel("Small files"):
                st.subheader("Data files per hour partition (last 6 hours)")
                files = files_table(tables, sources.closed_until())
                if files.is_empty():
                    raise NoData("No data files in the last 6 hours.")
                st.dataframe(files, hide_index=True, key="small_files")
                st.caption(
                    "From the tables' Iceberg metadata. files: data files readers open for the hour now; "
                    "commits: snapshots that added them (one per streaming batch; one after compaction); "
                    "open: the stream still appends to the hour; rewritten from: files a compaction "
                    "still in the snapshot history replaced."
                )
        st.caption(f"Checked {now:%H:%M:%S} UTC · refreshed every {settings.health_refresh_seconds:g} s")

    health()


def ingestion_strip(sources: Sources) -> None:
    """On every page: a red strip when ingestion has stopped (no fresh tick, nothing stored, query failed)."""

    @st.fragment(run_every=sources.settings.health_refresh_seconds)
    def strip() -> None:
        checks: list[Check] = []
        with suppress(Exception):  # an empty or unreachable lake: the pages say so themselves
            checks.append(freshness_check(sources.newest_tick(), sources.now(), sources.settings))
        with suppress(Exception):
            status = sources.status()
            checks.append(ingestion_check(status, sources.settings))
            checks.extend(streaming_checks(status, sources.now(), sources.settings))
        stopped = ingestion_stopped(checks)
        if stopped:
            st.error("Ingestion stopped: " + "; ".join(f"{c.name}: {c.value}" for c in stopped))

    strip()


PAGES: dict[str, Callable[[Sources], None]] = {
    "Live": live_page,
    "History": history_page,
    "Pipeline health": health_page,
}


def main() -> None:
    """Render the page picked in the sidebar."""
    st.set_page_config(page_title="Tickstream", page_icon="📈", layout="wide")
    try:
        sources = Sources(DashboardSettings(), S3Settings(), CatalogSettings(), KafkaSettings())
    except ValidationError as exc:
        st.error(f"The dashboard's settings are invalid: {exc}")
        return
    page = st.sidebar.radio("Page", list(PAGES), key="page")
    ingestion_strip(sources)
    PAGES[page](sources)


main()
