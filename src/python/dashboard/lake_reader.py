"""Every read of the lake: its Iceberg tables through the catalog, and the plain objects beside them.

- Rows (bars, the live edge from raw ticks) come from DuckDB's `iceberg_scan` of the table's current metadata
  file, whose location is one SELECT of the catalog (`tickstream.catalog.metadata_location`). Every query
  filters on the table's partition column (`window_start` for bars, `event_time` for ticks), so DuckDB opens
  only the hour partitions, and inside them only the data files whose column bounds overlap the filter.
- Facts about files and commits (newest tick, files per hour, compactions) come from Iceberg's metadata
  through pyiceberg, without opening a data file: the manifests hold each file's partition, size, row count,
  column bounds and the snapshot that added it, and the metadata file lists the retained snapshots with
  their operation. Manifests are immutable, so each is read once per process (`FileIndex`): a refresh
  reads the table's metadata file, its manifest list and only the manifests committed since.
- The live edge (the newest minutes, from raw ticks) is read the same way on every refresh: the file index
  picks the ticks table's data files whose event-time bounds overlap those minutes, and DuckDB reads just
  them (`read_parquet`); `iceberg_scan` would re-read every manifest of the open hour (one per commit)
  each time. A snapshot with delete files falls back to `iceberg_scan` (the lake writes none).
- The streaming status, dbt's run results and the marts' Parquet exports are objects in the bucket
  (`tickstream.lake.LakeLocation`).

Each method raises `NoData` (reachable, nothing there) or `SourceUnavailable` (cannot be reached or read).
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.fs as pafs
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.table import Table
from sqlalchemy.exc import SQLAlchemyError

from dashboard.bars import US_PER_MINUTE, as_bars, empty_bars, from_us, merge_partials
from dashboard.errors import NoData, SourceUnavailable, short
from dashboard.settings import DashboardSettings
from dashboard.table_files import FileIndex, TableFiles, hour_start, overlapping, rewrites, table_files
from tickstream import duckdb_lake
from tickstream.catalog import load_table, metadata_location, open_catalog
from tickstream.contracts import to_us
from tickstream.lake import BARS_1M, TICKS, LakeLocation, LakeTable, read_status
from tickstream.settings import CatalogSettings, S3Settings

UNREACHABLE = (OSError, SQLAlchemyError, duckdb.IOException, duckdb.HTTPException)
"""Errors that mean a source cannot be reached (S3 and pyarrow raise OSError subclasses)."""


def bars_sql(relation: str) -> str:
    """Bars with window_start in [$start, $end) of a bars_1m relation; the filter on the partition column
    lets DuckDB open only those hours' files."""
    return f"""
        SELECT symbol, epoch_us(window_start) AS window_start_us, open, high, low, close, volume, vwap,
               trade_count, false AS live
        FROM {relation}
        WHERE window_start >= $start AND window_start < $end
    """


def partials_sql(relation: str) -> str:
    """Partial 1-minute bars per file, symbol and minute of the ticks with event_time < $until of a ticks
    relation read with `filename = true` (merged by `dashboard.bars.merge_partials`)."""
    return f"""
        SELECT filename, symbol, ts_us - ts_us % {US_PER_MINUTE} AS minute_us,
               min(ts_us) AS first_ts, arg_min(seq, (ts_us, seq)) AS first_seq,
               arg_min(price, (ts_us, seq)) AS open,
               max(ts_us) AS last_ts, arg_max(seq, (ts_us, seq)) AS last_seq,
               arg_max(price, (ts_us, seq)) AS close,
               max(price) AS high, min(price) AS low, CAST(sum(size) AS BIGINT) AS volume,
               sum(CAST(price AS DECIMAL(38, 8)) * size) AS notional, count(*) AS trade_count
        FROM {relation}
        WHERE event_time < $until
        GROUP BY filename, symbol, minute_us
    """


def live_bars_sql(relation: str) -> str:
    """1-minute bars of the ticks with event_time in [$since, $until) of a ticks relation, by the streaming
    job's rules (docs/lake.md): windows by event time, open and close by (ts_us, seq), VWAP = Σ price·size
    summed exactly as decimal / Σ size."""
    return f"""
        SELECT symbol, ts_us - ts_us % {US_PER_MINUTE} AS window_start_us,
               arg_min(price, (ts_us, seq)) AS open, max(price) AS high, min(price) AS low,
               arg_max(price, (ts_us, seq)) AS close, CAST(sum(size) AS BIGINT) AS volume,
               CAST(sum(CAST(price AS DECIMAL(38, 8)) * size) AS DOUBLE) / sum(size) AS vwap,
               count(*) AS trade_count, true AS live
        FROM {relation}
        WHERE event_time >= $since AND event_time < $until
        GROUP BY symbol, window_start_us
    """


