"""`dbt build` of src/sql/dbt on local Iceberg lakes (analytics.testing): marts against hand-checked values
and independent computations, one snapshot per run, interval runs, duplicates failing the build."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from analytics import run
from analytics.run import AnalyticsSettings, find_project_dir, run_dbt
from analytics.testing import (
    append_ticks,
    assert_matches,
    build_fixture_lake,
    build_random_lake,
    expected_activity_hourly,
    expected_bar_indicators,
    expected_daily_returns,
    expected_ohlcv_daily,
    random_ticks,
    tick,
    ts_us,
)
from testkit.expected import expected_bar_table
from testkit.lake import TestLake, private_catalog_settings, tick_rows
from tickstream import duckdb_lake
from tickstream.catalog import metadata_location
from tickstream.contracts import Tick
from tickstream.lake import BARS_1M, TICKS, lake_table

pytestmark = pytest.mark.timeout(600)

MARTS = (
    "fct_ohlcv_daily",
    "fct_activity_hourly",
    "fct_bars_1m_indicators",
    "fct_daily_returns",
    "fct_top_movers",
)


def new_lake(directory: Path) -> TestLake:
    """A lake of its own in a local directory: catalog, warehouse, and the marts' export root."""
    return TestLake(private_catalog_settings(directory / "lake", None), None)


def dbt_settings(directory: Path) -> AnalyticsSettings:
    """A dbt state (DuckDB file) of its own, marts exported to <directory>/marts."""
    return AnalyticsSettings(target="local", lake_root=str(directory), state_dir=str(directory / "dbt"))


def build(
    lake: TestLake, settings: AnalyticsSettings, vars: dict[str, str] | None = None, command: Any = "build"
) -> Any:
    """Run a dbt command on `lake` and return dbt's result."""
    return run_dbt(command, vars, settings=settings, catalog=lake.settings, s3=lake.s3)


def lake_scan(lake: TestLake, table: Any) -> str:
    """The table's current snapshot as a DuckDB relation (what the next run's view will read)."""
    location = metadata_location(lake.catalog, lake.settings, table)
    assert location is not None
    return duckdb_lake.iceberg_scan(location)


def mart(settings: AnalyticsSettings, model: str) -> list[dict]:
    """Rows of a published mart (<lake root>/marts/<model>/data.parquet), ordered."""
    path = f"{settings.lake_root}/marts/{model}/data.parquet"
    relation = duckdb.sql(f"select * from read_parquet('{path}') order by all")
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def statuses(result: Any) -> dict[str, str]:
    """unique_id -> status of every node of a dbt result."""
    return {r.node.unique_id: str(r.status) for r in result.result.results}


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fixture")


@pytest.fixture(scope="module")
def lake(fixture_dir: Path) -> TestLake:
    lake = new_lake(fixture_dir)
    build_fixture_lake(lake)
    return lake


@pytest.fixture(scope="module")
def built(lake: TestLake, fixture_dir: Path) -> AnalyticsSettings:
    settings = dbt_settings(fixture_dir)
    result = build(lake, settings)
    assert result.success, result.exception
    return settings


def test_the_fixture_is_what_it_claims(lake: TestLake) -> None:
    # hour 09 of 2024-03-01 was rewritten into one file and a late tick committed after it; the table's
    # current snapshot holds each of the 10 ticks once, in fewer files than commits
    ticks = lake.read(TICKS)
    assert ticks.num_rows == 10
    assert len(set(zip(ticks["symbol"].to_pylist(), ticks["seq"].to_pylist(), strict=True))) == 10
    assert lake.files(TICKS) == 5  # 09 (rewritten) + late 09 + 10 (e2) + 10 (e3) + day 2


def test_ohlcv_daily_reads_each_tick_of_the_current_snapshot_once(built: AnalyticsSettings) -> None:
    # Hour 09's rows are in a rewritten file AND (for older snapshots) in the files it replaced: AAPL's
    # volume would be 120 if the replaced files were read too; MSFT would lack the late 402.0 tick if the
    # snapshot after the rewrite were not the one read.
    rows = {(r["symbol"], str(r["trade_date"])): r for r in mart(built, "fct_ohlcv_daily")}
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
    assert (rows[("AAPL", "2024-03-02")]["volume_shares"], rows[("AAPL", "2024-03-02")]["trade_count"]) == (
        10,
        1,
    )


