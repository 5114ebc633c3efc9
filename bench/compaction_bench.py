"""Compaction benchmark: an hour of ticks as the stream appends it; files and a DuckDB query before/after.

1. appends `--rate` ticks/s x `--seconds` to a scratch lake's `ticks` table as `--files` small data files
   (the streaming job's shape: 5k ticks/s x 3600 s = 18M ticks in 3,600 files), in `--commits` commits, with
   Spark (one file per task), plus a status object that closes the hour;
2. times a DuckDB query over the hour (per-symbol count, volume, min/max/avg price) through the catalog
   (`iceberg_scan` of the current metadata location, resolved each time) — median of `--repeat` runs;
3. runs `python -m compaction.job` for the hour (a subprocess, local Spark) and times it;
4. times the same query again and checks it returns the same result.

Targets: >= 20x fewer files, query >= 5x faster. Writes bench/results/compaction.json. Runs its own
private S3 server (temporary directory, free ports), stopped at the end:

    PYTHONPATH=src/python PYSPARK_PYTHON=$(which python) python bench/compaction_bench.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from figures import write_results

from compaction.testdata import hour_start, write_status
from ops.services.spark_jars import install_spark_jars
from testkit.lake import TestLake, private_catalog_settings
from testkit.services import private_s3_server
from testkit.spark import register_lake, test_session
from tickstream.catalog import metadata_location
from tickstream.commands import command_app
from tickstream.duckdb_lake import connect, iceberg_scan
from tickstream.lake import TICKS, LakeLocation
from tickstream.settings import PathsSettings, S3Settings

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "compaction.json"
SRC = Path(__file__).resolve().parents[1] / "src" / "python"
DATE, HOUR = "2024-03-01", "09"
QUERY = (
    "SELECT symbol, count(*) AS ticks, sum(size) AS volume, min(price) AS low, max(price) AS high, "
    "avg(price) AS mean FROM {relation} WHERE event_time >= ? AND event_time < ? "
    "GROUP BY symbol ORDER BY symbol"
)
SYMBOLS = "array('AAPL', 'MSFT', 'NVDA', 'AMZN', 'GOOGL', 'META', 'TSLA', 'SPY', 'BRK.B', 'JPM')"


def append_hour(lake: TestLake, jars: list[Path], rows: int, files: int, commits: int) -> int:
    """Append `rows` ticks spread over the hour as `files` data files in `commits` appends (Spark)."""
    spark = test_session("tickstream-compaction-bench", jars)
    register_lake(spark, lake)
    start_us = int(hour_start(DATE, HOUR).timestamp() * 1_000_000)
    step_us = 3_600_000_000 // rows
    per_commit = rows // commits
    try:
        for commit in range(commits):
            first = commit * per_commit
            frame = spark.range(first, first + per_commit, numPartitions=files // commits).selectExpr(
                "1 AS schema_version",
                f"element_at({SYMBOLS}, CAST(id % 10 AS INT) + 1) AS symbol",
                "id DIV 10 + 1 AS seq",
                f"{start_us} + id * {step_us} AS ts_us",
                "100.0 + (hash(id) % 5000) / 100.0 AS price",
                "1 + abs(hash(id, 1)) % 500 AS size",
                "99.99 + (hash(id) % 5000) / 100.0 AS bid",
                "100.01 + (hash(id) % 5000) / 100.0 AS ask",
                "CAST(id % 3 AS INT) AS kafka_partition",
                "id AS kafka_offset",
                f"timestamp_micros({start_us} + id * {step_us}) AS event_time",
            )
            frame.writeTo(lake.settings.spark_identifier(TICKS.name)).append()
    finally:
        spark.stop()
    return per_commit * commits


def timed_query(lake: TestLake, s3: S3Settings, repeat: int) -> tuple[float, list[tuple[Any, ...]], int]:
    """Median seconds of (catalog lookup + DuckDB query) over `repeat` runs, the result, the files."""
    start = hour_start(DATE, HOUR)
    durations, result = [], []
    with connect(s3) as con:
        for _ in range(repeat):
            started = time.perf_counter()
            location = metadata_location(lake.catalog, lake.settings, TICKS)
            assert location is not None
            query = QUERY.format(relation=iceberg_scan(location))
            result = con.execute(query, [start, start + timedelta(hours=1)]).fetchall()
            durations.append(time.perf_counter() - started)
    return (
        statistics.median(durations),
        [tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in result],
        lake.files(TICKS),
    )


DESCRIPTION = __doc__.splitlines()[0]
app = command_app(DESCRIPTION)


@app.command(help=DESCRIPTION)
def benchmark(
    rate: Annotated[int, typer.Option(help="ticks per second")] = 5000,
    seconds: Annotated[int, typer.Option(help="seconds of the hour to fill")] = 3600,
    files: Annotated[int, typer.Option(help="small data files for the hour")] = 3600,
    commits: Annotated[int, typer.Option(help="appends they arrive in")] = 60,
    target_file_mb: Annotated[int, typer.Option(help="the compaction job's target file size (MB)")] = 128,
    repeat: Annotated[int, typer.Option(help="runs of each query (the median counts)")] = 3,
) -> None:
    """Run the benchmark; print and store the results."""
    jars = install_spark_jars(PathsSettings())
    with private_s3_server() as service, tempfile.TemporaryDirectory(prefix="compaction-bench-") as scratch:
        s3 = service.s3
        lake = TestLake(private_catalog_settings(Path(scratch) / "lake", s3), s3)
        started = time.perf_counter()
        rows = append_hour(lake, jars, rate * seconds, files, commits)
        write_seconds = time.perf_counter() - started
        status = LakeLocation(f"{lake.settings.warehouse}-status", s3)
        write_status(status, datetime(2024, 3, 1, 10, tzinfo=UTC) + timedelta(minutes=10))
        print(f"appended {rows} ticks as {lake.files(TICKS)} files in {write_seconds:.1f}s", file=sys.stderr)

        query_before, result_before, files_before = timed_query(lake, s3, repeat)
        print(f"query before: {query_before:.2f}s over {files_before} files", file=sys.stderr)

        env = {
            **os.environ,
            "PYTHONPATH": str(SRC),
            "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
            **lake.env(),
            "TICKSTREAM_COMPACTION_JARS": ",".join(str(jar) for jar in jars),
        }
        argv = [
            sys.executable, "-m", "compaction.job", "--table", "ticks", "--date", DATE, "--hour", HOUR,
            "--lake-root", status.root, "--target-file-mb", str(target_file_mb),
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        compaction_seconds = time.perf_counter() - started
        if done.returncode != 0:
            print(done.stderr[-5000:], file=sys.stderr)
            raise typer.Exit(done.returncode)
        job_report = json.loads(done.stdout.strip().splitlines()[-1])
        report = job_report["hours"][0]

        query_after, result_after, files_after = timed_query(lake, s3, repeat)
        print(f"query after: {query_after:.2f}s over {files_after} files", file=sys.stderr)
        if result_after != result_before:
            print("query results differ before/after compaction", file=sys.stderr)
            raise typer.Exit(1)

    results = {
        "benchmark": "compaction",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "workload": {
            "ticks": rows,
            "rate_per_s": rate,
            "seconds": seconds,
            "files": files,
            "commits": commits,
            "target_file_mb": target_file_mb,
            "write_seconds": round(write_seconds, 1),
        },
        "files_before": files_before,
        "files_after": files_after,
        "bytes_before": report["bytes_before"],
        "bytes_after": report["bytes_after"],
        "files_ratio": round(files_before / files_after, 1),
        "compaction_seconds": round(compaction_seconds, 1),
        "compaction_job_report": report,
        "maintenance_report": job_report.get("maintenance"),
        "query_seconds_before": round(query_before, 3),
        "query_seconds_after": round(query_after, 3),
        "query_speedup": round(query_before / query_after, 1),
        "same_query_result": True,
        "targets": {"files_ratio": ">= 20", "query_speedup": ">= 5"},
    }
    write_results(RESULTS_PATH, results)


def main() -> None:
    """Entry point (`python bench/compaction_bench.py`, `./pants run bench/compaction_bench.py -- ...`)."""
    app()


if __name__ == "__main__":
    main()
