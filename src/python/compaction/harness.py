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

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import pyarrow.fs as pafs
import typer

from compaction.testdata import fill_hour, hour_start, ticks_summary, write_status
from ops.services.spark_jars import install_spark_jars
from testkit.lake import TestLake, private_catalog_settings
from testkit.services import private_s3_server
from tickstream.catalog import load_table
from tickstream.commands import command_app
from tickstream.duckdb_lake import connect
from tickstream.lake import BARS_1M, TICKS, LakeLocation, s3_filesystem
from tickstream.logs import configure_logging
from tickstream.settings import CatalogSettings, PathsSettings, S3Settings, settings_json

ACTIVITY_MART = "marts/fct_activity_hourly/data.parquet"


def serve_s3() -> int:
    """Run a private S3 server until stdin closes, then stop it."""
    jars = [str(jar) for jar in install_spark_jars(PathsSettings())]
    with private_s3_server() as service:
        print(json.dumps({"s3": json.loads(settings_json(service.s3)), "jars": jars}), flush=True)
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


app = command_app(
    "Test harness of the Airflow tests (stdout: one JSON line; logs: stderr).", no_args_is_help=True
)
DateOption = Annotated[str, typer.Option(help="Date of the hour (YYYY-MM-DD).")]
HourOption = Annotated[str, typer.Option(help="Hour (00-23).")]


@app.command("serve-s3")
def serve_s3_command() -> None:
    """Run a private S3 server until stdin closes; print its settings and the Spark jars."""
    configure_logging()
    raise typer.Exit(serve_s3())


@app.command("write-hour")
def write_hour(
    directory: Annotated[Path, typer.Option(help="Where the test lake's catalog goes.")],
    date: DateOption,
    hour: HourOption,
    batches: Annotated[int, typer.Option(help="Commits of ticks into the hour.")] = 60,
    rows: Annotated[int, typer.Option(help="Ticks per commit.")] = 200,
) -> None:
    """Fill one hour of a new test lake with small commits (and its true bars); write a status past it."""
    configure_logging()
    s3 = S3Settings()
    lake = TestLake(private_catalog_settings(directory, s3), s3)
    ticks = fill_hour(lake, date, hour, batches, rows)
    status = LakeLocation(f"{lake.settings.warehouse}-status", s3)
    write_status(status, hour_start(date, hour) + timedelta(hours=1, minutes=10))
    answer = {
        "catalog": lake.settings.model_dump(),
        "status_root": status.root,
        "ticks": ticks.num_rows,
        "bars_1m": lake.read(BARS_1M).num_rows,
    }
    print(json.dumps(answer))


@app.command()
def summary(
    marts_root: Annotated[str, typer.Option(help="Where the dbt marts are published.")],
    date: DateOption,
    hour: HourOption,
) -> None:
    """The hour's ticks summary, files per table and hourly activity mart, read back from the lake."""
    configure_logging()
    s3 = S3Settings()
    lake = TestLake(CatalogSettings(), s3)
    with connect(s3) as con:
        rows = ticks_summary(con, lake, date, hour)
    answer = {
        "ticks_summary": [[str(value) for value in row] for row in rows],
        "files": {table.name: lake.hour_files(table, hour_start(date, hour)) for table in (TICKS, BARS_1M)},
        "activity_hourly": activity_hourly(LakeLocation(marts_root, s3), date, hour),
    }
    print(json.dumps(answer))


@app.command(
    "kill-first-rewrite", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def kill_first_rewrite_command(
    ctx: typer.Context,
    marker: Annotated[Path, typer.Option(help="The file that says the kill happened.")],
) -> None:
    """Run the compaction command given after `--`; SIGKILL its first run during its rewrite."""
    configure_logging()
    s3 = S3Settings()
    command = [arg for arg in ctx.args if arg != "--"]
    raise typer.Exit(kill_first_rewrite(marker, command, TestLake(CatalogSettings(), s3)))


def main() -> None:
    """Entry point (the harness PEX)."""
    app()


if __name__ == "__main__":
    main()
