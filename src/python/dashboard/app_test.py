"""The app rendered by Streamlit's AppTest on an Iceberg test lake: figures, numbers, and failure messages."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.conftest import FIXTURE_TICKS, at, fixture_status
from dashboard.data import clear_caches
from dashboard.testing import DashboardLake, tick

APP = str(Path(__file__).with_name("app.py"))


def run(page: str = "Live", range_label: str | None = None) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    if range_label:
        app.button_group(key="range").set_value(range_label).run()
    if page != "Live":
        app.sidebar.radio(key="page").set_value(page).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def metric(app: AppTest, label: str) -> Any:
    return next(m for m in app.metric if m.label == label)


def table_with(app: AppTest, column: str) -> Any:
    """The first table with `column` (Streamlit keeps keys of selectable tables only)."""
    return next(frame.value for frame in app.dataframe if column in frame.value.columns)


def messages(app: AppTest) -> str:
    return " ".join(e.value for e in [*app.info, *app.warning, *app.error])


def test_live_view_shows_chart_price_and_overview(fixture_lake: DashboardLake) -> None:
    app = run(range_label="15 min")
    assert not app.error and not app.warning, messages(app)
    assert app.selectbox(key="ticker").value == "AAA"
    chart = app.get("plotly_chart")
    assert len(chart) == 1
    # Latest price: the live minute's last tick (105.00) vs the range's first open (100.00).
    assert metric(app, "Latest price").value == "105.00 USD"
    assert metric(app, "Latest price").delta == "+5.00 USD"
    assert metric(app, "Change vs open of range").value == "+5.00 %"
    table = app.dataframe(key="overview").value
    rows = {row["symbol"]: row for row in table.to_dict("records")}
    assert set(rows) == {"AAA", "BBB"}
    assert rows["AAA"]["price"] == 105.0 and rows["AAA"]["volume"] == 170
    assert rows["BBB"]["price"] == 49.0 and rows["BBB"]["volume"] == 200
    assert rows["BBB"]["change_pct"] == pytest.approx(-2.0)
    # Closes 102, 101, 103, 105 (the last one live): std of the three 1-minute log returns, in percent.
    returns = [math.log(101 / 102), math.log(103 / 101), math.log(105 / 103)]
    mean = sum(returns) / 3
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2)
    assert rows["AAA"]["volatility_pct"] == pytest.approx(100 * std)
    assert math.isnan(rows["BBB"]["volatility_pct"]) or rows["BBB"]["volatility_pct"] is None


def test_picking_another_ticker(fixture_lake: DashboardLake) -> None:
    app = run(range_label="1 h")
    app.selectbox(key="ticker").set_value("BBB").run()
    assert not app.exception
    assert metric(app, "Latest price").value == "49.00 USD"
    assert metric(app, "Change vs open of range").value == "-2.00 %"


def test_health_page_reports_each_check(fixture_lake: DashboardLake) -> None:
    app = run("Pipeline health")
    checks = {row["check"]: row for row in table_with(app, "check").to_dict("records")}
    assert checks["Data freshness"]["value"] == "newest tick 10 s old"
    assert checks["Data freshness"]["state"] == "good"
    assert checks["Streaming query ticks"]["state"] == "good"
    assert (checks["Ingestion"]["state"], checks["Ingestion"]["value"]) == (
        "good",
        "1,480 of 1,500 records stored",
    )
    assert "late 21" in checks["Streaming query ticks"]["detail"]
    assert checks["Streaming bars_1m"]["state"] == "good"
    assert checks["Streaming bars_1m"]["value"] == "active · 3 bars · 0 s ago"
    batches = table_with(app, "batch ms").to_dict("records")
    assert batches[1]["query"] == "ticks" and batches[1]["batch ms"] == 166
    assert batches[1]["quarantined (total)"] == 5
    files = table_with(app, "commits").to_dict("records")
    assert {(r["table"], r["hour (UTC)"], r["files"], r["commits"], r["state"]) for r in files} == {
        ("ticks", "2024-03-01 09:00", 1, 1, "compacted"),
        ("ticks", "2024-03-01 10:00", 2, 2, "open"),
        ("bars_1m", "2024-03-01 09:00", 1, 1, "compacted"),
        ("bars_1m", "2024-03-01 10:00", 1, 1, "open"),
    }
    # The fixture compacted ticks hour 09 (a replace snapshot, retained): the last compaction is known.
    assert checks["Last compaction"]["state"] == "good"
    assert "2 files rewritten into 1" in checks["Last compaction"]["detail"]
    assert checks["Last dbt run"]["state"] == "unknown"
    assert ":green-badge[Data freshness: good]" in app.markdown[0].value
    # Kafka is unreachable in this test: that panel says so, the others still render.
    assert "Kafka consumer lag: source unavailable" in messages(app)


@pytest.mark.parametrize("page", ["Live", "History", "Pipeline health"])
def test_every_page_turns_red_when_ingestion_stalls(fixture_lake: DashboardLake, page: str) -> None:
    assert "Ingestion stopped" not in messages(run(page))
    status = fixture_status()
    status["queries"]["ticks"].update(rows_written=0, quarantined=1500)  # every record rejected
    fixture_lake.write_status(status)
    clear_caches()
    app = run(page)
    assert "Ingestion stopped: Ingestion: stalled: 1,500 records read, none stored" in messages(app)


def test_a_tick_far_ahead_of_the_clock_turns_the_pages_red(fixture_lake: DashboardLake) -> None:
    fixture_lake.append_ticks([tick("AAA", 99, at(22, 0, 0), 100.0, 1)])  # 12 hours after the clock
    app = run("Pipeline health")
    checks = {row["check"]: row for row in table_with(app, "check").to_dict("records")}
    assert checks["Data freshness"]["state"] == "failing"
    assert "Data freshness: newest tick 43,050 s ahead of the clock" in messages(app)


def test_a_young_lake_shows_compaction_pending(empty_lake: DashboardLake) -> None:
    empty_lake.append_ticks(FIXTURE_TICKS)  # one commit: nothing to compact, and no hour is due yet
    app = run("Pipeline health")
    checks = {row["check"]: row for row in table_with(app, "check").to_dict("records")}
    assert checks["Last compaction"]["state"] == "pending"
    assert ":blue-badge[Last compaction: pending]" in app.markdown[0].value


def test_history_page_without_marts(fixture_lake: DashboardLake) -> None:
    app = run("History")
    assert "not built yet" in messages(app)


def test_history_page_shows_daily_candles_from_the_marts(fixture_lake: DashboardLake) -> None:
    daily = pa.table(
        {
            "symbol": ["AAA", "AAA", "BBB"],
            "trade_date": [date(2024, 2, 29), date(2024, 3, 1), date(2024, 3, 1)],
            "open_usd": [99.0, 100.0, 50.0],
            "high_usd": [101.0, 105.0, 50.0],
            "low_usd": [98.0, 100.0, 49.0],
            "close_usd": [100.0, 105.0, 49.0],
            "volume_shares": [10, 170, 200],
        }
    )
    marts = Path(fixture_lake.objects.root) / "marts"
    (marts / "fct_ohlcv_daily").mkdir(parents=True)
    pq.write_table(daily, marts / "fct_ohlcv_daily" / "data.parquet")
    (marts / "fct_top_movers").mkdir(parents=True)
    pq.write_table(
        pa.table({"trade_date": [date(2024, 3, 1)], "mover_rank": [1], "symbol": ["AAA"]}),
        marts / "fct_top_movers" / "data.parquet",
    )
    app = run("History")
    assert app.selectbox(key="mart").options == ["fct_ohlcv_daily", "fct_top_movers"]
    assert len(app.get("plotly_chart")) == 1
    assert table_with(app, "close_usd")["close_usd"].tolist() == [100.0, 105.0, 49.0]
    app.selectbox(key="mart").set_value("fct_top_movers").run()
    assert not app.exception and not app.get("plotly_chart")
    assert table_with(app, "mover_rank")["symbol"].tolist() == ["AAA"]


def test_empty_lake_says_so_on_every_page(empty_lake: DashboardLake) -> None:
    for page in ("Live", "History", "Pipeline health"):
        app = run(page)
        assert not app.error, messages(app)
        assert app.info, page
    assert "No bars or ticks" in messages(run("Live"))
    assert "No rows in the ticks table yet" in messages(run("Pipeline health"))


def test_a_catalog_without_tables_says_so(tmp_path: Path, dashboard_env: pytest.MonkeyPatch) -> None:
    """The dashboard started before the streaming job ever created the tables."""
    dashboard_env.setenv("TICKSTREAM_CATALOG_URI", f"sqlite:///{tmp_path / 'catalog' / 'none.db'}")
    dashboard_env.setenv("TICKSTREAM_LAKE_ROOT", str(tmp_path / "objects"))
    assert "No bars or ticks" in messages(run("Live"))
    app = run("Pipeline health")
    assert not app.error, messages(app)
    assert "The lake has no ticks table yet" in messages(app)


def test_unreachable_s3_is_a_message_not_a_traceback(
    fixture_lake: DashboardLake, dashboard_env: pytest.MonkeyPatch
) -> None:
    """The catalog answers, but the tables' files and the bucket's objects are on an S3 nobody serves."""
    with fixture_lake.lake.catalog.engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE iceberg_tables "
            "SET metadata_location = 's3://tickstream-lake/gone/' || table_name || '.json'"
        )
    dashboard_env.setenv("TICKSTREAM_LAKE_ROOT", "s3://tickstream-lake/gone")
    dashboard_env.setenv("TICKSTREAM_S3_ENDPOINT_URL", "http://127.0.0.1:1")
    for page in ("Live", "History", "Pipeline health"):
        app = run(page)
        assert "source unavailable" in messages(app), page
        assert not app.error, messages(app)
    assert "Data freshness: source unavailable" in messages(run("Pipeline health"))
