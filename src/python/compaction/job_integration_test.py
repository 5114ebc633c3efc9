"""Compaction against real S3 (SeaweedFS) and Spark, run as `python -m compaction.job` subprocesses.

An hour of many small commits (as the stream appends them) is compacted while a reader polls it through
the catalog with DuckDB and a writer keeps appending to the same table: the reader always sees every row
(never none, never twice), the writer's commits all land. Also: idempotence, a SIGKILL while the rewrite's
new files are being written (the table is unchanged, the re-run finishes and maintenance deletes the
killed run's files), and refusal of an open hour.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
from pyiceberg.exceptions import CommitFailedException

from compaction.testdata import fill_hour, hour_start, synthetic_ticks, ticks_summary, write_status
from testkit.lake import TestLake
from tickstream.catalog import load_table, metadata_location
from tickstream.duckdb_lake import connect
from tickstream.lake import BARS_1M, TICKS, LakeLocation, s3_filesystem
from tickstream.settings import S3Settings

pytestmark = pytest.mark.integration

SRC = Path(__file__).resolve().parents[1]
DATE, HOUR = "2024-03-01", "09"
JOB_TIMEOUT_S = 600
WRITER_PAUSE_S = 1.0
"""The concurrent writer commits about once a second, as the streaming job does at its default trigger."""


class Compaction:
    """Runs the job as a subprocess against one test lake."""

    def __init__(self, lake: TestLake, jars: list[Path], status: LakeLocation) -> None:
        self.env = {
            **os.environ,
            "PYTHONPATH": str(SRC),
            "PYSPARK_PYTHON": sys.executable,
            **lake.env(),
            "TICKSTREAM_COMPACTION_JARS": ",".join(str(jar) for jar in jars),
            "TICKSTREAM_LAKE_ROOT": status.root,
        }

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "compaction.job", *args],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def __call__(self, *args: str, **env: str) -> tuple[int, dict[str, Any], str]:
        process = self.start(*args, **env)
        stdout, stderr = process.communicate(timeout=JOB_TIMEOUT_S)
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        return process.returncode, (json.loads(lines[-1]) if lines else {}), stderr


@pytest.fixture
def setup(s3_lake: TestLake, spark_connector_jars: list[Path]) -> Iterator[tuple[Compaction, TestLake]]:
    status = LakeLocation(f"{s3_lake.settings.warehouse}-status", s3_lake.s3)
    write_status(status, datetime(2024, 3, 1, 10, 5, tzinfo=UTC))  # 09h closed, 10h open
    yield Compaction(s3_lake, spark_connector_jars, status), s3_lake


def hour_args(hour: str = HOUR) -> list[str]:
    return ["--table", "all", "--date", DATE, "--hour", hour]


def rows_seen(lake: TestLake, s3: S3Settings) -> int:
    with connect(s3) as con:
        return sum(row[1] for row in ticks_summary(con, lake, DATE, HOUR))


def test_compaction_keeps_every_row_under_readers_and_writers_and_is_idempotent(
    setup: tuple[Compaction, TestLake], s3_settings: S3Settings
) -> None:
    job, lake = setup
    fill_hour(lake, DATE, HOUR, batches=120, rows_per_batch=500)
    with connect(s3_settings) as con:
        before = ticks_summary(con, lake, DATE, HOUR)
    assert sum(row[1] for row in before) == 60_000 and lake.files(TICKS) == 120

    seen: list[int] = []
    appended: list[int] = []
    stop = threading.Event()

    def read() -> None:  # a reader during the run: always every row of the hour, never none or twice
        while not stop.is_set():
            seen.append(rows_seen(lake, s3_settings))

    def write() -> None:  # the stream keeps appending to the table (the open hour), once a second
        start = hour_start(DATE, "10")
        while not stop.is_set():
            rows = synthetic_ticks(start, 100 * len(appended), 100, 100_000)
            try:
                lake.append(TICKS, rows)
            except CommitFailedException:  # raced the compaction's commit: retry, as Iceberg's writers do
                continue
            appended.append(rows.num_rows)
            time.sleep(WRITER_PAUSE_S)

    threads = [threading.Thread(target=read), threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    try:
        code, report, stderr = job(*hour_args())
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert code == 0, stderr[-3000:]
    assert report["status"] == "ok"
    ticks_report, bars_report = report["hours"]
    assert (ticks_report["action"], ticks_report["files_before"], ticks_report["files_after"]) == (
        "compact",
        120,
        1,
    )
    assert (bars_report["table"], bars_report["files_before"], bars_report["files_after"]) == (
        "bars_1m",
        120,
        1,
    )
    assert ticks_report["rows"] == 60_000 and ticks_report["bytes_after"] > 0
    assert '"event": "hour_compact"' in stderr
    assert seen and set(seen) == {60_000}, seen
    assert len(appended) >= 3, "the writer did not append while the compaction ran"
    print(f"reader observations during the run: {len(seen)}; concurrent appends: {len(appended)}")

    hour_10 = datetime(2024, 3, 1, 10, tzinfo=UTC)
    with connect(s3_settings) as con:
        assert ticks_summary(con, lake, DATE, HOUR) == before
        location = metadata_location(lake.catalog, lake.settings, TICKS)
        found = con.execute(
            f"SELECT count(*) FROM iceberg_scan('{location}') WHERE event_time >= ?", [hour_10]
        ).fetchone()
    assert found is not None
    (count,) = found
    assert count == sum(appended)  # every concurrent append is in the table, once
    assert {m["table"] for m in report["maintenance"]} == {TICKS.name, BARS_1M.name}

    snapshot = load_table(lake.catalog, lake.settings, TICKS).current_snapshot()
    code, again, stderr = job(*hour_args(), "--no-maintenance")
    assert code == 0, stderr[-3000:]
    assert [h["action"] for h in again["hours"]] == ["noop", "noop"]
    assert load_table(lake.catalog, lake.settings, TICKS).current_snapshot() == snapshot  # nothing committed
    with connect(s3_settings) as con:
        assert ticks_summary(con, lake, DATE, HOUR) == before


def data_files(lake: TestLake) -> set[str]:
    """Every object under the ticks table's data directory (committed or not)."""
    filesystem = s3_filesystem(lake.s3)
    table = load_table(lake.catalog, lake.settings, TICKS)
    selector = pafs.FileSelector(f"{table.location().removeprefix('s3://')}/data", recursive=True)
    return {info.path for info in filesystem.get_file_info(selector) if info.type == pafs.FileType.File}


