"""dbt benchmark: `dbt build` for one day of ticks in the Iceberg lake; DuckDB on streamed vs compacted hours.

Generates one UTC day of ticks at a steady rate (random-walk prices, 8 symbols) and their 1-minute bars, and
builds two scratch Iceberg lakes of them with the dashboard benchmark's lake builder
(`dashboard.bench.Builder`: data files written with pyarrow, each sorted by its table's sort order, registered
with pyiceberg's add_files; much faster to build than one pyiceberg append per micro-batch). Each lake is a
private SQLite catalog with a local (file://) warehouse in a temporary directory (`testkit.lake`):
local disk only, no services.

- streamed ("raw"), as the streaming job leaves the tables: ticks one file per `--batch-seconds` micro-batch
  and hour, bars one file per minute; each hour committed in `--commits-per-hour` commits per table (the
  stream commits every batch; fewer commits keep the build quick and give about 100 manifests per table for
  the day, as Spark's merge-append keeps them);
- compacted, as the stream and the hourly compaction leave them: every closed hour one file per table (all of
  them registered in one commit per table, as after compaction's manifest rewrite), the last `--open-hours`
  streamed as above.

Then it measures:

1. `dbt build` over the whole day on the compacted lake (the open hour read from the streamed files), wall
   time (`analytics.run.run_dbt` in-process, target local: the marts are exported to the scratch directory);
2. the same re-run for the last hour's interval (the hourly Airflow task: --start H --end H+1), wall time;
3. a daily OHLCV query per symbol in DuckDB over each lake's ticks table, through `iceberg_scan` of the
   table's metadata location in the catalog (`tickstream.duckdb_lake`), best of 3.

Writes bench/results/dbt.json (nothing if a dbt run fails: exit 1). On S3 every data file costs requests, so
the gap between the layouts there is larger.

    ./pants run bench/dbt_bench.py -- --ticks-per-second 100 --batch-seconds 10
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any

import duckdb
import numpy as np
import pyarrow as pa
import typer

from analytics.run import AnalyticsSettings, run_dbt
from dashboard.bench import Builder
from testkit.lake import TestLake, private_catalog_settings
from tickstream.catalog import load_table, metadata_location
from tickstream.commands import command_app, usage_error
from tickstream.duckdb_lake import connect, iceberg_scan
from tickstream.lake import BARS_1M, TICKS, LakeTable

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "dbt.json"
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY")
DAY = "2024-03-01"
DAY_START = datetime.fromisoformat(DAY).replace(tzinfo=UTC)
HOUR_US = 3_600_000_000
MINUTE_US = 60_000_000
SEED = 7
OHLCV_QUERY = """
    select symbol, first(price order by ts_us, seq) as open, max(price) as high, min(price) as low,
      first(price order by ts_us desc, seq desc) as close, sum(size) as volume,
      sum(price * size) / sum(size) as vwap
    from {relation} group by symbol order by symbol
