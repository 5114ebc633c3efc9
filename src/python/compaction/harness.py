"""Test harness for the Airflow tests, run as a separate process in the spark environment.

The DAG lives in the airflow resolve, which has no pyarrow, pyiceberg, DuckDB or service tooling; its test
drives this small CLI (packaged as `src/python/compaction:harness`) instead:

* `serve-s3`: run a private S3 server (like the `private_s3` fixture), print one JSON line with its settings
  and Spark's jars, and stop it when stdin closes;
* `write-hour`: create a test lake (its own catalog in `--directory`) and append an hour of ticks and bars
  in many small commits, as the stream does, plus a status object closing the hour; print the lake's
  catalog settings and status location;
* `summary`: per-symbol rows and sums of an hour of ticks read by DuckDB through the catalog, the hour's
  data files per table, and the hour's rows of the published dbt mart `fct_activity_hourly` (if any);
* `kill-first-rewrite --marker FILE -- COMMAND...`: run COMMAND (the compaction job); the first time (no
  FILE yet) SIGKILL it as soon as its rewrite has written a file and before it commits, and create FILE.
  The DAG's retry then runs the job again unharmed. Faults are injected here, never in the job itself.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from compaction.plan import HourPartition
from compaction.testdata import fill_hour, hour_start, ticks_summary, write_status
from tickstream.catalog import load_table
from tickstream.duckdb_lake import connect
from tickstream.lake import BARS_1M, TICKS, LakeLocation, s3_filesystem
from tickstream.logs import configure_logging
from tickstream.services.spark_jars import install_spark_jars
from tickstream.settings import CatalogSettings, PathsSettings, S3Settings
from tickstream.testing.lake import TestLake, private_catalog_settings
from tickstream.testing.services import private_s3_server

ACTIVITY_MART = "marts/fct_activity_hourly/data.parquet"


def serve_s3() -> int:
    """Run a private S3 server until stdin closes, then stop it."""
    jars = [str(jar) for jar in install_spark_jars(PathsSettings())]
    with private_s3_server() as service:
        print(json.dumps({"s3": service.s3.model_dump(), "jars": jars}), flush=True)
        sys.stdin.read()
    return 0


def activity_hourly(marts: LakeLocation, date: str, hour: str) -> list[list[str]]:
    """(symbol, trade_count) of the hour in the published mart fct_activity_hourly ([] if not published)."""
    filesystem, base = marts.filesystem()
    if filesystem.get_file_info(f"{base}/{ACTIVITY_MART}").type == pafs.FileType.NotFound:
        return []
    with connect(marts.s3) as con:
        rows = con.execute(
            f"SELECT symbol, trade_count FROM read_parquet('{marts.url(ACTIVITY_MART)}') "
            "WHERE trade_date = CAST(? AS DATE) AND trade_hour = ? ORDER BY symbol",
            [date, int(hour)],
        ).fetchall()
    return [[str(value) for value in row] for row in rows]


def hour_files(lake: TestLake, date: str, hour: str) -> dict[str, int]:
    """Data files of the hour in each table's current snapshot."""
    counts = {}
    for table in (TICKS, BARS_1M):
        files = load_table(lake.catalog, lake.settings, table).inspect.files()
        partitions = files["partition"].to_pylist()
        ordinal = HourPartition.of(table, date, hour).ordinal
        counts[table.name] = sum(1 for p in partitions if p[f"{table.partition_column}_hour"] == ordinal)
    return counts


def table_files(lake: TestLake) -> set[str]:
    """Every object under the ticks table's data directory, committed or not."""
    location = load_table(lake.catalog, lake.settings, TICKS).location()
    selector = pafs.FileSelector(
        f"{location.removeprefix('s3://')}/data", recursive=True, allow_not_found=True
    )
    return {i.path for i in s3_filesystem(lake.s3).get_file_info(selector) if i.type == pafs.FileType.File}


def kill_first_rewrite(marker: Path, command: Sequence[str], lake: TestLake) -> int:
    """Run `command`; unless `marker` exists, kill it once its rewrite wrote a file, and create `marker`."""
    if marker.exists():
        return subprocess.call(list(command))
    committed = table_files(lake)
    process = subprocess.Popen(list(command), start_new_session=True)
    while process.poll() is None:
        if table_files(lake) - committed:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            marker.write_text("killed during the rewrite\n")
            print("harness: killed the compaction during its rewrite", file=sys.stderr)
            return -signal.SIGKILL
        time.sleep(0.05)
    return process.returncode


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="compaction-harness")
    parser.add_argument("command", choices=["serve-s3", "write-hour", "summary", "kill-first-rewrite"])
    parser.add_argument("--directory", help="write-hour: where the test lake's catalog goes")
    parser.add_argument("--marts-root", help="summary: where the dbt marts are published")
    parser.add_argument("--date")
    parser.add_argument("--hour")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--marker", help="kill-first-rewrite: the file that says the kill happened")
    arguments = list(sys.argv[1:] if argv is None else argv)
    # kill-first-rewrite: everything after `--` is the command to run, options and all
    split = arguments.index("--") if "--" in arguments else len(arguments)
    args, rest = parser.parse_args(arguments[:split]), arguments[split + 1 :]
    configure_logging()  # logs to stderr: stdout carries only the JSON answer
    if args.command == "serve-s3":
        return serve_s3()
    s3 = S3Settings()
    if args.command == "kill-first-rewrite":
        return kill_first_rewrite(Path(args.marker), rest, TestLake(CatalogSettings(), s3))
    output: dict[str, Any]
    if args.command == "write-hour":
        lake = TestLake(private_catalog_settings(Path(args.directory), s3), s3)
        ticks = fill_hour(lake, args.date, args.hour, args.batches, args.rows)
        status = LakeLocation(f"{lake.settings.warehouse}-status", s3)
        write_status(status, hour_start(args.date, args.hour) + timedelta(hours=1, minutes=10))
        output = {
            "catalog": lake.settings.model_dump(),
            "status_root": status.root,
            "ticks": ticks.num_rows,
            "bars_1m": lake.read(BARS_1M).num_rows,
        }
    else:
        lake = TestLake(CatalogSettings(), s3)
        with connect(s3) as con:
            summary = ticks_summary(con, lake, args.date, args.hour)
        output = {
            "ticks_summary": [[str(value) for value in row] for row in summary],
            "files": hour_files(lake, args.date, args.hour),
            "activity_hourly": activity_hourly(LakeLocation(args.marts_root, s3), args.date, args.hour),
        }
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
