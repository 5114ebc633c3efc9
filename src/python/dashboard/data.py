"""The dashboard's sources as the pages see them (`Sources`): every read, cached for its panel's freshness.

The Streamlit pages never touch the catalog, S3, DuckDB or Kafka themselves; they call `Sources`, whose reads
go through `st.cache_data` functions (shared by every session of the process) into `dashboard.lake_reader`
and Kafka. Each read raises `NoData` (the source is fine but has nothing for the request) or
`SourceUnavailable` (it cannot be reached or is broken).

Caching: an Iceberg metadata file never changes, so results read from one are cached by its location (the
bars of the open hour are re-read only when the streaming job appended bars, about once a minute). Bars of
closed hours (ended before the bars' watermark in the status object) are final and kept for an hour. Other
reads are keyed by the current period of their panel's refresh interval, so sessions refreshing together
share one read, and nothing is read from the environment before a page runs.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import polars as pl
import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from dashboard.bars import TimeRange, combine_bars, empty_bars, live_edge_start
from dashboard.errors import NoData, SourceUnavailable, short
from dashboard.health import parse_time
from dashboard.lake_reader import STREAM_TABLES, Lake
from dashboard.settings import DashboardSettings
from dashboard.table_files import TableFiles
from tickstream.kafka import topic_offsets
from tickstream.lake import BARS_1M, STATUS_KEY, TICKS, LakeTable
from tickstream.settings import CatalogSettings, KafkaSettings, S3Settings, settings_json

CLOSED_HOUR_MARGIN = timedelta(minutes=5)
"""Without a status object, an hour that ended this long ago counts as closed (its bars all written)."""
FILES_HOURS = 6
"""The health page shows files per hour partition of this many recent hours."""
METADATA_REFRESH_SECONDS = 60.0
"""Files per partition, compactions and dbt's run results are re-read this often."""
Keys = tuple[str, str, str]