def test_returns_volatility_and_top_movers(built: AnalyticsSettings) -> None:
    returns = {(r["symbol"], str(r["trade_date"])): r for r in mart(built, "fct_daily_returns")}
    assert returns[("AAPL", "2024-03-02")]["daily_return"] == pytest.approx(123.6 / 103.0 - 1)
    assert returns[("MSFT", "2024-03-02")]["daily_return"] == pytest.approx(394.0 / 402.0 - 1)
    assert returns[("AAPL", "2024-03-02")]["ma_5d_close_usd"] == pytest.approx((103.0 + 123.6) / 2)
    # AAPL's 1-minute closes on 2024-03-01: 09:00 102, 09:01 99, 10:00 101, 10:59 103
    expected = math.sqrt(sum(math.log(b / a) ** 2 for a, b in ((102, 99), (99, 101), (101, 103))))
    assert returns[("AAPL", "2024-03-01")]["realised_vol_1d"] == pytest.approx(expected)
    movers = mart(built, "fct_top_movers")
    assert [(m["mover_rank"], m["symbol"], m["direction"]) for m in movers] == [
        (1, "AAPL", "up"),
        (2, "MSFT", "down"),
    ]


def test_activity_hourly_and_bar_indicators(built: AnalyticsSettings) -> None:
    hourly = {
        (r["symbol"], str(r["trade_date"]), r["trade_hour"]): r for r in mart(built, "fct_activity_hourly")
    }
    assert {k: (v["trade_count"], v["volume_shares"]) for k, v in hourly.items()} == {
        ("AAPL", "2024-03-01", 9): (3, 40),
        ("AAPL", "2024-03-01", 10): (2, 40),
        ("MSFT", "2024-03-01", 9): (3, 20),
        ("AAPL", "2024-03-02", 0): (1, 10),
        ("MSFT", "2024-03-02", 0): (1, 10),
    }
    assert hourly[("AAPL", "2024-03-01", 9)]["avg_spread_bps"] == pytest.approx(2.0)
    bars = [
        b
        for b in mart(built, "fct_bars_1m_indicators")
        if b["symbol"] == "AAPL" and str(b["bar_date"]) == "2024-03-01"
    ]
    bars.sort(key=lambda b: b["window_start_at"])
    assert [b["close_usd"] for b in bars] == [102.0, 99.0, 101.0, 103.0]
    assert bars[1]["sma_5_close_usd"] == pytest.approx((102.0 + 99.0) / 2)
    assert bars[1]["session_vwap_usd"] == pytest.approx((1000 + 2040 + 990) / 40)


def test_marts_equal_an_independent_computation_on_a_generated_lake(tmp_path: Path) -> None:
    # 4 symbols over 8 hours across midnight, committed in 40 shuffled batches (late ticks into hours
    # already committed), every second hour compacted
    ticks = random_ticks(
        seed=7,
        symbols=["AAPL", "BRK.B", "MSFT", "SPY"],
        first_hour="2024-03-04T20:00:00",
        hours=8,
        per_hour=60,
    )
    lake = new_lake(tmp_path)
    build_random_lake(lake, ticks, batch=48, seed=7)
    assert lake.read(TICKS).num_rows == len(ticks) == 1920
    settings = dbt_settings(tmp_path)
    result = build(lake, settings)
    assert result.success, result.exception

    daily = {(r["symbol"], str(r["trade_date"])): r for r in mart(settings, "fct_ohlcv_daily")}
    assert_matches(daily, expected_ohlcv_daily(ticks))

    hourly = {
        (r["symbol"], str(r["trade_date"]), r["trade_hour"]): r for r in mart(settings, "fct_activity_hourly")
    }
    assert_matches(hourly, expected_activity_hourly(ticks))

    returns = {
        (r["symbol"], str(r["trade_date"])): r["daily_return"] for r in mart(settings, "fct_daily_returns")
    }
    assert returns == pytest.approx(expected_daily_returns(ticks))

    bars = {
        (b["symbol"], ts_us(b["window_start_at"].isoformat())): b
        for b in mart(settings, "fct_bars_1m_indicators")
    }
    assert_matches(bars, expected_bar_indicators(ticks))


