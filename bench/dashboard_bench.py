"""Dashboard benchmark: the day view's data read (dashboard's `Lake.bars`) on streamed vs compacted hours.

Builds two Iceberg lakes holding the same day of 1-minute bars for `--symbols` symbols, with the lake builder
of the dashboard's own benchmark (`dashboard.bench.Builder`: data files written with pyarrow, sorted by the
table's sort order, and registered with pyiceberg's add_files), each in a private SQLite catalog (a temporary
directory) with its files under a fresh `tests/<random>` prefix of the configured bucket (`tickstream
services up`, TICKSTREAM_S3_*), deleted at the end; `--local` puts the files in the temporary directory
instead (no services, but no per-request cost either):

- streamed ("raw"): every hour as `--objects-per-hour` data files (60: one per minute, as the streaming job
  commits the bars), committed in about 100 commits (manifests as Spark's merge-append keeps them);
- compacted: every closed hour as one file (as the hourly compaction leaves it), the open hour streamed.

The day ends at `dashboard.bench.NOW` (14:40 UTC): the day view is the 24 hours before it, 25 hour partitions
of which the newest is the open hour. It is timed as the app reads it, cold: a new `Lake(settings, s3,
catalog)` (a new DuckDB and catalog connection), `.metadata_location(BARS_1M)` (one SELECT of the catalog)
and `.bars(location, NOW - 1 day, NOW)` (DuckDB's iceberg_scan of that snapshot); median of `--repeat`.

Target: day view data <= 1 s on compacted hours. Writes bench/results/dashboard.json:

    ./pants run bench/dashboard_bench.py -- --symbols 30 --objects-per-hour 60
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from figures import write_results

from dashboard.bench import NOW, Builder
from dashboard.lake_reader import Lake
from dashboard.settings import DashboardSettings
from testkit.lake import TestLake, private_catalog_settings
from tickstream.commands import command_app, usage_error
from tickstream.lake import BARS_1M
from tickstream.settings import S3Settings

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "dashboard.json"
DAY_START, DAY_END = NOW - timedelta(days=1), NOW
DAY_MINUTES = 24 * 60 - 1
"""Minutes with bars in the day view: the builder's newest bar is of NOW - 2 min (NOW - 1 min not yet)."""


def symbol_names(count: int) -> list[str]:
    """`count` distinct ticker-like names."""
    return [f"S{i:02d}" for i in range(count)]


def lake_builder(directory: Path, s3: S3Settings | None, symbols: int) -> Builder:
    """The builder of a new lake of its own (catalog in `directory`, files on S3 if given, else there)."""
    return Builder(TestLake(private_catalog_settings(directory, s3), s3), symbol_names(symbols))


def day_view(
    lake: TestLake, s3: S3Settings, objects: str, repeat: int
) -> tuple[float, list[float], dict[str, float], tuple[int, float]]:
    """Cold day-view reads: median seconds, every run's seconds, medians of the parts (opening the Lake,
    the catalog SELECT, the bars query), and the rows read with their sum of closes (a checksum)."""
    settings = DashboardSettings(lake_root=objects, now=NOW)
    runs: list[float] = []
    parts: dict[str, list[float]] = {"open_lake_s": [], "metadata_location_s": [], "bars_query_s": []}
    rows, checksum = 0, 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        reader = Lake(settings, s3, lake.settings)
        opened = time.perf_counter()
        location = reader.metadata_location(BARS_1M)
        located = time.perf_counter()
        if location is None:
            raise RuntimeError("the bench lake has no bars_1m table")
        bars = reader.bars(location, DAY_START, DAY_END)
        done = time.perf_counter()
        runs.append(round(done - started, 3))
        for name, seconds in zip(parts, (opened - started, located - opened, done - located), strict=True):
            parts[name].append(seconds)
        rows, checksum = bars.height, round(float(bars["close"].sum()), 6)
    medians = {name: round(statistics.median(values), 3) for name, values in parts.items()}
    return round(statistics.median(runs), 3), runs, medians, (rows, checksum)


DESCRIPTION = __doc__.splitlines()[0]
app = command_app(DESCRIPTION)


@app.command(help=DESCRIPTION)
def benchmark(
    symbols: Annotated[int, typer.Option(help="symbols of the day of bars")] = 30,
    objects_per_hour: Annotated[int, typer.Option(help="data files per streamed hour (1..60; raw)")] = 60,
    repeat: Annotated[int, typer.Option(help="cold reads per layout (the median counts)")] = 3,
    local: Annotated[
        bool, typer.Option("--local", help="files in a temporary directory instead of S3")
    ] = False,
    out: Annotated[Path, typer.Option(help="results file")] = RESULTS_PATH,
) -> None:
    """Build both lakes, time the day view on each and write the results file."""
    if not 1 <= objects_per_hour <= 60:
        raise usage_error("--objects-per-hour must be 1..60 (a bars file holds whole minutes)")

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    s3 = S3Settings()
    lake_s3 = None if local else s3
    builders: list[Builder] = []
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as scratch:
        try:
            started = time.perf_counter()
            for variant in ("raw", "compacted"):
                builders.append(lake_builder(Path(scratch) / variant, lake_s3, symbols))
                builders[-1].bars(compacted=variant == "compacted", files_per_hour=objects_per_hour)
            raw_lake, compacted_lake = (builder.lake for builder in builders)
            write_s = time.perf_counter() - started
            files = {"raw": raw_lake.files(BARS_1M), "compacted": compacted_lake.files(BARS_1M)}
            print(f"built both lakes ({files} bars files) in {write_s:.1f}s", file=sys.stderr)
            objects = str(Path(scratch) / "objects")
            raw_s, raw_runs, raw_parts, raw_read = day_view(raw_lake, s3, objects, repeat)
            print(f"day view, raw: {raw_s:.2f}s ({raw_read[0]} bars)", file=sys.stderr)
            compacted_s, compacted_runs, compacted_parts, compacted_read = day_view(
                compacted_lake, s3, objects, repeat
            )
            print(f"day view, compacted: {compacted_s:.2f}s ({compacted_read[0]} bars)", file=sys.stderr)
        finally:
            for builder in builders:
                builder.delete()
    expected = DAY_MINUTES * symbols
    if raw_read[0] != expected or compacted_read != raw_read:
        print(
            f"read {raw_read} / {compacted_read} (bars, sum of closes), expected {expected} bars",
            file=sys.stderr,
        )
        raise typer.Exit(1)
    results: dict[str, Any] = {
        "benchmark": "dashboard",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load_average_at_start": load_at_start,
        "lake": "local" if local else "s3",
        "format": "iceberg (SQLite catalog; files written with pyarrow, registered with add_files)",
        "symbols": symbols,
        "bars": expected,
        "day_view": {"start": DAY_START.isoformat(), "end": DAY_END.isoformat()},
        "raw_objects_per_hour": objects_per_hour,
        "bars_files": files,
        "write_s": round(write_s, 1),
        "day_view_raw_s": raw_s,
        "day_view_raw_runs_s": raw_runs,
        "day_view_raw_parts_s": raw_parts,
        "day_view_compacted_s": compacted_s,
        "day_view_compacted_runs_s": compacted_runs,
        "day_view_compacted_parts_s": compacted_parts,
        "speedup": round(raw_s / compacted_s, 1) if compacted_s else None,
        "targets": {"day_view_s": 1.0},
    }
    write_results(out, results)


def main() -> None:
    """Entry point (`./pants run bench/dashboard_bench.py -- ...`)."""
    app()


if __name__ == "__main__":
    main()