class Lake:
    """Read access to the lake: the catalog (pyiceberg), DuckDB with the lake's extensions, the bucket.

    One in-memory DuckDB database per process (`tickstream.duckdb_lake.connect`); every query runs on its own
    cursor, so Streamlit's session threads can query concurrently.
    """

    def __init__(self, settings: DashboardSettings, s3: S3Settings, catalog: CatalogSettings) -> None:
        """The tables of `catalog`; plain objects at `settings.lake_root` (empty: the bucket of `s3`)."""
        self.settings = settings
        self.catalog_settings = catalog
        self.location = LakeLocation.of(settings.lake_root, s3)
        self._fs, self._base = self.location.filesystem()
        self._catalog = open_catalog(catalog, s3)
        self.files = FileIndex()
        self._partials: dict[str, pl.DataFrame] = {}
        self._partials_lock = threading.Lock()
        self._db = duckdb_lake.connect(s3)
        self._db.execute("SET GLOBAL TimeZone = 'UTC'")
        self._db.execute("SET GLOBAL http_timeout = 10")
        self._db.execute("SET GLOBAL http_retries = 1")
        self._db.execute("SET GLOBAL enable_external_file_cache = true")
        # Small files: more threads than cores overlap the per-file request latency.
        self._db.execute(f"SET GLOBAL threads = {max(8, os.cpu_count() or 1)}")

    # -- Iceberg tables ---------------------------------------------------------------------------------

    def metadata_location(self, table: LakeTable) -> str | None:
        """The table's current metadata file (one SELECT of the catalog), None if the table does not exist."""
        try:
            return metadata_location(self._catalog, self.catalog_settings, table)
        except SQLAlchemyError as exc:
            raise SourceUnavailable(f"the lake's catalog cannot be read: {short(exc)}") from exc

    def query(self, sql: str, params: dict[str, Any]) -> pl.DataFrame:
        """Run `sql` (DuckDB, named $params) on a fresh cursor and return a polars frame."""
        cursor = self._db.cursor()
        try:
            return cursor.execute(sql, params).pl()
        except (duckdb.IOException, duckdb.HTTPException) as exc:
            raise SourceUnavailable(f"the lake cannot be read: {short(exc)}") from exc
        finally:
            cursor.close()

    def bars(self, metadata: str, start: datetime, end: datetime) -> pl.DataFrame:
        """Every symbol's written 1-minute bars with window_start in [start, end) (a snapshot of bars_1m)."""
        return as_bars(self.query(bars_sql(duckdb_lake.iceberg_scan(metadata)), {"start": start, "end": end}))

    def live_bars(self, since: datetime, until: datetime) -> pl.DataFrame:
        """Provisional bars of the minutes in [since, until) computed from raw ticks (the live edge).

        The ticks table's data files whose event-time bounds overlap [since, until) are summarised as
        partial bars per file, symbol and minute (`partials_sql`); a file is immutable, so its partials are
        kept while it overlaps the live edge and a refresh reads only the files committed since. Merged with
        the streaming job's rules (`dashboard.bars.merge_partials`). Marked `live`: the minute may still
        grow, and its written bar replaces it once the bars table has it.
        """
        table = self.table(TICKS)
        try:
            snapshot = self.files.snapshot(table, TICKS)
        except UNREACHABLE as exc:
            raise SourceUnavailable(f"the ticks table's metadata cannot be read: {short(exc)}") from exc
        since_us, until_us = to_us(since), to_us(until)
        if snapshot.deletes:  # rows of data files may be deleted: let DuckDB apply Iceberg's rules
            relation = duckdb_lake.iceberg_scan(table.metadata_location)
            return as_bars(self.query(live_bars_sql(relation), {"since": since, "until": until}))
        files = overlapping(snapshot.files, since_us, until_us)
        # Files wholly before `until` are final; a file reaching past it (a pinned clock) is read each time.
        final = {f.path for f in files if f.upper_us is not None and f.upper_us < until_us}
        with self._partials_lock:
            known = {path: self._partials[path] for path in final if path in self._partials}
        missing = [f.path for f in files if f.path not in known]
        frames = list(known.values())
        if missing:
            read = self.query(
                partials_sql("read_parquet($files, filename = true)"), {"files": missing, "until": until}
            )
            by_file = {
                _local(str(key[0])): group.drop("filename") for key, group in read.group_by("filename")
            }
            for path in missing:
                frame = by_file.get(_local(path))
                if frame is not None:
                    frames.append(frame)
                    if path in final:
                        known[path] = frame
        with self._partials_lock:
            self._partials = known
        if not frames:
            return empty_bars()
        return merge_partials(pl.concat(frames), since_us, until_us)

    def table(self, spec: LakeTable) -> Table:
        """The table's current state through pyiceberg (NoData if it does not exist yet)."""
        try:
            return load_table(self._catalog, self.catalog_settings, spec)
        except (NoSuchTableError, NoSuchNamespaceError):
            raise NoData(f"The lake has no {spec.name} table yet.") from None
        except UNREACHABLE as exc:
            raise SourceUnavailable(f"the {spec.name} table cannot be read: {short(exc)}") from exc

    def table_files(self, spec: LakeTable, since: datetime) -> TableFiles:
        """Files per hour partition from `since` on, the table's hour range, and the retained compactions."""
        table = self.table(spec)
        try:
            snapshot = self.files.snapshot(table, spec)
        except UNREACHABLE as exc:
            raise SourceUnavailable(f"the {spec.name} table's metadata cannot be read: {short(exc)}") from exc
        return table_files(spec.name, snapshot.files, since, rewrites(table))

    def newest(self, spec: LakeTable) -> datetime:
        """The newest value of the table's partition column (ticks: event time of the newest tick).

        From the data files' upper bounds in the manifests; if the newest hour has a file without bounds,
        DuckDB reads that hour's data instead.
        """
        table = self.table(spec)
        try:
            snapshot = self.files.snapshot(table, spec)
        except UNREACHABLE as exc:
            raise SourceUnavailable(f"the {spec.name} table's metadata cannot be read: {short(exc)}") from exc
        hours = [f.hour for f in snapshot.files if f.hour is not None]
        if not hours:
            raise NoData(f"No rows in the {spec.name} table yet.")
        newest_hour = max(hours)
        uppers = [f.upper_us for f in snapshot.files if f.hour == newest_hour]
        if None not in uppers:
            return from_us(max(u for u in uppers if u is not None))
        column = spec.partition_column
        frame = self.query(
            f"SELECT max(epoch_us({column})) AS newest "
            f"FROM {duckdb_lake.iceberg_scan(table.metadata_location)} "
            f"WHERE {column} >= $since",
            {"since": hour_start(newest_hour)},
        )
        value = frame["newest"][0]
        if value is None:
            raise NoData(f"No rows in the {spec.name} table yet.")
        return from_us(int(value))

    # -- plain objects beside the tables ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The streaming job's status object ({} if absent)."""
        try:
            return read_status(self.location)
        except OSError as exc:
            raise SourceUnavailable(
                f"the streaming status cannot be read from {self.location.root}: {short(exc)}"
            ) from exc
        except ValueError as exc:
            raise SourceUnavailable(f"the streaming status is not valid JSON: {short(exc)}") from exc

    def read_json(self, key: str) -> dict[str, Any] | None:
        """A JSON object stored in the bucket (None if absent); re-read if a read raced the writer's PUT."""
        path = f"{self._base}/{key}"
        for attempt in range(3):
            try:
                with self._fs.open_input_stream(path) as stream:
                    loaded = json.loads(bytes(stream.read()).decode())
                return loaded if isinstance(loaded, dict) else None
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise SourceUnavailable(
                    f"{key} cannot be read from {self.location.root}: {short(exc)}"
                ) from exc
            except ValueError:
                if attempt == 2:
                    raise SourceUnavailable(f"{key} is not valid JSON") from None
                time.sleep(0.05)
        return None

    def dbt_run(self) -> dict[str, Any] | None:
        """dbt's run_results.json from the bucket (a key) or the local disk (an absolute path)."""
        location = self.settings.dbt_run_results
        if location.startswith("/"):
            path = Path(location)
            return json.loads(path.read_text()) if path.exists() else None
        return self.read_json(location)

    def _list(self, key_prefix: str, recursive: bool = False) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(f"{self._base}/{key_prefix}", allow_not_found=True, recursive=recursive)
        try:
            return list(self._fs.get_file_info(selector))
        except OSError as exc:
            raise SourceUnavailable(
                f"the lake at {self.location.root} cannot be listed: {short(exc)}"
            ) from exc

    def mart_models(self) -> list[str]:
        """dbt models exported as Parquet under <marts_prefix>/<model>/ (or the marts DuckDB's tables)."""
        if self.settings.marts_duckdb_path:
            path = Path(self.settings.marts_duckdb_path)
            if not path.exists():
                return []
            with duckdb.connect(str(path), read_only=True) as con:
                rows = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
            return sorted(row[0] for row in rows)
        return sorted(
            info.base_name
            for info in self._list(self.settings.marts_prefix)
            if info.type == pafs.FileType.Directory and not info.base_name.startswith(("_", "."))
        )

    def mart(self, model: str, limit: int = 100_000) -> pl.DataFrame:
        """One mart's rows (at most `limit`)."""
        if self.settings.marts_duckdb_path:
            with duckdb.connect(self.settings.marts_duckdb_path, read_only=True) as con:
                return con.execute(f'SELECT * FROM "{model}" LIMIT {int(limit)}').pl()
        infos = self._list(f"{self.settings.marts_prefix}/{model}", recursive=True)
        files = [
            f"s3://{info.path}" if self.location.root.startswith("s3://") else info.path
            for info in infos
            if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")
        ]
        if not files:
            raise NoData(f"The mart {model!r} has no Parquet objects.")
        return self.query(
            f"SELECT * FROM read_parquet($files, union_by_name = true) LIMIT {int(limit)}", {"files": files}
        )


def _local(path: str) -> str:
    """A data file's path as DuckDB's `filename` column gives it (it drops a file:// scheme)."""
    return path.removeprefix("file://")


STREAM_TABLES = (TICKS, BARS_1M)
"""The tables the streaming job appends to (and compaction maintains)."""