"""


def hour_ticks(hour: int, rate: float) -> pa.Table:
    """One hour of ticks at `rate` ticks/s over all symbols (random-walk prices; seq unique over the day)."""
    rng = np.random.default_rng([SEED, hour])
    n = int(rate * 3600)
    start_us = int(DAY_START.timestamp() * 1_000_000) + hour * HOUR_US
    ts = np.sort(rng.integers(start_us, start_us + HOUR_US, n))
    sym_idx = rng.integers(0, len(SYMBOLS), n)
    price = np.round((100.0 + 50.0 * sym_idx) * np.exp(np.cumsum(rng.normal(0, 1e-4, n))), 4)
    seq0 = hour * n
    return pa.table(
        {
            "schema_version": np.ones(n, dtype=np.int32),
            "symbol": np.array(SYMBOLS)[sym_idx],
            "seq": np.arange(seq0, seq0 + n, dtype=np.int64),
            "ts_us": ts,
            "price": price,
            "size": rng.integers(1, 500, n),
            "bid": price - 0.01,
            "ask": price + 0.01,
            "kafka_partition": np.zeros(n, dtype=np.int32),
            "kafka_offset": np.arange(seq0, seq0 + n, dtype=np.int64),
            "event_time": pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
            "kafka_ts": pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
        }
    ).cast(TICKS.schema)


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
    return bars.cast(BARS_1M.schema)


def streamed_files(table: LakeTable, rows: pa.Table, hour: int, period: int) -> list[tuple[str, pa.Table]]:
    """`rows` of one hour split as the stream writes them: a file per `period` µs of the partition column."""
    if rows.num_rows == 0:
        return []
    rows = rows.sort_by(table.partition_column)
    moments = np.asarray(rows.column(table.partition_column).cast(pa.int64()))
    start_us = int(DAY_START.timestamp() * 1_000_000) + hour * HOUR_US
    index = (moments - start_us) // period
    bounds = [0, *(np.flatnonzero(np.diff(index)) + 1).tolist(), len(index)]
    return [(f"{hour:02d}-{int(index[lo]):05d}", rows.slice(lo, hi - lo)) for lo, hi in pairwise(bounds)]


def write_day(
    raw: Builder, compacted: Builder, rate: float, batch_seconds: int, open_hours: int, commits_per_hour: int
) -> dict[str, Any]:
    """Write the day into both lakes (an hour at a time); returns counts."""
    counts = {"ticks": 0, "bars": 0, "stream_objects": 0, "compacted_objects": 0}
    closed: dict[str, list[str]] = {TICKS.name: [], BARS_1M.name: []}
    for hour in range(24):
        ticks = hour_ticks(hour, rate)
        bars = bars_of(ticks)
        counts["ticks"] += ticks.num_rows
        counts["bars"] += bars.num_rows
        is_open = hour >= 24 - open_hours
        for table, rows, period_us in ((TICKS, ticks, batch_seconds * 1_000_000), (BARS_1M, bars, MINUTE_US)):
            files = streamed_files(table, rows, hour, period_us)
            raw.commit(table, raw.write_all(table, files), commits_per_hour)
            counts["stream_objects"] += len(files)
            if is_open:
                compacted.commit(table, compacted.write_all(table, files), commits_per_hour)
            else:
                closed[table.name].append(compacted.write(table, f"{hour:02d}-compacted", rows))
                counts["compacted_objects"] += 1
    for table in (TICKS, BARS_1M):
        compacted.commit(table, closed[table.name], 1)
    return counts


def snapshot_shape(lake: TestLake) -> dict[str, dict[str, int]]:
    """Data files and manifests of each table's current snapshot."""
    shape = {}
    for table in (TICKS, BARS_1M):
        iceberg = load_table(lake.catalog, lake.settings, table)
        snapshot = iceberg.current_snapshot()
        manifests = len(snapshot.manifests(iceberg.io)) if snapshot else 0
        shape[table.name] = {"files": lake.files(table), "manifests": manifests}
    return shape


