"""dbt benchmark: `dbt build` for one day of ticks, and DuckDB on the compacted vs the raw (streaming) layout.

Generates one UTC day of ticks at a steady rate with pyarrow into a scratch local lake, laid out as the
streaming job writes it (one object per micro-batch and hour, named by tickstream.lake) and, for every
closed hour, as the compaction job leaves it (one compacted object + manifest; the replaced stream objects
stay, as during the grace period). Then measures:

1. `dbt build` over the whole day (the last hour open, i.e. read from stream objects), wall time;
2. the same re-run for one hour's interval (the hourly Airflow task), wall time;
3. a daily OHLCV query in DuckDB over the raw layout (every stream object) and over the committed
   compacted layout (manifest objects), best of 3.

Writes bench/results/dbt.json. Local disk only (no services); on S3 every object costs a request, so the
raw/compacted gap there is larger.

    PYTHONPATH=src/python python bench/dbt_bench.py --ticks-per-second 100 --batch-seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from analytics.run import AnalyticsSettings, run_dbt
from analytics.testing import QUERY_ID, compact_hour, write_object

from tickstream.lake import BARS_1M, BARS_1M_ARROW_SCHEMA, TICKS, TICKS_ARROW_SCHEMA, LakeLocation, object_key

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "dbt.json"
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY")
DAY = "2024-03-01"
HOUR_US = 3_600_000_000
MINUTE_US = 60_000_000


def hour_ticks(rng: np.random.Generator, hour: int, rate: float, seq0: int) -> pa.Table:
    """One hour of ticks at `rate` ticks/s over all symbols, random-walk prices, sorted by the table key."""
    n = int(rate * 3600)
    start_us = int(datetime.fromisoformat(DAY).replace(tzinfo=UTC).timestamp() * 1e6) + hour * HOUR_US
    ts = np.sort(rng.integers(start_us, start_us + HOUR_US, n))
    sym_idx = rng.integers(0, len(SYMBOLS), n)
    base = 100.0 + 50.0 * sym_idx
    price = np.round(base * np.exp(np.cumsum(rng.normal(0, 1e-4, n))), 4)
    symbols = np.array(SYMBOLS)[sym_idx]
    table = pa.table(
        {
            "schema_version": np.ones(n, dtype=np.int32),
            "symbol": symbols,
            "seq": np.arange(seq0, seq0 + n, dtype=np.int64),
            "ts_us": ts,
            "price": price,
            "bid": price - 0.01,
            "ask": price + 0.01,
            "size": rng.integers(1, 500, n),
            "kafka_partition": np.zeros(n, dtype=np.int32),
            "kafka_offset": np.arange(seq0, seq0 + n, dtype=np.int64),
        },
        schema=TICKS_ARROW_SCHEMA,
    )
    return table.sort_by([("symbol", "ascending"), ("ts_us", "ascending"), ("seq", "ascending")])


def bars_of(ticks: pa.Table) -> pa.Table:
    """1-minute bars of `ticks` (computed with DuckDB)."""
    bars = duckdb.sql(
        """
        select symbol, make_timestamptz(ts_us // 60000000 * 60000000) as window_start,
          make_timestamptz(ts_us // 60000000 * 60000000 + 60000000) as window_end,
          first(price order by ts_us, seq) as open, max(price) as high, min(price) as low,
          first(price order by ts_us desc, seq desc) as close, sum(size)::bigint as volume,
          sum(price * size) / sum(size) as vwap, count(*)::bigint as trade_count
        from ticks group by all order by symbol, window_start
        """
    ).to_arrow_table()
    return bars.cast(BARS_1M_ARROW_SCHEMA)


def write_day(location: LakeLocation, rate: float, batch_seconds: int, open_hours: int) -> dict[str, Any]:
    """Write one day; compact every hour except the last `open_hours`. Returns counts."""
    rng = np.random.default_rng(7)
    stream_objects = compacted = rows = 0
    seq = 0
    for hour in range(24):
        ticks = hour_ticks(rng, hour, rate, seq)
        seq += ticks.num_rows
        rows += ticks.num_rows
        hour_start = int(datetime.fromisoformat(DAY).replace(tzinfo=UTC).timestamp() * 1e6) + hour * HOUR_US
        batch_us = batch_seconds * 1_000_000
        batch = np.asarray(ticks.column("ts_us")) // batch_us - hour_start // batch_us
        replaced: dict[str, list[str]] = {TICKS.name: [], BARS_1M.name: []}
        hh = f"{hour:02d}"
        for index in np.unique(batch):
            epoch = hour * 10_000 + int(index)
            part = ticks.filter(pa.array(batch == index))
            key = object_key(TICKS, DAY, hh, QUERY_ID, epoch)
            write_object(location, key, part)
            replaced[TICKS.name].append(key)
            stream_objects += 1
        bars = bars_of(ticks)
        minute = (np.asarray(bars.column("window_start").cast(pa.int64())) - hour_start) // MINUTE_US
        for index in np.unique(minute):
            key = object_key(BARS_1M, DAY, hh, QUERY_ID, hour * 10_000 + int(index))
            write_object(location, key, bars.filter(pa.array(minute == index)))
            replaced[BARS_1M.name].append(key)
            stream_objects += 1
        if hour < 24 - open_hours:
            compact_hour(location, TICKS, DAY, hh, ticks, replaced[TICKS.name], run_id=f"rbench{hh}")
            compact_hour(location, BARS_1M, DAY, hh, bars, replaced[BARS_1M.name], run_id=f"rbench{hh}")
            compacted += 2
    return {"ticks": rows, "stream_objects": stream_objects, "compacted_objects": compacted}


def timed(fn: Any, repeat: int = 1) -> float:
    """Best wall time of `repeat` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def query_layouts(root: Path) -> dict[str, float]:
    """Daily OHLCV per symbol over every stream object vs over the compacted objects (best of 3, s)."""
    query = """
        select symbol, first(price order by ts_us, seq) as open, max(price) as high, min(price) as low,
          first(price order by ts_us desc, seq desc) as close, sum(size) as volume,
          sum(price * size) / sum(size) as vwap
        from read_parquet('{glob}') group by symbol
    """
    con = duckdb.connect()
    layouts = {
        "raw_stream_objects_s": f"{root}/stream/ticks/*/*/*.parquet",
        "compacted_objects_s": f"{root}/compacted/ticks/*/*/*/*.parquet",
    }
    return {
        name: round(timed(lambda g=glob: con.sql(query.format(glob=g)).fetchall(), 3), 3)
        for name, glob in layouts.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks-per-second", type=float, default=100.0, help="over all symbols")
    parser.add_argument("--batch-seconds", type=int, default=10, help="streaming trigger interval")
    parser.add_argument("--open-hours", type=int, default=1, help="last hours left uncompacted")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dbt-bench-") as scratch:
        root = Path(scratch) / "lake"
        started = time.perf_counter()
        location = LakeLocation(root=str(root))
        counts = write_day(location, args.ticks_per_second, args.batch_seconds, args.open_hours)
        generate_s = time.perf_counter() - started
        settings = AnalyticsSettings(target="local", lake_root=str(root), state_dir=f"{scratch}/dbt")
        outcome: dict[str, Any] = {}

        def build(vars: dict[str, str] | None = None, key: str = "build") -> None:
            result = run_dbt("build", vars, settings=settings)
            outcome[key] = bool(result.success)

        full_s = timed(build)
        hourly_s = timed(lambda: build({"start": f"{DAY}T23:00:00", "end": f"{DAY}T23:59:59"}, "hourly"))
        results = {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "config": vars(args) | {"symbols": len(SYMBOLS), "day": DAY},
            "lake": counts | {"generate_s": round(generate_s, 1)},
            "dbt_build_full_day_s": round(full_s, 2),
            "dbt_build_hourly_interval_s": round(hourly_s, 2),
            "dbt_success": outcome,
            "duckdb_daily_ohlcv_query": query_layouts(root),
        }
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
