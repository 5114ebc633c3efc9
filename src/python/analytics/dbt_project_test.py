"""`dbt build` of src/sql/dbt on a local fixture lake, with hand-checked marts (analytics.testing)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import pytest

from analytics.run import AnalyticsSettings, main, run_dbt
from analytics.testing import build_fixture_lake
from tickstream.lake import LakeLocation

pytestmark = pytest.mark.timeout(600)


def mart(lake: Path, model: str) -> list[dict]:
    """Rows of a published mart (<lake>/marts/<model>/data.parquet), ordered."""
    relation = duckdb.sql(f"select * from read_parquet('{lake}/marts/{model}/data.parquet') order by all")
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    build_fixture_lake(LakeLocation(root=str(root)))
    return root


@pytest.fixture(scope="module")
def settings(lake: Path, tmp_path_factory: pytest.TempPathFactory) -> AnalyticsSettings:
    state = tmp_path_factory.mktemp("dbt")
    return AnalyticsSettings(target="local", lake_root=str(lake), state_dir=str(state))


@pytest.fixture(scope="module")
def built(settings: AnalyticsSettings) -> AnalyticsSettings:
    result = run_dbt("build", settings=settings)
    assert result.success, result.exception
    return settings


def test_ohlcv_daily_reads_each_committed_tick_once(built: AnalyticsSettings, lake: Path) -> None:
    # 2024-03-01 hour 09 has a manifest AND its replaced stream objects AND a crashed run's object AND a
    # late stream object: AAPL volume would be 120 if the replaced objects were read too, and the high
    # 1e6 if the crashed run's object were; MSFT would lack the 402.0 tick if the late object were not.
    rows = {(r["symbol"], str(r["trade_date"])): r for r in mart(lake, "fct_ohlcv_daily")}
    assert set(rows) == {
        ("AAPL", "2024-03-01"),
        ("AAPL", "2024-03-02"),
        ("MSFT", "2024-03-01"),
        ("MSFT", "2024-03-02"),
    }
    aapl = rows[("AAPL", "2024-03-01")]
    assert (aapl["open_usd"], aapl["high_usd"], aapl["low_usd"], aapl["close_usd"]) == (
        100.0,
        103.0,
        99.0,
        103.0,
    )
    assert (aapl["volume_shares"], aapl["trade_count"]) == (80, 5)
    assert aapl["vwap_usd"] == pytest.approx(8090 / 80)  # 1000 + 2040 + 990 + 3030 + 1030
    msft = rows[("MSFT", "2024-03-01")]
    # two ticks share the first ts_us: seq decides the open
    assert (msft["open_usd"], msft["high_usd"], msft["low_usd"], msft["close_usd"]) == (
        400.0,
        402.0,
        400.0,
        402.0,
    )
    assert (msft["volume_shares"], msft["trade_count"]) == (20, 3)
    assert msft["vwap_usd"] == pytest.approx(8025 / 20)
    # AAPL seq 6 is in two stream objects: counted once
    assert (rows[("AAPL", "2024-03-02")]["volume_shares"], rows[("AAPL", "2024-03-02")]["trade_count"]) == (
        10,
        1,
    )


def test_returns_volatility_and_top_movers(built: AnalyticsSettings, lake: Path) -> None:
    returns = {(r["symbol"], str(r["trade_date"])): r for r in mart(lake, "fct_daily_returns")}
    assert returns[("AAPL", "2024-03-02")]["daily_return"] == pytest.approx(123.6 / 103.0 - 1)
    assert returns[("MSFT", "2024-03-02")]["daily_return"] == pytest.approx(394.0 / 402.0 - 1)
    assert returns[("AAPL", "2024-03-02")]["ma_5d_close_usd"] == pytest.approx((103.0 + 123.6) / 2)
    # AAPL's 1-minute closes on 2024-03-01: 09:00 102, 09:01 99, 10:00 101, 10:59 103
    expected = math.sqrt(sum(math.log(b / a) ** 2 for a, b in ((102, 99), (99, 101), (101, 103))))
    assert returns[("AAPL", "2024-03-01")]["realised_vol_1d"] == pytest.approx(expected)
    movers = mart(lake, "fct_top_movers")
    assert [(m["mover_rank"], m["symbol"], m["direction"]) for m in movers] == [
        (1, "AAPL", "up"),
        (2, "MSFT", "down"),
    ]


def test_activity_hourly_and_bar_indicators(built: AnalyticsSettings, lake: Path) -> None:
    hourly = {
        (r["symbol"], str(r["trade_date"]), r["trade_hour"]): r for r in mart(lake, "fct_activity_hourly")
    }
    assert {k: (v["trade_count"], v["volume_shares"]) for k, v in hourly.items()} == {
        ("AAPL", "2024-03-01", 9): (3, 40),
        ("AAPL", "2024-03-01", 10): (2, 40),
        ("MSFT", "2024-03-01", 9): (3, 20),
        ("AAPL", "2024-03-02", 0): (1, 10),
        ("MSFT", "2024-03-02", 0): (1, 10),
    }
    assert hourly[("AAPL", "2024-03-01", 9)]["avg_spread_bps"] == pytest.approx(2.0)
    bars = sorted(
        (
            b
            for b in mart(lake, "fct_bars_1m_indicators")
            if b["symbol"] == "AAPL" and str(b["bar_date"]) == "2024-03-01"
        ),
        key=lambda b: b["window_start_at"],
    )
    assert [b["close_usd"] for b in bars] == [102.0, 99.0, 101.0, 103.0]
    assert bars[1]["sma_5_close_usd"] == pytest.approx((102.0 + 99.0) / 2)
    # session VWAP after two bars: (101.333..*30 + 99*10) / 40 = (3040 + 990) / 40
    assert bars[1]["session_vwap_usd"] == pytest.approx((1000 + 2040 + 990) / 40)


def test_rerunning_an_interval_is_idempotent(built: AnalyticsSettings, lake: Path) -> None:
    before = mart(lake, "fct_ohlcv_daily")
    for _ in range(2):
        result = run_dbt(
            "build", {"start": "2024-03-02T00:00:00", "end": "2024-03-02T01:00:00"}, settings=built
        )
        assert result.success, result.exception
        assert mart(lake, "fct_ohlcv_daily") == before  # day 1 kept, day 2 replaced by the same rows
        assert mart(lake, "fct_activity_hourly") and len(mart(lake, "fct_activity_hourly")) == 5


def test_source_freshness_docs_and_run_results(built: AnalyticsSettings, lake: Path) -> None:
    freshness = run_dbt("source freshness", settings=built)
    # the fixture is from 2024: both sources are stale, and dbt says so (rather than failing to run)
    sources = {
        r.node.unique_id: str(r.status)
        for r in freshness.result.results
        if r.node.unique_id.startswith("source.")
    }
    assert sources == {"source.tickstream.lake.ticks": "error", "source.tickstream.lake.bars_1m": "error"}
    docs = run_dbt(["docs", "generate"], settings=built)
    assert docs.success, docs.exception
    assert (Path(built.state_dir) / "target" / "catalog.json").is_file()
    published = json.loads((lake / "_status" / "dbt" / "run_results.json").read_text())
    assert published["args"]["which"] in ("generate", "source", "freshness")


def test_cli_rejects_half_an_interval(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--start", "2024-03-01"])
    assert exit_info.value.code == 2
    assert "--start and --end go together" in capsys.readouterr().err
