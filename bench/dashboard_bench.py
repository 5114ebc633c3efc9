"""Dashboard benchmark: the day view's data read (`dashboard.data.Lake.bars`) on raw vs compacted hours.

Writes one UTC day of 1-minute bars for `--symbols` symbols into a scratch lake prefix, each hour as
`--objects-per-hour` stream objects (the streaming job's layout), and times the day view's read of the
24 hours through the dashboard's own `Lake` (reader rule listing + one DuckDB query over the object list),
cold (a new `Lake`, i.e. a new DuckDB, per run), median of `--repeat`. Then compacts every hour (one object
+ manifest per hour, stream objects left in place as during the grace period) and times it again.

Target: day view data <= 1 s on compacted hours. Writes bench/results/dashboard.json. By default the lake is
a scratch prefix in the configured bucket (`tickstream services up`, TICKSTREAM_S3_*), deleted at the end;
`--local` uses a temporary directory instead (no services, but no per-request cost either):

    PYTHONPATH=src/python python bench/dashboard_bench.py --symbols 30 --objects-per-hour 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from analytics.testing import QUERY_ID, compact_hour, write_object

from dashboard.data import Lake
from dashboard.settings import DashboardSettings
from tickstream.lake import BARS_1M, BARS_1M_ARROW_SCHEMA, LakeLocation, object_key
from tickstream.settings import S3Settings

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "dashboard.json"
DAY = datetime(2024, 3, 1, tzinfo=UTC)
MINUTE_US = 60_000_000


def hour_bars(rng: np.random.Generator, hour: int, symbols: int) -> pa.Table:
    """One hour of 1-minute bars for `symbols` symbols, sorted by window start then symbol."""
    start_us = int((DAY + timedelta(hours=hour)).timestamp() * 1_000_000)
    minutes = np.repeat(np.arange(60), symbols)
    names = np.tile(np.array([f"SYM{i:02d}" for i in range(symbols)]), 60)
    window_start = start_us + minutes * MINUTE_US
    close = np.round(100.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(minutes)))), 4)
    spread = np.abs(rng.normal(0, 0.05, len(minutes)))
    volume = rng.integers(100, 100_000, len(minutes))
    columns = {
        "symbol": names,
        "window_start": pa.array(window_start, pa.timestamp("us", tz="UTC")),
        "window_end": pa.array(window_start + MINUTE_US, pa.timestamp("us", tz="UTC")),
        "open": close - spread / 2,
        "high": close + spread,
        "low": close - spread,
        "close": close,
        "volume": volume,
        "vwap": close,
        "trade_count": rng.integers(1, 500, len(minutes)),
    }
    return pa.table(columns, schema=BARS_1M_ARROW_SCHEMA)


def write_day(
    location: LakeLocation, symbols: int, objects_per_hour: int
) -> dict[int, tuple[pa.Table, list[str]]]:
    """Write the day's stream objects (8 writers); return each hour's bars and its object keys."""
    rng = np.random.default_rng(11)
    hours: dict[int, tuple[pa.Table, list[str]]] = {}
    jobs: list[tuple[str, pa.Table]] = []
    for hour in range(24):
        bars = hour_bars(rng, hour, symbols)
        keys = []
        bounds = np.linspace(0, bars.num_rows, objects_per_hour + 1).astype(int)
        for index, (lo, hi) in enumerate(pairwise(bounds)):
            key = object_key(
                BARS_1M, DAY.strftime("%Y-%m-%d"), f"{hour:02d}", QUERY_ID, hour * 10_000 + index
            )
            jobs.append((key, bars.slice(int(lo), int(hi - lo))))
            keys.append(key)
        hours[hour] = (bars, keys)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda job: write_object(location, *job), jobs))
    return hours


def compact_day(location: LakeLocation, hours: dict[int, tuple[pa.Table, list[str]]]) -> None:
    """One compacted object and a manifest per hour, as the compaction job leaves them."""
    date = DAY.strftime("%Y-%m-%d")

    def compact(hour: int) -> None:
        bars, replaced = hours[hour]
        compact_hour(location, BARS_1M, date, f"{hour:02d}", bars, replaced, run_id=f"rdash{hour:02d}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(compact, hours))


def time_day_view(settings: DashboardSettings, s3: S3Settings, repeat: int) -> tuple[float, list[float], int]:
    """Median seconds of a cold day-view read (new Lake each run), every run's seconds, and the rows read."""
    hours = [DAY + timedelta(hours=h) for h in range(24)]
    runs, rows = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows = Lake(settings, s3).bars(hours).height
        runs.append(round(time.perf_counter() - started, 3))
    return statistics.median(runs), runs, rows


def delete_prefix(location: LakeLocation) -> None:
    """Remove the scratch lake (best effort)."""
    filesystem, base = location.filesystem()
    try:
        filesystem.delete_dir(base)
    except OSError as exc:
        print(f"could not delete {location.root}: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Write the lake, time both layouts and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=30)
    parser.add_argument("--objects-per-hour", type=int, default=60, help="stream objects per hour (raw)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--local", action="store_true", help="a temporary directory instead of S3")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    s3 = S3Settings()
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as scratch:
        root = scratch if args.local else f"s3://{s3.bucket}/bench/dashboard-{uuid.uuid4().hex[:8]}"
        location = LakeLocation(root, None if args.local else s3)
        settings = DashboardSettings(lake_root=root)
        try:
            started = time.perf_counter()
            hours = write_day(location, args.symbols, args.objects_per_hour)
            write_s = time.perf_counter() - started
            print(f"wrote {24 * args.objects_per_hour} objects in {write_s:.1f}s", file=sys.stderr)
            raw_s, raw_runs, raw_rows = time_day_view(settings, s3, args.repeat)
            print(f"day view, raw: {raw_s:.2f}s ({raw_rows} bars)", file=sys.stderr)
            compact_day(location, hours)
            compacted_s, compacted_runs, compacted_rows = time_day_view(settings, s3, args.repeat)
            print(f"day view, compacted: {compacted_s:.2f}s ({compacted_rows} bars)", file=sys.stderr)
        finally:
            if not args.local:
                delete_prefix(location)
    expected = 24 * 60 * args.symbols
    if raw_rows != expected or compacted_rows != expected:
        print(f"read {raw_rows} / {compacted_rows} bars, expected {expected}", file=sys.stderr)
        return 1
    results: dict[str, Any] = {
        "benchmark": "dashboard",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load_average_at_start": load_at_start,
        "lake": "local" if args.local else "s3",
        "symbols": args.symbols,
        "bars": expected,
        "raw_objects_per_hour": args.objects_per_hour,
        "write_s": round(write_s, 1),
        "day_view_raw_s": raw_s,
        "day_view_raw_runs_s": raw_runs,
        "day_view_compacted_s": compacted_s,
        "day_view_compacted_runs_s": compacted_runs,
        "speedup": round(raw_s / compacted_s, 1) if compacted_s else None,
        "targets": {"day_view_s": 1.0},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
