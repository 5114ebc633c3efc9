"""Test harness for the Airflow tests, run as a separate process in the spark environment.

The DAG lives in the airflow resolve, which has no pyarrow, DuckDB or service tooling; its test drives this
small CLI (packaged as `src/python/compaction:harness`) instead:

* `serve-s3`: run a private S3 server (like the `private_s3` fixture), print one JSON line with its settings
  and the Spark connector jars, and stop it when stdin closes;
* `write-hour`: write an hour of synthetic stream objects (ticks and bars) plus a status object closing it;
* `summary`: per-symbol rows and sums of an hour read by DuckDB through the reader rule, its objects, and
  the hour's rows of the published dbt mart `fct_activity_hourly` (symbol, trade count), if any.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.fs as pafs

from compaction.testdata import (
    StreamWriter,
    duckdb_connection,
    private_s3_server,
    ticks_summary,
    write_status,
)
from tickstream.lake import BARS_1M, TICKS, LakeLocation, committed_hour
from tickstream.logs import configure_logging
from tickstream.services.spark_jars import install_spark_jars
from tickstream.settings import PathsSettings, S3Settings

ACTIVITY_MART = "marts/fct_activity_hourly/data.parquet"


def serve_s3() -> int:
    """Run a private S3 server until stdin closes, then stop it."""
    jars = [str(jar) for jar in install_spark_jars(PathsSettings())]
    with private_s3_server() as service:
        print(json.dumps({"s3": service.s3.model_dump(), "jars": jars}), flush=True)
        sys.stdin.read()
    return 0


def activity_hourly(con: Any, location: LakeLocation, date: str, hour: str) -> list[list[str]]:
    """(symbol, trade_count) of the hour in the published mart fct_activity_hourly ([] if not published)."""
    filesystem, _ = location.filesystem()
    if filesystem.get_file_info(location.path(ACTIVITY_MART)).type == pafs.FileType.NotFound:
        return []
    rows = con.execute(
        f"SELECT symbol, trade_count FROM read_parquet('{location.url(ACTIVITY_MART)}') "
        "WHERE trade_date = CAST(? AS DATE) AND trade_hour = ? ORDER BY symbol",
        [date, int(hour)],
    ).fetchall()
    return [[str(value) for value in row] for row in rows]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="compaction-harness")
    parser.add_argument("command", choices=["serve-s3", "write-hour", "summary"])
    parser.add_argument("--lake-root")
    parser.add_argument("--date")
    parser.add_argument("--hour")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--rows", type=int, default=200)
    args = parser.parse_args(argv)
    configure_logging()  # logs to stderr: stdout carries only the JSON answer
    if args.command == "serve-s3":
        return serve_s3()
    s3 = S3Settings()
    location = LakeLocation(args.lake_root, s3)
    output: dict[str, Any]
    if args.command == "write-hour":
        writer = StreamWriter(location, args.date, args.hour)
        ticks = writer.ticks(args.batches, args.rows)
        bars = writer.bars(args.batches)
        start = datetime.strptime(f"{args.date} {args.hour}", "%Y-%m-%d %H").replace(tzinfo=UTC)
        write_status(location, start + timedelta(hours=1, minutes=10))
        output = {"ticks": ticks.num_rows, "bars_1m": bars.num_rows}
    else:
        con = duckdb_connection(s3)
        summary = ticks_summary(con, location, args.date, args.hour)
        output = {
            "ticks_summary": [[str(value) for value in row] for row in summary],
            "objects": {
                spec.name: {
                    "manifest": (view := committed_hour(location, spec, args.date, args.hour)).manifest
                    is not None,
                    "keys": view.keys,
                }
                for spec in (TICKS, BARS_1M)
            },
            "activity_hourly": activity_hourly(con, location, args.date, args.hour),
        }
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