def period(seconds: float) -> int:
    """The current period of `seconds` (a cache key part: entries expire when it ends; 0 s: never cached)."""
    return int(time.time() // seconds) if seconds > 0 else time.monotonic_ns()


class Sources:
    """The configured sources, each read cached for its panel's freshness."""

    def __init__(
        self, settings: DashboardSettings, s3: S3Settings, catalog: CatalogSettings, kafka: KafkaSettings
    ) -> None:
        """Sources for these settings (the `Lake` is shared per process and configuration)."""
        self.settings = settings
        self.kafka = kafka
        self.keys: Keys = (settings_json(settings), settings_json(s3), settings_json(catalog))

    def now(self) -> datetime:
        """The dashboard's clock (settings.now if pinned)."""
        pinned = self.settings.now
        if pinned is not None:
            return pinned if pinned.tzinfo else pinned.replace(tzinfo=UTC)
        return datetime.now(UTC)

    def metadata_location(self, table: LakeTable) -> str | None:
        """The table's current metadata file (one catalog SELECT, not cached)."""
        return _lake(self.keys).metadata_location(table)

    # -- live view -----------------------------------------------------------------------------------

    def bars(self, time_range: TimeRange) -> pl.DataFrame:
        """Every symbol's bars in `time_range`, with the live edge computed from raw ticks.

        Closed hours (every bar written: see `bars_closed_until`) are read once an hour; the open hours
        whenever bars_1m has a new snapshot; the live edge (minutes after the newest written bar) from the
        ticks of its minutes on every refresh.
        """
        hours = time_range.hours()
        written = empty_bars()
        bars_location = self.metadata_location(BARS_1M)
        if bars_location is not None and hours:
            closed_until = self.bars_closed_until()
            closed = [h for h in hours if h + timedelta(hours=1) <= closed_until]
            frames = []
            if closed:
                frames.append(
                    _closed_bars(self.keys, closed[0], closed[-1] + timedelta(hours=1), bars_location)
                )
            open_from = closed[-1] + timedelta(hours=1) if closed else hours[0]
            if open_from < time_range.end:
                frames.append(_open_bars(self.keys, bars_location, open_from, hours[-1] + timedelta(hours=1)))
            written = pl.concat(frames) if frames else written
        live = empty_bars()
        since = live_edge_start(written, time_range)
        if since is not None:
            ticks_location = self.metadata_location(TICKS)
            if ticks_location is not None:
                live = _live_bars(
                    self.keys, ticks_location, since, period(self.settings.refresh_seconds), time_range.end
                )
        bars = combine_bars(written, live, time_range)
        if bars.is_empty():
            raise NoData(
                f"No bars or ticks between {time_range.start:%Y-%m-%d %H:%M} and "
                f"{time_range.end:%Y-%m-%d %H:%M}"
                " UTC yet."
            )
        return bars

    def bars_closed_until(self) -> datetime:
        """Bars of minutes before this instant are all in the lake, so their hours can be cached.

        The bars entry's watermark in the status object (the end of the minutes its last append covered;
        the status is written after the append's commit); without it, now minus CLOSED_HOUR_MARGIN. A lagging
        job thus keeps its unfinished hours fresh instead of cached.
        """
        try:
            watermark = ((self.status().get("queries") or {}).get(BARS_1M.name) or {}).get("watermark")
        except (NoData, SourceUnavailable):
            watermark = None
        parsed = parse_time(watermark)
        return parsed if parsed is not None else self.now() - CLOSED_HOUR_MARGIN

    # -- health ----------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The streaming job's status object (NoData when the job never wrote one)."""
        status = _status(self.keys, period(self.settings.health_refresh_seconds))
        if not status:
            raise NoData(f"No {STATUS_KEY} yet: the streaming job has not written its status.")
        return status

    def newest_tick(self) -> datetime:
        """Event time of the newest tick in the lake (from the ticks table's metadata)."""
        return _newest(self.keys, TICKS.name, period(self.settings.health_refresh_seconds))

    def kafka_end_offsets(self) -> dict[int, int]:
        """End offsets of the dashboard's topic."""
        return _kafka_end_offsets(
            settings_json(self.kafka),
            self.settings.kafka_topic,
            self.settings.kafka_timeout_seconds,
            period(self.settings.health_refresh_seconds),
        )

    def table_files(self) -> list[TableFiles]:
        """Files per hour of the last FILES_HOURS hours and the retained compactions, of ticks and bars_1m."""
        since = (self.now() - timedelta(hours=FILES_HOURS - 1)).replace(minute=0, second=0, microsecond=0)
        return _table_files(self.keys, since, period(METADATA_REFRESH_SECONDS))

    def closed_until(self) -> dict[str, datetime]:
        """Per stream table, the instant before which its hours are closed: its watermark in the status
        object, else now minus CLOSED_HOUR_MARGIN."""
        try:
            queries = self.status().get("queries") or {}
        except (NoData, SourceUnavailable):
            queries = {}
        fallback = self.now() - CLOSED_HOUR_MARGIN
        return {
            name: parse_time((queries.get(name) or {}).get("watermark")) or fallback
            for name in (TICKS.name, BARS_1M.name)
        }

    def dbt_run(self) -> dict[str, Any] | None:
        """dbt's last run_results.json, if the location has one."""
        return _dbt_run(self.keys, period(METADATA_REFRESH_SECONDS))

    # -- history ---------------------------------------------------------------------------------------

    def mart_models(self) -> list[str]:
        """Models the marts location holds."""
        return _mart_models(self.keys, period(self.settings.history_ttl_seconds))

    def mart(self, model: str) -> pl.DataFrame:
        """One mart's rows."""
        return _mart(self.keys, model, period(self.settings.history_ttl_seconds))


def kafka_end_offsets(kafka: KafkaSettings, topic: str, timeout_s: float) -> dict[int, int]:
    """High watermark of each partition of `topic`."""
    from confluent_kafka import KafkaException

    quiet = {"socket.timeout.ms": int(timeout_s * 1000), "log_level": 0, "logger": _SilentLogger()}
    try:
        offsets = topic_offsets(
            kafka.bootstrap_servers, topic, timeout_s, {**quiet, **kafka.client_security()}
        )
    except LookupError as exc:
        raise SourceUnavailable(str(exc)) from exc
    except KafkaException as exc:
        raise SourceUnavailable(f"Kafka at {kafka.bootstrap_servers} is unreachable: {short(exc)}") from exc
    return {partition: high for partition, (_, high) in offsets.items()}


class _SilentLogger:
    def log(self, *args: Any) -> None:
        """Drop librdkafka's connection-refused chatter (the page reports the failure)."""


# -- cached reads (shared by every session of the process) -------------------------------------------------


@st.cache_resource(show_spinner=False)
def get_lake(settings_json: str, s3_json: str, catalog_json: str) -> Lake:
    """One `Lake` (catalog connection, DuckDB database, S3 filesystem) per process and configuration."""
    return Lake(
        DashboardSettings.model_validate_json(settings_json),
        S3Settings.model_validate_json(s3_json),
        CatalogSettings.model_validate_json(catalog_json),
    )


def _lake(keys: Keys) -> Lake:
    try:
        return get_lake(*keys)
    except (OSError, duckdb.Error, ValueError, SQLAlchemyError) as exc:
        raise SourceUnavailable(f"the lake cannot be opened: {short(exc)}") from exc


@st.cache_data(show_spinner=False, ttl=3600, max_entries=16)
def _closed_bars(keys: Keys, start: datetime, end: datetime, _location: str) -> pl.DataFrame:
    # Final bars: any snapshot from now on holds the same rows for these hours.
    return _lake(keys).bars(_location, start, end)


@st.cache_data(show_spinner=False, ttl=3600, max_entries=16)
def _open_bars(keys: Keys, location: str, start: datetime, end: datetime) -> pl.DataFrame:
    return _lake(keys).bars(location, start, end)


@st.cache_data(show_spinner=False, ttl=600, max_entries=16)
def _live_bars(
    keys: Keys, location: str, since: datetime, refresh_period: int, _until: datetime
) -> pl.DataFrame:
    # Keyed by the ticks table's snapshot (its metadata location) and the refresh period, not the exact
    # clock: sessions refreshing together share one read.
    return _lake(keys).live_bars(since, _until)


@st.cache_data(show_spinner=False, ttl=600, max_entries=4)
def _status(keys: Keys, refresh_period: int) -> dict[str, Any]:
    return _lake(keys).status()


@st.cache_data(show_spinner=False, ttl=600, max_entries=4)
def _newest(keys: Keys, table: str, refresh_period: int) -> datetime:
    return _lake(keys).newest(TICKS if table == TICKS.name else BARS_1M)


@st.cache_data(show_spinner=False, ttl=600, max_entries=4)
def _kafka_end_offsets(kafka_json: str, topic: str, timeout_s: float, refresh_period: int) -> dict[int, int]:
    return kafka_end_offsets(KafkaSettings.model_validate_json(kafka_json), topic, timeout_s)


@st.cache_data(show_spinner=False, ttl=600, max_entries=4)
def _table_files(keys: Keys, since: datetime, refresh_period: int) -> list[TableFiles]:
    lake = _lake(keys)
    return [lake.table_files(table, since) for table in STREAM_TABLES]


@st.cache_data(show_spinner=False, ttl=600, max_entries=4)
def _dbt_run(keys: Keys, refresh_period: int) -> dict[str, Any] | None:
    return _lake(keys).dbt_run()


@st.cache_data(show_spinner=False, ttl=3600, max_entries=4)
def _mart_models(keys: Keys, refresh_period: int) -> list[str]:
    return _lake(keys).mart_models()


@st.cache_data(show_spinner=False, ttl=3600, max_entries=32)
def _mart(keys: Keys, model: str, refresh_period: int) -> pl.DataFrame:
    return _lake(keys).mart(model)


def clear_caches() -> None:
    """Forget every cached read and the lake connections (tests)."""
    st.cache_data.clear()
    get_lake.clear()
