"""Compaction benchmark: an hour of ticks as streaming writes it; objects and a DuckDB query before/after.

1. writes `--rate` ticks/s x `--seconds` as one stream object per `--object-seconds` (the streaming job's
   shape: 5k ticks/s x 3600 s = 18M ticks in 3,600 small objects), directly with pyarrow under
   `tickstream.lake` names, plus a status object that closes the hour;
2. times a DuckDB query over the hour (per-symbol count, volume, min/max/avg price) read through the
   reader rule (`tickstream.lake.committed_objects`, listing included) — median of `--repeat` runs;
3. runs `python -m compaction.job` for the hour (a subprocess, local Spark) and times it;
4. times the same query again and checks it returns the same result.

Targets: >= 20x fewer objects, query >= 5x faster. Writes bench/results/compaction.json. Runs its own
private S3 server (temporary directory, free ports), stopped at the end:

    PYTHONPATH=src/python PYSPARK_PYTHON=$(which python) python bench/compaction_bench.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from compaction.testdata import StreamWriter, duckdb_connection, private_s3_server, write_status
from tickstream.lake import TICKS, LakeLocation, committed_objects, stream_objects
from tickstream.services.spark_jars import install_spark_jars
from tickstream.settings import PathsSettings

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "compaction.json"
SRC = Path(__file__).resolve().parents[1] / "src" / "python"
DATE, HOUR = "2024-03-01", "09"
QUERY = (
    "SELECT symbol, count(*) AS ticks, sum(size) AS volume, min(price) AS low, max(price) AS high, "
    "avg(price) AS mean FROM read_parquet({files}) GROUP BY symbol ORDER BY symbol"
)


def write_hour(lake: LakeLocation, rate: int, seconds: int, object_seconds: int, threads: int) -> int:
    """Write the hour's stream objects with `threads` writers (disjoint offsets); return rows written."""
    objects = seconds // object_seconds
    rows_per_object = rate * object_seconds
    hour_rows = objects * rows_per_object
    chunk = -(-objects // threads)

    def write(part: int) -> int:
        count = min(chunk, objects - part * chunk)
        if count <= 0:
            return 0
        writer = StreamWriter(
            lake, DATE, HOUR, query_id=str(uuid.uuid4()), next_offset=part * chunk * rows_per_object
        )
        return writer.ticks(count, rows_per_object, seed=part, hour_rows=hour_rows).num_rows

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(write, range(threads)))


def timed_query(lake: LakeLocation, s3: Any, repeat: int) -> tuple[float, list[tuple[Any, ...]], int]:
    """Median seconds of (reader rule + DuckDB query) over `repeat` runs, the result, and the object count."""
    con = duckdb_connection(s3)
    durations, result, files = [], [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        keys = committed_objects(lake, TICKS, DATE, HOUR)
        urls = "[" + ", ".join(f"'{lake.url(k)}'" for k in keys) + "]"
        result = con.execute(QUERY.format(files=urls)).fetchall()
        durations.append(time.perf_counter() - started)
        files = len(keys)
    return (
        statistics.median(durations),
        [tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in result],
        files,
    )


def main() -> int:
    """Run the benchmark; print and store the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=5000, help="ticks per second")
    parser.add_argument("--seconds", type=int, default=3600, help="seconds of the hour to fill")
    parser.add_argument("--object-seconds", type=int, default=1, help="seconds per stream object")
    parser.add_argument("--target-file-mb", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    jars = [str(jar) for jar in install_spark_jars(PathsSettings())]
    with private_s3_server() as service:
        s3 = service.s3
        lake = LakeLocation(f"s3://{s3.bucket}/bench-compaction-{uuid.uuid4().hex[:8]}", s3)
        started = time.perf_counter()
        rows = write_hour(lake, args.rate, args.seconds, args.object_seconds, args.threads)
        write_seconds = time.perf_counter() - started
        write_status(lake, datetime(2024, 3, 1, 10, tzinfo=UTC) + timedelta(minutes=10))
        before_objects = stream_objects(lake, TICKS, DATE, HOUR)
        print(f"wrote {rows} ticks in {len(before_objects)} objects in {write_seconds:.1f}s", file=sys.stderr)

        query_before, result_before, files_before = timed_query(lake, s3, args.repeat)
        print(f"query before: {query_before:.2f}s over {files_before} objects", file=sys.stderr)

        env = {
            **os.environ,
            "PYTHONPATH": str(SRC),
            "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
            "TICKSTREAM_S3_ENDPOINT_URL": s3.endpoint_url,
            "TICKSTREAM_S3_ACCESS_KEY_ID": s3.access_key_id,
            "TICKSTREAM_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
            "TICKSTREAM_S3_BUCKET": s3.bucket,
            "TICKSTREAM_COMPACTION_JARS": ",".join(jars),
        }
        argv = [
            sys.executable, "-m", "compaction.job", "--table", "ticks", "--date", DATE, "--hour", HOUR,
            "--lake-root", lake.root, "--target-file-mb", str(args.target_file_mb),
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        compaction_seconds = time.perf_counter() - started
        if done.returncode != 0:
            print(done.stderr[-5000:], file=sys.stderr)
            return done.returncode
        report = json.loads(done.stdout.strip().splitlines()[-1])["hours"][0]

        query_after, result_after, files_after = timed_query(lake, s3, args.repeat)
        print(f"query after: {query_after:.2f}s over {files_after} objects", file=sys.stderr)
        if result_after != result_before:
            print("query results differ before/after compaction", file=sys.stderr)
            return 1

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
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "object_seconds": args.object_seconds,
            "target_file_mb": args.target_file_mb,
            "write_seconds": round(write_seconds, 1),
        },
        "files_before": files_before,
        "files_after": files_after,
        "bytes_before": report["bytes_before"],
        "bytes_after": report["bytes_after"],
        "files_ratio": round(files_before / files_after, 1),
        "compaction_seconds": round(compaction_seconds, 1),
        "compaction_job_report": report,
        "query_seconds_before": round(query_before, 3),
        "query_seconds_after": round(query_after, 3),
        "query_speedup": round(query_before / query_after, 1),
        "same_query_result": True,
        "targets": {"files_ratio": ">= 20", "query_speedup": ">= 5"},
    }
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