def test_a_run_reads_one_snapshot_and_an_interval_run_only_its_days(tmp_path: Path) -> None:
    lake = new_lake(tmp_path)
    ticks = build_fixture_lake(lake)
    settings = dbt_settings(tmp_path)
    assert build(lake, settings).success
    before = {(r["symbol"], str(r["trade_date"])): r for r in mart(settings, "fct_ohlcv_daily")}

    # a commit after the run: the run's views stay pinned to the snapshot the run started with
    late: list[Tick] = [tick("MSFT", 5, "2024-03-01T11:00:00", 410.0, 7)]
    append_ticks(lake, late, first_offset=100)
    # (dbt-duckdb keeps the file open in this process: a second connection must use the same configuration)
    with duckdb_lake.connect(None, database=str(tmp_path / "dbt" / "tickstream.duckdb")) as conn:
        assert conn.sql("select count(*) from lake.ticks").fetchone() == (len(ticks),)
        assert conn.sql(f"select count(*) from {lake_scan(lake, TICKS)}").fetchone() == (len(ticks) + 1,)

    # an interval run over 2024-03-02 reads the new snapshot but only its days: 2024-03-01 stays as it was;
    # the interval as the hourly DAG passes it (UTC offsets), and with another offset for the same instant
    intervals = [
        {"start": "2024-03-02T00:00:00+00:00", "end": "2024-03-02T01:00:00+00:00"},
        {"start": "2024-03-02T01:00:00+01:00", "end": "2024-03-02T01:00:00Z"},
    ]
    for interval in intervals:
        result = build(lake, settings, interval)
        assert result.success, result.exception
        assert {(r["symbol"], str(r["trade_date"])): r for r in mart(settings, "fct_ohlcv_daily")} == before
    # the run over 2024-03-01 replaces that day, now with the late tick; re-running it changes nothing
    for _ in range(2):
        result = build(lake, settings, {"start": "2024-03-01", "end": "2024-03-02"})
        assert result.success, result.exception
        after = {(r["symbol"], str(r["trade_date"])): r for r in mart(settings, "fct_ohlcv_daily")}
        assert after == {**before, ("MSFT", "2024-03-01"): after[("MSFT", "2024-03-01")]}
        msft = after[("MSFT", "2024-03-01")]
        assert (msft["volume_shares"], msft["trade_count"], msft["close_usd"]) == (27, 4, 410.0)
        want = expected_ohlcv_daily([*ticks, *late])[("MSFT", "2024-03-01")]
        assert {k: msft[k] for k in want} == pytest.approx(want)
        assert len(mart(settings, "fct_activity_hourly")) == 6  # MSFT 2024-03-01 hour 11 added


@pytest.mark.parametrize("table", [TICKS, BARS_1M], ids=lambda t: t.name)
def test_a_duplicate_in_the_lake_fails_the_build(table: Any, tmp_path: Path) -> None:
    lake = new_lake(tmp_path)
    ticks = build_fixture_lake(lake)
    # one row committed a second time (another Kafka offset for a tick): a violated exactly-once contract
    copy = tick_rows(ticks[:1], first_offset=1000) if table is TICKS else expected_bar_table(ticks[:1])
    lake.append(table, copy)

    result = build(lake, dbt_settings(tmp_path))
    assert not result.success
    model = "stg_ticks" if table is TICKS else "stg_bars_1m"
    failed = [uid.split(".")[2] for uid, status in statuses(result).items() if status in ("fail", "error")]
    assert len(failed) == 1 and failed[0].startswith(f"unique_combination_of_columns_{model}_"), failed
    # the marts built on the duplicated rows are not built
    skipped = {uid.split(".")[-1] for uid, status in statuses(result).items() if status == "skipped"}
    assert ("fct_ohlcv_daily" if table is TICKS else "fct_bars_1m_indicators") in skipped