def timed(fn: Callable[[], Any], repeat: int = 1) -> float:
    """Best wall time of `repeat` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def query_layouts(lakes: dict[str, TestLake]) -> tuple[dict[str, float], bool]:
    """Daily OHLCV per symbol over each lake's ticks (iceberg_scan of the catalog's current metadata
    location), best of 3 seconds each; and whether both lakes gave the same answer."""
    con = connect(None)
    timings: dict[str, float] = {}
    answers: list[list[tuple[Any, ...]]] = []
    for name, lake in lakes.items():
        location = metadata_location(lake.catalog, lake.settings, TICKS)
        assert location is not None
        query = OHLCV_QUERY.format(relation=iceberg_scan(location))
        answers.append(con.sql(query).fetchall())
        timings[name] = round(timed(partial(fetch_all, con, query), 3), 3)
    first, second = answers
    same = len(first) == len(second) and all(
        a[0] == b[0] and all(abs(x - y) <= 1e-9 * max(1.0, abs(x)) for x, y in zip(a[1:], b[1:], strict=True))
        for a, b in zip(first, second, strict=True)
    )
    return timings, same


def fetch_all(con: duckdb.DuckDBPyConnection, query: str) -> list[tuple[Any, ...]]:
    """Every row of `query`."""
    return con.sql(query).fetchall()


DESCRIPTION = __doc__.splitlines()[0]
app = command_app(DESCRIPTION)


@app.command(help=DESCRIPTION)
def benchmark(
    ticks_per_second: Annotated[float, typer.Option(help="over all symbols")] = 100.0,
    batch_seconds: Annotated[int, typer.Option(help="streaming trigger interval")] = 10,
    open_hours: Annotated[int, typer.Option(help="last hours left uncompacted")] = 1,
    commits_per_hour: Annotated[int, typer.Option(help="add_files commits per streamed hour")] = 4,
    out: Annotated[Path, typer.Option(help="results file")] = RESULTS_PATH,
) -> None:
    """Build both lakes, run dbt on the compacted one, query both, write the results file."""
    if not 0 <= open_hours <= 24:
        raise usage_error("--open-hours must be 0..24")

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="dbt-bench-") as scratch:
        lakes = {
            name: TestLake(private_catalog_settings(Path(scratch) / name, None), None)
            for name in ("raw", "compacted")
        }
        raw, compacted = (Builder(lake) for lake in lakes.values())
        started = time.perf_counter()
        counts = write_day(raw, compacted, ticks_per_second, batch_seconds, open_hours, commits_per_hour)
        generate_s = time.perf_counter() - started
        print(f"wrote {counts} in {generate_s:.1f}s", file=sys.stderr)
        lake = lakes["compacted"]
        settings = AnalyticsSettings(
            target="local", lake_root=f"{scratch}/objects", state_dir=f"{scratch}/dbt"
        )
        outcome: dict[str, bool] = {}

        def build(vars: dict[str, str] | None = None, key: str = "build") -> None:
            result = run_dbt("build", vars, settings=settings, catalog=lake.settings, s3=lake.s3)
            outcome[key] = bool(result.success)
            if not result.success:
                print(f"dbt {key} failed: {result.exception or 'see the log above'}", file=sys.stderr)

        full_s = timed(build)
        # Naive UTC, as `python -m analytics.run build --start 2024-03-01T23:00:00 ...` takes them.
        last_hour = datetime.fromisoformat(DAY) + timedelta(hours=23)
        interval = {"start": last_hour.isoformat(), "end": (last_hour + timedelta(hours=1)).isoformat()}
        hourly_s = timed(lambda: build(interval, "hourly"))
        query, same_answer = query_layouts(lakes)
        results = {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "load_average_at_start": load_at_start,
            "config": {
                "ticks_per_second": ticks_per_second,
                "batch_seconds": batch_seconds,
                "open_hours": open_hours,
                "commits_per_hour": commits_per_hour,
                "symbols": len(SYMBOLS),
                "day": DAY,
            },
            "lake": counts
            | {
                "format": "iceberg (SQLite catalog; files written with pyarrow, registered with add_files)",
                "warehouse": "local disk (file://)",
                "generate_s": round(generate_s, 1),
                "snapshots": {name: snapshot_shape(each) for name, each in lakes.items()},
            },
            "dbt_build_full_day_s": round(full_s, 2),
            "dbt_build_hourly_interval_s": round(hourly_s, 2),
            "dbt_build_hourly_interval": interval,
            "dbt_success": outcome,
            "duckdb_daily_ohlcv_query": {
                "raw_stream_objects_s": query["raw"],
                "compacted_objects_s": query["compacted"],
                "same_answer": same_answer,
            },
        }
    print(json.dumps(results, indent=2))
    if not all(outcome.values()) or not same_answer:
        print("not written: a dbt run failed or the layouts disagree", file=sys.stderr)
        raise typer.Exit(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    """Entry point (`./pants run bench/dbt_bench.py -- ...`)."""
    app()


if __name__ == "__main__":
    main()
