"""Measure the dashboard's reads on a realistic lake: `python -m dashboard.bench [--streamed]`.

Builds an Iceberg lake of its own on the configured S3 server (a private SQLite catalog in a temporary
directory, files under a fresh `tests/` prefix of the bucket, deleted afterwards): 30 symbols, one day of
1-minute bars up to `NOW`, and two hours of ticks (10 ticks/s). As the streaming job leaves it, bars arrive
as one file per minute and ticks as one file per second (1 s trigger); manifests are merged by ~100
commits, as Spark's merge-append keeps them. Without `--streamed`, every closed hour is compacted into one
file (as the hourly compaction leaves them); with it, nothing is. Data files are written with pyarrow and
committed with pyiceberg's add_files, which is much faster to build than thousands of appends.

Then it times, with `dashboard.lake_reader.Lake` as the app uses it: the first query of a process, a day
view (all bars of 24 hours), the open hour's bars, the live edge (cold, then each refresh after one more
ticks commit), the newest tick, and the files per hour of the health page. Prints one JSON object.

`Builder` is also the lake builder of the repository's benchmarks (bench/dashboard_bench.py and
bench/dbt_bench.py): it writes to an S3 or a local (file://) warehouse, for any symbols and any number of bar
files per hour.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import typer

from dashboard import charts
from dashboard.bars import TimeRange, overview, with_moving_averages
from dashboard.data import Sources, clear_caches
from dashboard.lake_reader import Lake
from dashboard.settings import DashboardSettings
from testkit.lake import TestLake, private_catalog_settings
from tickstream.catalog import load_table
from tickstream.commands import command_app
from tickstream.lake import BARS_1M, TICKS, LakeLocation, LakeTable
from tickstream.settings import KafkaSettings, S3Settings

NOW = datetime(2026, 11, 26, 14, 40, tzinfo=UTC)
SYMBOLS = [f"S{i:02d}" for i in range(30)]
COMMITS = 100
US = 1_000_000


def minute_bars(minute: datetime, symbols: Sequence[str] = SYMBOLS) -> pa.Table:
    """One bar per symbol for `minute`."""
    k = int(minute.timestamp() // 60)
    rows = []
    for i, symbol in enumerate(symbols):
        price = 100 + i + math.sin(k / 50 + i)
        rows.append(
            {
                "symbol": symbol,
                "window_start": minute,
                "window_end": minute + timedelta(minutes=1),
                "open": price,
                "high": price + 0.5,
                "low": price - 0.5,
                "close": price + 0.1,
                "volume": 2000,
                "vwap": price,
                "trade_count": 20,
            }
        )
    return pa.Table.from_pylist(rows, schema=BARS_1M.schema)


def second_ticks(second: datetime, first_seq: int) -> pa.Table:
    """Ten ticks in `second` (20 per symbol and minute over 30 symbols)."""
    base = int(second.timestamp()) * US
    rows = []
    for j in range(10):
        index = (int(second.timestamp()) * 10 + j) % len(SYMBOLS)
        ts = base + j * 100_000
        price = round(100 + index + (ts // US % 97) / 100, 2)
        rows.append(
            {
                "schema_version": 1,
                "symbol": SYMBOLS[index],
                "seq": first_seq + j,
                "ts_us": ts,
                "price": price,
                "size": 100,
                "bid": round(price - 0.01, 2),
                "ask": round(price + 0.01, 2),
                "kafka_partition": 0,
                "kafka_offset": first_seq + j,
                "event_time": datetime.fromtimestamp(ts / US, tz=UTC),
                "kafka_ts": datetime.fromtimestamp(ts / US, tz=UTC),
            }
        )
    return pa.Table.from_pylist(rows, schema=TICKS.schema)


class Builder:
    """Writes data files of a test lake's tables with pyarrow and commits them with add_files.

    The files go under `<warehouse>/bench-files/<table>/`, on S3 or in a local (file://) warehouse; each is
    sorted by its table's sort order. `bars` writes the day of bars this module measures (`symbols`, closed
    hours streamed as `files_per_hour` files or compacted as one); `write` and `commit` build any other
    layout.
    """

    def __init__(self, lake: TestLake, symbols: Sequence[str] = SYMBOLS) -> None:
        self.lake = lake
        self.symbols = list(symbols)
        self.root = lake.settings.warehouse.rstrip("/") + "/bench-files"
        self.fs, self.base = LakeLocation(root=self.root, s3=lake.s3).filesystem()
        if isinstance(self.fs, pafs.LocalFileSystem):  # S3 has no directories to create
            for table in (TICKS, BARS_1M):
                self.fs.create_dir(f"{self.base}/{table.name}", recursive=True)
        self.pool = ThreadPoolExecutor(16)

    def write(self, table: LakeTable, name: str, rows: pa.Table) -> str:
        """Write `rows`, sorted by the table's sort order, as one Parquet file; its URL (for add_files)."""
        rows = rows.sort_by([(key, "ascending") for key in table.sort_keys])
        pq.write_table(
            rows, f"{self.base}/{table.name}/{name}.parquet", filesystem=self.fs, compression="zstd"
        )
        return f"{self.root}/{table.name}/{name}.parquet"

    def write_all(self, table: LakeTable, files: Sequence[tuple[str, pa.Table]]) -> list[str]:
        """Write several (name, rows) files in parallel; their URLs in the same order."""
        return list(self.pool.map(lambda item: self.write(table, *item), files))

    def commit(self, table: LakeTable, paths: list[str], commits: int) -> None:
        """Register `paths` with the table in `commits` add_files commits (consecutive runs of paths)."""
        per = max(1, math.ceil(len(paths) / commits))
        for start in range(0, len(paths), per):
            iceberg = load_table(self.lake.catalog, self.lake.settings, table)
            iceberg.add_files(paths[start : start + per], check_duplicate_files=False)

    def bars(self, compacted: bool, files_per_hour: int = 60) -> None:
        """A day of bars up to NOW. Streamed hours are `files_per_hour` files per hour (consecutive minutes
        each; 60: a file per minute, as the streaming job commits them); with `compacted`, every closed hour
        is one file instead (committed at once) and only the open hour is streamed, a commit per file;
        without it, the files are committed in COMMITS commits."""
        if not 1 <= files_per_hour <= 60:
            raise ValueError(
                f"files_per_hour must be 1..60 (a file holds whole minutes), not {files_per_hour}"
            )
        minutes = [NOW - timedelta(days=1, minutes=60 - m) for m in range(24 * 60 + 59)]
        open_hour = NOW.replace(minute=0)
        commits = COMMITS
        if compacted:
            closed = sorted({m.replace(minute=0) for m in minutes if m < open_hour})
            hourly = self.pool.map(
                lambda h: self.write(
                    BARS_1M,
                    f"{h:%Y%m%d%H}",
                    pa.concat_tables(
                        minute_bars(m, self.symbols) for m in minutes if m.replace(minute=0) == h
                    ),
                ),
                closed,
            )
            self.commit(BARS_1M, list(hourly), 1)
            minutes = [m for m in minutes if m >= open_hour]
        groups = [
            list(group)
            for _, group in groupby(minutes, lambda m: (m.replace(minute=0), m.minute * files_per_hour // 60))
        ]
        if compacted:
            commits = len(groups)
        paths = self.pool.map(
            lambda ms: self.write(
                BARS_1M, f"{ms[0]:%Y%m%d%H%M}", pa.concat_tables(minute_bars(m, self.symbols) for m in ms)
            ),
            groups,
        )
        self.commit(BARS_1M, list(paths), commits)

    def ticks(self, compacted: bool) -> int:
        seconds = [NOW - timedelta(hours=2) + timedelta(seconds=s) for s in range(2 * 3600 - 2)]
        open_hour = NOW.replace(minute=0)
        if compacted:
            closed = sorted({s.replace(minute=0, second=0) for s in seconds if s < open_hour})
            paths = [
                self.write(
                    TICKS,
                    f"hour-{h:%H}",
                    pa.concat_tables(
                        second_ticks(s, i * 10)
                        for i, s in enumerate(seconds)
                        if s.replace(minute=0, second=0) == h
                    ),
                )
                for h in closed
            ]
            self.commit(TICKS, paths, 1)
        todo = [(i, s) for i, s in enumerate(seconds) if not compacted or s >= open_hour]
        streamed = self.pool.map(
            lambda item: self.write(TICKS, f"{item[1]:%H%M%S}", second_ticks(item[1], item[0] * 10)), todo
        )
        self.commit(TICKS, list(streamed), COMMITS)
        return len(seconds) * 10

    def delete(self) -> None:
        """Delete every file of the lake's warehouse (data and metadata); the catalog file stays."""
        warehouse = LakeLocation(root=self.lake.settings.warehouse, s3=self.lake.s3)
        fs, base = warehouse.filesystem()
        fs.delete_dir_contents(base, missing_dir_ok=True)
        self.pool.shutdown()


def timed(function: Callable[[], Any], runs: int = 5) -> dict[str, float]:
    """Seconds of the first run and the median of the next ones."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return {"first_s": round(times[0], 3), "median_s": round(statistics.median(times[1:]), 3)}


def live_view(lake: TestLake, builder: Builder, objects: str, first_seq: int) -> dict[str, float]:
    """The live page's data for a day range as the app gets it (`Sources`, caches, overview, figure): cold,
    then each refresh after one more ticks commit (closed hours and the open hour's bars cached)."""
    settings = DashboardSettings(lake_root=objects, now=NOW)
    sources = Sources(settings, lake.s3, lake.settings, KafkaSettings(bootstrap_servers="127.0.0.1:1"))

    def page() -> None:
        bars = sources.bars(TimeRange.last(timedelta(days=1), NOW))
        overview(bars)
        rows = with_moving_averages(bars.filter(pl.col("symbol") == SYMBOLS[0]), [5, 20])
        charts.candlestick(rows, SYMBOLS[0], [5, 20])

    clear_caches()
    started = time.perf_counter()
    page()
    results = {"cold_s": round(time.perf_counter() - started, 3)}
    refreshes = []
    for i in range(5):
        builder.commit(
            TICKS,
            [builder.write(TICKS, f"page-{i}", second_ticks(NOW - timedelta(seconds=1), first_seq + 10 * i))],
            1,
        )
        started = time.perf_counter()
        page()
        refreshes.append(time.perf_counter() - started)
    results["refresh_after_a_commit_median_s"] = round(statistics.median(refreshes), 3)
    return results


def measure(lake: TestLake, builder: Builder, first_seq: int) -> dict[str, Any]:
    """The reads the app makes, timed on a Lake of this process."""
    with tempfile.TemporaryDirectory() as objects:
        reader = Lake(DashboardSettings(lake_root=objects, now=NOW), lake.s3, lake.settings)
        started = time.perf_counter()
        bars_location = reader.metadata_location(BARS_1M)
        assert bars_location is not None
        reader.bars(bars_location, NOW, NOW + timedelta(minutes=1))
        results: dict[str, Any] = {"first_query_of_process_s": round(time.perf_counter() - started, 3)}
        started = time.perf_counter()
        day = reader.bars(bars_location, NOW - timedelta(days=1), NOW)
        results["day_view_cold_s"] = round(time.perf_counter() - started, 3)
        results["day_view_bars"] = day.height
        results["day_view_again"] = timed(lambda: reader.bars(bars_location, NOW - timedelta(days=1), NOW))
        results["open_hour_bars"] = timed(lambda: reader.bars(bars_location, NOW.replace(minute=0), NOW))
        since = NOW - timedelta(minutes=2)
        results["live_edge_2min_cold"] = timed(
            lambda: Lake(reader.settings, lake.s3, lake.settings).live_bars(since, NOW), 3
        )
        reader.live_bars(since, NOW)
        refreshes = []
        for i in range(5):  # each refresh after one more streaming commit (a file of the current second)
            builder.commit(
                TICKS,
                [
                    builder.write(
                        TICKS, f"extra-{i}", second_ticks(NOW - timedelta(seconds=2), first_seq + 10 * i)
                    )
                ],
                1,
            )
            started = time.perf_counter()
            reader.live_bars(since, NOW)
            refreshes.append(time.perf_counter() - started)
        results["live_edge_refresh_after_a_commit_median_s"] = round(statistics.median(refreshes), 3)
        results["live_view_day"] = live_view(lake, builder, objects, first_seq + 100)
        results["newest_tick"] = timed(lambda: reader.newest(TICKS))
        results["files_per_hour_6h"] = timed(
            lambda: [reader.table_files(t, NOW - timedelta(hours=5)) for t in (TICKS, BARS_1M)]
        )
    return results


app = command_app(__doc__.splitlines()[0] if __doc__ else "Measure the dashboard's reads.")


@app.command()
def measure_dashboard(
    streamed: Annotated[bool, typer.Option("--streamed", help="Leave closed hours uncompacted.")] = False,
) -> None:
    """Build the lake, measure, print JSON, delete the lake's files."""
    s3 = S3Settings()
    with tempfile.TemporaryDirectory() as directory:
        lake = TestLake(private_catalog_settings(Path(directory), s3), s3)
        builder = Builder(lake)
        try:
            started = time.perf_counter()
            builder.bars(compacted=not streamed)
            ticks = builder.ticks(compacted=not streamed)
            built = round(time.perf_counter() - started, 1)
            results: dict[str, Any] = {
                "variant": "streamed" if streamed else "compacted",
                "build_s": built,
            }
            results.update(measure(lake, builder, ticks + 1))
            results["files"] = {t.name: lake.files(t) for t in (TICKS, BARS_1M)}
            print(json.dumps(results, indent=1))
        finally:
            builder.delete()


def main() -> None:
    """Entry point: `python -m dashboard.bench`."""
    app()


if __name__ == "__main__":
    main()
