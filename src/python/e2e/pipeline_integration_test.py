"""End to end through the packaged platform, checked against an independent computation over the input.

producer PEX (seeded simulation with late, duplicate and malformed records, event time spanning a past
hour H) → Kafka → streaming PEX (Spark) → the lake's Iceberg tables on S3 → Airflow (`airflow dags test` of
the hourly DAG from the Airflow PEX: closedness sensor, compaction PEX for ticks and bars, analytics PEX's
`dbt build`) → the dashboard's data layer. The expectation is computed from the records actually in the
topic with the contract's reference parser and polars — no Spark, no DuckDB: every accepted tick once, every
malformed record quarantined with its reason, bars, the dbt mart and the dashboard's bars equal to it; and
pyiceberg, Iceberg's own library, reads the same ticks as the platform's readers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import polars as pl
import pytest

from dashboard.lake_reader import Lake as DashboardLake
from dashboard.settings import DashboardSettings
from e2e.artifacts import package, source_dir
from e2e.expectations import Expected, consume_all
from ops.airflow_local import ensure_venv
from ops.services.kafka import ensure_topics
from testkit.expected import EXPECTED_BAR_SQL_COLUMNS, expected_bars
from testkit.lake import TestLake, private_catalog_settings
from tickstream.contracts import Tick
from tickstream.duckdb_lake import iceberg_scan
from tickstream.lake import BARS_1M, QUARANTINE, TICKS, LakeLocation, LakeTable, read_status
from tickstream.settings import DagSettings, PathsSettings, S3Settings, environment
from tickstream.topology import Topic

pytestmark = pytest.mark.integration

TICK_COUNT = 30_000
SPAN = timedelta(minutes=70)  # H - 2 min .. H + 68 min: hour H complete, the next one far enough to close it
WATERMARK = "30 seconds"
STEP_TIMEOUT_S = 420


# --- the platform's processes ----------------------------------------------------------------------


@dataclass
class Platform:
    """Environment and places shared by the component processes of one test run."""

    env: dict[str, str]
    topic: str
    lake: TestLake
    status_location: LakeLocation
    work: Path

    def run(self, argv: list[str], name: str, timeout: float = STEP_TIMEOUT_S) -> str:
        """Run a component to completion; its output goes to a log file; fail with the log's end."""
        log = self.work / f"{name}.log"
        with log.open("wb") as out:
            done = subprocess.run(
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        text = log.read_text(errors="replace")
        assert done.returncode == 0, f"{name} exited {done.returncode}:\n{text[-4000:]}"
        return text

    def status(self) -> dict[str, Any]:
        """The streaming job's status object ({} until written)."""
        try:
            return read_status(self.status_location)
        except OSError:
            return {}


def streaming_caught_up(status: dict[str, Any], records: int, watermark_at_least: datetime) -> bool:
    """The ticks query consumed every record and both queries' watermarks passed `watermark_at_least`."""
    queries = status.get("queries", {})
    offsets = (queries.get(TICKS.name, {}).get("end_offsets") or {}).values()
    if sum(int(v) for partitions in offsets for v in partitions.values()) < records:
        return False
    for name in (TICKS.name, BARS_1M.name):
        watermark = queries.get(name, {}).get("watermark")
        if not watermark:
            return False
        if datetime.fromisoformat(watermark.replace("Z", "+00:00")) < watermark_at_least:
            return False
    return True


@contextmanager
def streaming_job(
    platform: Platform, max_offsets_per_trigger: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The streaming PEX running on the platform's topic and lake; stopped gracefully on exit."""
    argv = [
        str(package("src.python.streaming", "bin.pex")),
        "--topic", platform.topic,
        "--lake-root", platform.status_location.root,
        "--checkpoint-dir", str(platform.work / "checkpoints"),
        "--trigger-seconds", "1",
        "--watermark-delay", WATERMARK,
        "--bars-trigger-seconds", "1",
    ]  # fmt: skip
    if max_offsets_per_trigger is not None:
        argv += ["--max-offsets-per-trigger", str(max_offsets_per_trigger)]
    log = (platform.work / "streaming.log").open("wb")
    job = subprocess.Popen(
        argv, env=platform.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield job
    finally:
        job.send_signal(signal.SIGTERM)
        try:
            job.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(30)
        log.close()


def wait_for(platform: Platform, job: subprocess.Popen[bytes], what: str, check: Callable[[], bool]) -> None:
    """Poll `check` while the streaming job lives; fail with its log's end on death or timeout."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not check():
        tail = (platform.work / "streaming.log").read_text(errors="replace")[-3000:]
        assert job.poll() is None, f"streaming job exited {job.returncode} waiting for {what}:\n{tail}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{tail}"
        time.sleep(1)


def run_streaming_until_caught_up(platform: Platform, records: int, watermark_at_least: datetime) -> None:
    """Start the streaming PEX, wait until it has everything and the hour is closed, stop it gracefully."""
    # several batches per hour, so that the hour has small files for the DAG's compaction to rewrite
    with streaming_job(platform, max_offsets_per_trigger=TICK_COUNT // 10) as job:
        wait_for(
            platform,
            job,
            "the streaming job to catch up",
            lambda: streaming_caught_up(platform.status(), records, watermark_at_least),
        )


def run_airflow_dag(platform: Platform, hour: datetime) -> str:
    """`airflow dags test` of the hourly DAG for [hour, hour + 1h) with the Airflow PEX's virtualenv."""
    venv = ensure_venv(
        package("src.dags", "airflow.pex"), PathsSettings().cache_dir / "test-venvs" / "airflow"
    )
    airflow = str(venv / "bin" / "airflow")
    platform.env.update(
        {
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(platform.work / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(source_dir("src/dags")),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAG_IGNORE_FILE_SYNTAX": "glob",
        }
    )
    platform.run([airflow, "db", "migrate"], "airflow-db-migrate", timeout=300)
    # A manual run at H+1 covers the interval [H, H+1), as the scheduler's run for hour H does.
    run_after = (hour + timedelta(hours=1)).isoformat()
    return platform.run([airflow, "dags", "test", "tickstream_compaction", run_after], "airflow-dags-test")


# --- reading the results -----------------------------------------------------------------------------


def read_table(
    dashboard: DashboardLake, table: LakeTable, columns: str, start: datetime, end: datetime
) -> list[tuple[Any, ...]]:
    """Sorted rows of a table's current snapshot in [start, end) of its partition column, read by DuckDB."""
    location = dashboard.metadata_location(table)
    assert location is not None
    column = table.partition_column
    query = f"SELECT {columns} FROM {iceberg_scan(location)} WHERE {column} >= $start AND {column} < $end"
    return sorted(dashboard.query(query, {"start": start, "end": end}).rows())


@pytest.fixture
def platform(
    kafka_bootstrap: str, s3_settings: S3Settings, spark_connector_jars: list[Path], tmp_path: Path
) -> Iterator[Platform]:
    """A fresh topic and lake prefix, and the environment every component process gets."""
    run = uuid.uuid4().hex[:8]
    topic = Topic(f"ticks-e2e-{run}", 3, 7 * 86_400_000, "end-to-end test")
    ensure_topics(kafka_bootstrap, [topic])
    lake = TestLake(private_catalog_settings(tmp_path / "lake", s3_settings), s3_settings)
    status = LakeLocation(f"{lake.settings.warehouse}-status", s3_settings)
    jars = ",".join(str(jar) for jar in spark_connector_jars)
    env = {
        **os.environ,
        "TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        **lake.env(),
        "TICKSTREAM_STREAMING_JARS": jars,
        "TICKSTREAM_COMPACTION_JARS": jars,
        "TICKSTREAM_LAKE_ROOT": status.root,
        **environment(
            DagSettings(
                compaction_command=str(package("src.python.compaction", "bin.pex")),
                analytics_command=str(package("src.python.analytics", "bin.pex")),
            )
        ),
        "TICKSTREAM_DBT_PROJECT_DIR": str(source_dir("src/sql/dbt")),
        "TICKSTREAM_DBT_STATE_DIR": str(tmp_path / "dbt"),
        "TICKSTREAM_DBT_DUCKDB_PATH": str(tmp_path / "dbt" / "marts.duckdb"),
    }
    yield Platform(env, topic.name, lake, status, tmp_path)


def test_ticks_flow_through_every_component_exactly_once(platform: Platform) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    start = hour - timedelta(minutes=2)
    hour_us = int(hour.timestamp() * 1_000_000)
    end_us = hour_us + 3_600 * 1_000_000

    # 1. producer: a seeded, badly behaved market whose event time spans hour H
    platform.env["TICKSTREAM_PRODUCER_START_TS_US"] = str(int(start.timestamp() * 1_000_000))
    platform.env["TICKSTREAM_PRODUCER_EVENT_RATE_HZ"] = str(TICK_COUNT / SPAN.total_seconds())
    platform.run(
        [
            str(package("src.python.producer", "bin.pex")),
            "simulate",
            "--count", str(TICK_COUNT),
            "--seed", "2026",
            "--late", "0.01",
            "--duplicates", "0.02",
            "--malformed", "0.003",
            "--topic", platform.topic,
            "--rate", "0",
        ],
        "producer",
    )  # fmt: skip
    values = consume_all(platform.env["TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"], platform.topic, 3)
    expected = Expected.from_records(values)
    assert len(expected.ticks) == TICK_COUNT
    assert expected.duplicates > 0 and sum(expected.rejected_reasons.values()) > 0

    # 2. streaming until hour H is closed (watermark past its end + the compaction margin)
    run_streaming_until_caught_up(platform, len(values), hour + timedelta(hours=1, minutes=3))
    totals = platform.status()["queries"][TICKS.name]["totals"]
    # Batches of a tenth of the stream end at different event times per partition, so some ticks arrive
    # after their minute's bar was written: they are stored and counted late (step 4 proves the bars were
    # corrected); only the re-sends are dropped.
    assert (totals["rows_written"], totals["duplicates"]) == (len(expected.ticks), expected.duplicates)

    # 3. Airflow: sensor, compaction and maintenance of ticks and bars, dbt build of the hour
    lake = platform.lake
    assert lake.hour_files(TICKS, hour) > 1  # one file per batch: the hour needs compacting
    dag_log = run_airflow_dag(platform, hour)
    for table in (TICKS, BARS_1M):  # the bars' hour may hold one file already (its updates are timed)
        assert lake.hour_files(table, hour) == 1, f"{table.name} hour not compacted:\n{dag_log[-4000:]}"

    # 4. the lake, read by DuckDB through the catalog, equals the independent computation
    dashboard = DashboardLake(
        DashboardSettings(lake_root=platform.status_location.root), lake.s3, lake.settings
    )
    end = hour + timedelta(hours=1)
    tick_columns = "symbol, seq, ts_us, price, size, bid, ask"
    assert read_table(dashboard, TICKS, tick_columns, hour, end) == expected.ticks_between(hour_us, end_us)
    far = timedelta(days=2)
    all_ticks = read_table(dashboard, TICKS, tick_columns, hour - far, hour + far)
    assert all_ticks == expected.ticks_between(0, 2**62)
    # any engine: pyiceberg (not the platform's code) reads the same ticks
    read_by_pyiceberg = lake.read(TICKS).select(tick_columns.split(", ")).to_pylist()
    assert sorted(tuple(row.values()) for row in read_by_pyiceberg) == all_ticks
    assert read_table(dashboard, BARS_1M, EXPECTED_BAR_SQL_COLUMNS, hour, end) == expected.bars_between(
        hour_us, end_us
    )
    quarantined = read_table(dashboard, QUARANTINE, "reason", hour - far, hour + far)
    assert Counter(reason for (reason,) in quarantined) == expected.rejected_reasons

    # 5. dbt: the hour's trading activity mart published to the lake
    activity = sorted(
        dashboard.query(
            "SELECT symbol, trade_date, trade_hour, trade_count, volume_shares FROM read_parquet($file)",
            {"file": platform.status_location.url("marts/fct_activity_hourly/data.parquet")},
        ).rows()
    )
    frame = pl.DataFrame(
        expected.ticks_between(hour_us, end_us), orient="row", schema=tick_columns.split(", ")
    )
    per_symbol = frame.group_by("symbol").agg(n=pl.len(), volume=pl.col("size").sum()).sort("symbol")
    assert [row for row in activity if row[1] == hour.date() and row[2] == hour.hour] == [
        (r["symbol"], hour.date(), hour.hour, r["n"], r["volume"]) for r in per_symbol.iter_rows(named=True)
    ]

    # 6. the dashboard's data layer shows the same bars
    location = dashboard.metadata_location(BARS_1M)
    assert location is not None
    shown = dashboard.bars(location, hour, end).sort("symbol", "window_start")
    assert [
        (
            r["symbol"],
            round(r["window_start"].timestamp() * 1_000_000),
            *(r[c] for c in ("open", "high", "low", "close", "volume", "trade_count")),
        )
        for r in shown.iter_rows(named=True)
    ] == [bar[:7] + bar[8:] for bar in expected.bars_between(hour_us, end_us)]


# --- historical replay into the running platform ------------------------------------------------------

REPLAY_SYMBOLS = ("OLDA", "OLDB")
REPLAY_DAYS = 520  # two years of weekdays from 2017-01-02


def daily_bars_file(path: Path) -> pl.DataFrame:
    """Two years of daily bars of two symbols (prices in cents), written as CSV; returned as written."""
    days = [d for d in (datetime(2017, 1, 2) + timedelta(days=i) for i in range(730)) if d.weekday() < 5]
    rows = []
    for n, symbol in enumerate(REPLAY_SYMBOLS):
        for i, day in enumerate(days[:REPLAY_DAYS]):
            base = 5_000 + 700 * n + (i * 37) % 900
            low, high = base - 25 - i % 40, base + 30 + (i * 7) % 50
            close = low + (i * 13) % (high - low + 1)
            rows.append(
                (symbol, day.date(), base / 100, high / 100, low / 100, close / 100, 1_000 + i * 17 + n)
            )
    bars = pl.DataFrame(
        rows, orient="row", schema=["symbol", "timestamp", "open", "high", "low", "close", "volume"]
    )
    bars.write_csv(path)
    return bars


def test_replay_of_past_years_lands_in_lake_bars_and_marts_while_live_ticks_flow(platform: Platform) -> None:
    from ops.replay import ReplayRequest, replay
    from producer.replay import read_table as read_replay_file
    from producer.replay import to_tick_frame

    path = platform.work / "daily.csv"
    file_bars = daily_bars_file(path)
    bootstrap = platform.env["TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"]
    live_argv = [
        str(package("src.python.producer", "bin.pex")),
        "simulate", "--rate", "300", "--symbols", "LIVEA,LIVEB", "--topic", platform.topic,
    ]  # fmt: skip
    with streaming_job(platform) as job, (platform.work / "live.log").open("wb") as live_log:
        live = subprocess.Popen(live_argv, env=platform.env, stdout=live_log, stderr=subprocess.STDOUT)
        try:
            wait_for(platform, job, "live bars in the lake", lambda: platform.lake.files(BARS_1M) >= 1)
            before = platform.status()["queries"][TICKS.name]
            report = replay(
                ReplayRequest(
                    path=path,
                    publish=[str(package("src.python.producer", "bin.pex"))],
                    model=[str(package("src.python.analytics", "bin.pex"))],
                    compact=[str(package("src.python.compaction", "bin.pex"))],
                    bootstrap=bootstrap,
                    topic=platform.topic,
                    status=platform.status_location,
                    timeout_s=STEP_TIMEOUT_S,
                    env=platform.env,
                    catalog=platform.lake.settings,
                    s3=platform.lake.s3 or S3Settings(),
                )
            )
            print(f"replay: {report}")
            live_rows = live_ticks_stored(platform)
            wait_for(platform, job, "more live ticks", lambda: live_ticks_stored(platform) > live_rows)
            after = platform.status()["queries"][TICKS.name]
        finally:
            live.terminate()  # a graceful stop: it flushes what it holds
            try:
                live.wait(60)
            except subprocess.TimeoutExpired:
                live.kill()
                live.wait(30)
    assert after["query_id"] == before["query_id"] and after["state"] == "active"  # never stopped
    assert after["last_batch_id"] > before["last_batch_id"]

    # the lake: every replayed tick, in its own years' hours, and bars equal to them
    replayed = to_tick_frame(read_replay_file(path))
    stored = platform.lake.read(TICKS).to_pylist()
    old = sorted(
        (t["symbol"], t["ts_us"], t["price"], t["size"]) for t in stored if t["symbol"] in REPLAY_SYMBOLS
    )
    assert old == sorted(replayed.select("symbol", "ts_us", "price", "size").iter_rows())
    bars = platform.lake.read(BARS_1M).to_pylist()
    stored_bars = sorted(
        (b["symbol"], round(b["window_start"].timestamp() * 1e6), b["open"], b["high"], b["low"], b["close"],
         b["volume"], b["vwap"], b["trade_count"])
        for b in bars
        if b["symbol"] in REPLAY_SYMBOLS
    )  # fmt: skip
    assert stored_bars == expected_bars(cast(list[Tick], replayed.to_dicts()))

    # the daily mart the History page reads: the file's OHLC to the cent, volume exact
    dashboard = DashboardLake(
        DashboardSettings(lake_root=platform.status_location.root), platform.lake.s3, platform.lake.settings
    )
    daily = dashboard.query(
        "SELECT symbol, trade_date, round(open_usd * 100), round(high_usd * 100), round(low_usd * 100), "
        "round(close_usd * 100), volume_shares FROM read_parquet($file) WHERE symbol IN ('OLDA', 'OLDB')",
        {"file": platform.status_location.url("marts/fct_ohlcv_daily/data.parquet")},
    ).rows()
    assert sorted(daily) == sorted(
        (r[0], r[1], round(r[2] * 100), round(r[3] * 100), round(r[4] * 100), round(r[5] * 100), r[6])
        for r in file_bars.iter_rows()
    )


def live_ticks_stored(platform: Platform) -> int:
    """Ticks of the live symbols in the lake."""
    ticks = platform.lake.read(TICKS).select(["symbol"]).to_pylist()
    return sum(1 for t in ticks if t["symbol"].startswith("LIVE"))