def test_kill_during_the_rewrite_then_rerun(
    setup: tuple[Compaction, TestLake], s3_settings: S3Settings
) -> None:
    job, lake = setup
    fill_hour(lake, DATE, HOUR, batches=16, rows_per_batch=25_000)  # 400k rows: several output files
    committed = data_files(lake)
    snapshot = load_table(lake.catalog, lake.settings, TICKS).current_snapshot()
    with connect(s3_settings) as con:
        before = ticks_summary(con, lake, DATE, HOUR)

    process = job.start("--table", "ticks", "--date", DATE, "--hour", HOUR, "--target-file-mb", "1")
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not data_files(lake) - committed:  # the rewrite has started writing its files
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the rewrite never wrote a file"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)

    # the fault happened before the commit: the table is as it was, the killed run left files behind
    assert load_table(lake.catalog, lake.settings, TICKS).current_snapshot() == snapshot
    leftovers = data_files(lake) - committed
    assert leftovers
    with connect(s3_settings) as con:
        assert ticks_summary(con, lake, DATE, HOUR) == before

    code, report, stderr = job(
        "--table", "ticks", "--date", DATE, "--hour", HOUR, "--target-file-mb", "1",
        TICKSTREAM_COMPACTION_ORPHAN_AGE_HOURS="0",
    )  # fmt: skip
    assert code == 0, stderr[-3000:]
    assert report["hours"][0]["action"] == "compact"
    assert report["maintenance"][0]["orphan_files_deleted"] >= len(leftovers)
    assert not leftovers & data_files(lake)  # the killed run's files are gone
    with connect(s3_settings) as con:
        assert ticks_summary(con, lake, DATE, HOUR) == before


def test_open_hour_is_refused(setup: tuple[Compaction, TestLake]) -> None:
    job, lake = setup
    fill_hour(lake, DATE, "10", batches=3, rows_per_batch=10)
    code, report, stderr = job(*hour_args("10"))
    assert code == 3
    assert report["status"] == "refused"
    assert "ticks/2024-03-01T10 is still open" in stderr
    assert lake.files(TICKS) == 3