def test_an_empty_lake_builds_empty_marts(tmp_path: Path) -> None:
    lake = new_lake(tmp_path)  # tables created, no snapshot yet
    settings = dbt_settings(tmp_path)
    result = build(lake, settings)
    assert result.success, result.exception
    for model in MARTS:
        assert mart(settings, model) == []
    columns = duckdb.sql(f"describe select * from '{tmp_path}/marts/fct_ohlcv_daily/data.parquet'").fetchall()
    assert [c[0] for c in columns][:3] == ["symbol", "trade_date", "open_usd"]


def test_source_freshness_docs_and_run_results(built: AnalyticsSettings, lake: TestLake) -> None:
    freshness = build(lake, built, command="source freshness")
    # the fixture is from 2024: both sources are stale, and dbt says so (rather than failing to run)
    sources = {uid: status for uid, status in statuses(freshness).items() if uid.startswith("source.")}
    assert sources == {"source.tickstream.lake.ticks": "error", "source.tickstream.lake.bars_1m": "error"}
    docs = build(lake, built, command=["docs", "generate"])
    assert docs.success, docs.exception
    assert (Path(built.state_dir) / "target" / "catalog.json").is_file()
    published = json.loads((Path(built.lake_root) / "_status" / "dbt" / "run_results.json").read_text())
    assert published["args"]["which"] in ("generate", "source", "freshness")


def test_dbt_column_lists_agree_with_the_lake_schemas_in_code(
    built: AnalyticsSettings, lake: TestLake
) -> None:
    # What dbt documents and what DuckDB reads are checked against tickstream.lake, the one definition of
    # the tables: a lake column renamed or removed in code fails here, not in a dashboard.
    docs = build(lake, built, command=["docs", "generate"])
    assert docs.success, docs.exception
    catalog = json.loads((Path(built.state_dir) / "target" / "catalog.json").read_text())
    project = find_project_dir(built.project_dir)
    sources = yaml.safe_load((project / "models" / "staging" / "__sources.yml").read_text())
    for table in sources["sources"][0]["tables"]:
        in_code = lake_table(table["name"]).columns
        read = catalog["sources"][f"source.tickstream.lake.{table['name']}"]["columns"]
        assert list(read) == list(in_code), table["name"]
        documented = [column["name"] for column in table["columns"]]
        assert set(documented) <= set(in_code), table["name"]
    for path in sorted((project / "models").rglob("*.yml")):
        for model in yaml.safe_load(path.read_text()).get("models", []):
            built_columns = catalog["nodes"][f"model.tickstream.{model['name']}"]["columns"]
            documented = [column["name"] for column in model.get("columns", [])]
            assert set(documented) <= set(built_columns), (path.name, set(documented) - set(built_columns))


def test_a_missing_table_is_a_clear_error(tmp_path: Path) -> None:
    lake = new_lake(tmp_path)
    lake.catalog.drop_table(lake.settings.identifier("bars_1m"))
    result = build(lake, dbt_settings(tmp_path))
    assert not result.success
    messages = str(result.exception) + " ".join(str(r.message) for r in (result.result or []))
    assert "tickstream.bars_1m is not in the Iceberg catalog" in messages


def test_cli_rejects_half_an_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "run_dbt", lambda *args, **kwargs: pytest.fail("a refused command must not run"))
    result = CliRunner().invoke(run.app, ["build", "--start", "2024-03-01"])
    assert (result.exit_code, result.output) == (2, "error: --start and --end go together\n")
    assert CliRunner().invoke(run.app, ["--help"]).exit_code == 0


def test_cli_passes_dbt_its_own_options(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake_run_dbt(*args: Any, **kwargs: Any) -> Done:
        calls.append((args, kwargs))
        return Done()

    monkeypatch.setattr(run, "run_dbt", fake_run_dbt)
    argv = ["source", "freshness", "--start", "2024-03-01", "--end", "2024-03-02", "--", "--threads", "1"]
    assert CliRunner().invoke(run.app, argv).exit_code == 0
    (words, vars), kwargs = calls[0]
    assert words == ["source", "freshness"] and vars == {"start": "2024-03-01", "end": "2024-03-02"}
    assert kwargs["extra_args"] == ["--threads", "1"]


class Done:
    """A dbt result that succeeded."""

    exception = None
    success = True
