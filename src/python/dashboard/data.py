"""Every read the dashboard makes: the lake (DuckDB + httpfs, pyarrow listings), the marts, Kafka offsets.

The Streamlit pages never touch S3, DuckDB or Kafka themselves; they call the cached functions at the end of
this module, each with a lifetime matching how fast its panel's source changes. Each read raises
`NoData` (the source is fine but has nothing for the request) or `SourceUnavailable` (it cannot be reached
or is broken), whose messages are written for the person looking at the page.

Only the hour partitions a view needs are read: object lists are built per (table, date, hour) through
`tickstream.lake`'s naming and handed to DuckDB as an explicit list, never a glob over the bucket.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import duckdb_extension_httpfs
import polars as pl
import pyarrow.fs as pafs
import streamlit as st

from dashboard.settings import DashboardSettings
from tickstream.lake import (
    BARS_1M,
    COMPACTED_PREFIX,
    MANIFESTS_PREFIX,
    STATUS_KEY,
    TICKS,
    CommittedHour,
    LakeLocation,
    TableSpec,
    committed_hour,
    stream_objects,
)
from tickstream.settings import KafkaSettings, S3Settings

US_PER_MINUTE = 60_000_000
CLOSED_HOUR_MARGIN = timedelta(minutes=5)
"""Without a status object, an hour that ended this long ago counts as closed (watermark 30 s + batches)."""
WRITE_CLOCK_MARGIN = timedelta(minutes=5)
"""Largest assumed difference between event time and the S3 server's clock when an object is written."""
LIVE_TICKS_HOURS = 2
"""The live edge (minutes without a bar yet) is computed from raw ticks of at most this many hours."""
HTTPFS_EXTENSION = (
    Path(duckdb_extension_httpfs.__file__).parent
    / "extensions"
    / f"v{duckdb.__version__}"
    / "httpfs.duckdb_extension"
)
"""httpfs from the PyPI package (duckdb-extension-httpfs, same version as duckdb); never INSTALLed."""

BAR_COLUMNS = [
    "symbol",
    "window_start",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
    "live",
]


class NoData(Exception):
    """The source is reachable but has nothing for this request (yet)."""


class SourceUnavailable(Exception):
    """The source cannot be reached or read (S3 down, wrong credentials, corrupt object)."""


@dataclass(frozen=True)
class TimeRange:
    """A half-open UTC interval [start, end)."""

    start: datetime
    end: datetime

    @classmethod
    def last(cls, span: timedelta, now: datetime) -> TimeRange:
        """The `span` ending at `now`."""
        return cls(now - span, now)

    def hours(self) -> list[datetime]:
        """Start of every UTC hour overlapping the range, oldest first."""
        hour = self.start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        hours = []
        while hour < self.end:
            hours.append(hour)
            hour += timedelta(hours=1)
        return hours


def partition(hour: datetime) -> tuple[str, str]:
    """The (date, hour) partition values of an hour start."""
    return hour.strftime("%Y-%m-%d"), hour.strftime("%H")


def to_us(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime."""
    return int(moment.timestamp() * 1_000_000)


def from_us(ts_us: int) -> datetime:
    """Aware UTC datetime of epoch microseconds."""
    return datetime.fromtimestamp(ts_us / 1_000_000, tz=UTC)


class Lake:
    """Read access to the lake: object listings (pyarrow) and queries over explicit object lists (DuckDB).

    One in-memory DuckDB database per process with httpfs loaded from the package file and an S3 secret;
    every query runs on its own cursor, so Streamlit's session threads can query concurrently.
    """

    def __init__(self, settings: DashboardSettings, s3: S3Settings) -> None:
        """The lake at `settings.lake_root` (a local directory) or in the S3 bucket of `s3`."""
        self.settings = settings
        self.is_s3 = not settings.lake_root or settings.lake_root.startswith("s3://")
        self.location = (
            LakeLocation(root=settings.lake_root, s3=s3)
            if settings.lake_root
            else LakeLocation.for_bucket(s3)
        )
        self._fs, self._base = self.location.filesystem()
        self._db = duckdb.connect(":memory:")
        self._db.execute("SET TimeZone = 'UTC'")
        if self.is_s3:
            self._db.execute(f"LOAD '{HTTPFS_EXTENSION}'")
            self._db.execute("SET http_timeout = 10")
            self._db.execute("SET http_retries = 1")
            self._db.execute(_s3_secret_sql(s3))
        self._db.execute("SET enable_external_file_cache = true")
        # Many small objects: more threads than cores overlap the per-object request latency.
        self._db.execute(f"SET threads = {max(8, os.cpu_count() or 1)}")

    # -- objects ---------------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """What DuckDB reads for a pyarrow path: s3://bucket/key or the local path."""
        return f"s3://{path}" if self.is_s3 else path

    def list_files(self, key_prefix: str, recursive: bool = False) -> list[pafs.FileInfo]:
        """Files under a key prefix (empty when it does not exist); SourceUnavailable if S3 fails."""
        selector = pafs.FileSelector(f"{self._base}/{key_prefix}", allow_not_found=True, recursive=recursive)
        try:
            infos = self._fs.get_file_info(selector)
        except OSError as exc:
            raise SourceUnavailable(
                f"the lake at {self.location.root} cannot be listed: {_short(exc)}"
            ) from exc
        return [info for info in infos if info.type == pafs.FileType.File]

    def list_dirs(self, key_prefix: str) -> list[str]:
        """Names of the directories directly under a key prefix."""
        selector = pafs.FileSelector(f"{self._base}/{key_prefix}", allow_not_found=True)
        try:
            infos = self._fs.get_file_info(selector)
        except OSError as exc:
            raise SourceUnavailable(
                f"the lake at {self.location.root} cannot be listed: {_short(exc)}"
            ) from exc
        return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)

    def committed(self, spec: TableSpec, hour: datetime) -> CommittedHour:
        """What to read for one hour of a table: the lake's reader rule (`tickstream.lake.committed_hour`:
        the compaction manifest's objects plus late stream objects, or the stream objects)."""
        try:
            return committed_hour(self.location, spec, *partition(hour))
        except OSError as exc:
            raise SourceUnavailable(
                f"the lake at {self.location.root} cannot be listed: {_short(exc)}"
            ) from exc
        except ValueError as exc:
            raise SourceUnavailable(
                f"a compaction manifest of {spec.name} is unreadable: {_short(exc)}"
            ) from exc

    def objects(self, spec: TableSpec, hours: Sequence[datetime]) -> list[str]:
        """DuckDB URLs of the committed objects of `hours` of a table (hours listed in parallel)."""
        if not hours:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(hours))) as pool:
            listed = list(pool.map(lambda hour: self.committed(spec, hour), hours))
        return [self.location.url(key) for hour in listed for key in hour.keys]

    def recent_objects(
        self, spec: TableSpec, hours: Sequence[datetime], written_since: datetime
    ) -> list[str]:
        """Committed objects of `hours` minus stream objects last written before `written_since`.

        The live edge needs ticks with event time >= since; an object holding one was written after that
        tick happened, so (clocks agreeing within WRITE_CLOCK_MARGIN) older stream objects cannot hold any.
        An open hour has up to thousands of stream objects: this keeps a refresh to the newest few.
        Compacted objects are always kept.
        """
        urls: list[str] = []
        for hour in hours:
            committed = self.committed(spec, hour)
            date, hour_value = partition(hour)
            old = {
                f"{spec.prefix}/date={date}/hour={hour_value}/{info.base_name}"
                for info in self.list_files(f"{spec.prefix}/date={date}/hour={hour_value}")
                if info.mtime is not None and info.mtime < written_since
            }
            urls.extend(self.location.url(key) for key in committed.keys if key not in old)
        return urls

    def read_text(self, key: str) -> str | None:
        """A small object's text (None if it does not exist); retried when a concurrent PUT mixes versions."""
        path = f"{self._base}/{key}"
        for attempt in range(3):
            try:
                with self._fs.open_input_stream(path) as stream:
                    return bytes(stream.read()).decode()
            except FileNotFoundError:
                return None
            except UnicodeDecodeError:
                if attempt == 2:
                    raise
            except OSError as exc:
                raise SourceUnavailable(
                    f"{key} cannot be read from {self.location.root}: {_short(exc)}"
                ) from exc
            time.sleep(0.05)
        return None

    def read_json(self, key: str) -> dict[str, Any] | None:
        """A JSON object stored in the lake (None if absent); retried if a read raced the writer's PUT."""
        for attempt in range(3):
            text = self.read_text(key)
            if text is None:
                return None
            try:
                loaded = json.loads(text)
            except ValueError:
                if attempt == 2:
                    raise SourceUnavailable(f"{key} is not valid JSON") from None
                time.sleep(0.05)
                continue
            return loaded if isinstance(loaded, dict) else None
        return None

    # -- queries ---------------------------------------------------------------------------------------

    def query(self, sql: str, params: dict[str, Any]) -> pl.DataFrame:
        """Run `sql` (DuckDB, named $params) on a fresh cursor and return a polars frame."""
        cursor = self._db.cursor()
        try:
            return cursor.execute(sql, params).pl()
        except duckdb.IOException as exc:
            raise SourceUnavailable(
                f"the lake at {self.location.root} cannot be read: {_short(exc)}"
            ) from exc
        finally:
            cursor.close()

    def bars(self, hours: Sequence[datetime]) -> pl.DataFrame:
        """All 1-minute bars written for `hours` (every symbol), window_start as UTC datetime."""
        files = self.objects(BARS_1M, hours)
        if not files:
            return empty_bars()
        frame = self.query(
            """
            SELECT symbol, epoch_us(window_start) AS window_start_us, open, high, low, close, volume, vwap,
                   trade_count, false AS live
            FROM read_parquet($files)
            """,
            {"files": files},
        )
        return _with_times(frame)

    def live_bars(self, since_us: int, until_us: int, hours: Sequence[datetime]) -> pl.DataFrame:
        """Provisional bars of the minutes in [since, until) computed from raw ticks (the live edge).

        Same rules as the streaming job's bars (docs/lake.md): open/close by (ts_us, seq), VWAP over
        size; marked `live` because the minute may still grow and its written bar replaces it later.
        """
        files = self.recent_objects(TICKS, hours, from_us(since_us) - WRITE_CLOCK_MARGIN)
        if not files:
            return empty_bars()
        frame = self.query(
            """
            SELECT symbol, ts_us - (ts_us % $minute) AS window_start_us,
                   arg_min(price, (ts_us, seq)) AS open, max(price) AS high, min(price) AS low,
                   arg_max(price, (ts_us, seq)) AS close, sum(size)::BIGINT AS volume,
                   sum(price * size) / sum(size) AS vwap, count(*) AS trade_count, true AS live
            FROM read_parquet($files)
            WHERE ts_us >= $since AND ts_us < $until
            GROUP BY ALL
            """,
            {"files": files, "minute": US_PER_MINUTE, "since": since_us, "until": until_us},
        )
        return _with_times(frame)

    def newest_tick_us(self) -> int:
        """Event time of the newest tick: in the newest hour partition, its three most recently written
        committed stream objects, or its compacted objects if the hour has no stream objects left."""
        prefixes = (TICKS.prefix, f"{COMPACTED_PREFIX}/{TICKS.name}")
        dates = sorted(
            {d for p in prefixes for d in self.list_dirs(p) if d.startswith("date=")}, reverse=True
        )
        for date in dates:
            hours = {h for p in prefixes for h in self.list_dirs(f"{p}/{date}") if h.startswith("hour=")}
            for hour in sorted(hours, reverse=True):
                start = datetime.strptime(f"{date[5:]} {hour[5:]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
                committed = self.committed(TICKS, start)
                keys = set(committed.keys)
                stream = [
                    info
                    for info in self.list_files(f"{TICKS.prefix}/{date}/{hour}")
                    if f"{TICKS.prefix}/{date}/{hour}/{info.base_name}" in keys
                ]
                stream.sort(key=lambda i: (i.mtime or datetime.min.replace(tzinfo=UTC), i.path))
                files = [self.url(i.path) for i in stream[-3:]] or [
                    self.location.url(o.key) for o in committed.compacted
                ]
                if not files:
                    continue
                value = self.query("SELECT max(ts_us) AS ts FROM read_parquet($files)", {"files": files})[
                    "ts"
                ][0]
                if value is not None:
                    return int(value)
        raise NoData("No ticks in the lake yet.")


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp (with Z) as an aware datetime (UTC if it has no zone), or None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _s3_secret_sql(s3: S3Settings) -> str:
    endpoint = s3.endpoint_url.split("://", 1)[-1].rstrip("/") if s3.endpoint_url else ""
    fields = {
        "TYPE": "s3",
        "KEY_ID": s3.access_key_id,
        "SECRET": s3.secret_access_key,
        "REGION": s3.region,
        "URL_STYLE": "path" if s3.path_style else "vhost",
        "USE_SSL": "false" if s3.endpoint_url.startswith("http://") else "true",
    }
    if endpoint:
        fields["ENDPOINT"] = endpoint
    body = ", ".join(
        f"{name} {value}" if name in ("TYPE", "USE_SSL") else f"{name} '{_quote(value)}'"
        for name, value in fields.items()
    )
    return f"CREATE OR REPLACE SECRET lake ({body})"


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def empty_bars() -> pl.DataFrame:
    """A bar frame with no rows (the schema of `Lake.bars`)."""
    return pl.DataFrame(
        schema={
            "symbol": pl.String,
            "window_start": pl.Datetime("us", "UTC"),
            "open": pl.Float64,
            "high": pl.Float64,
            "low": pl.Float64,
            "close": pl.Float64,
            "volume": pl.Int64,
            "vwap": pl.Float64,
            "trade_count": pl.Int64,
            "live": pl.Boolean,
        }
    )


def _with_times(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.from_epoch(pl.col("window_start_us"), time_unit="us")
        .dt.replace_time_zone("UTC")
        .alias("window_start"),
        pl.col("volume").cast(pl.Int64),
        pl.col("trade_count").cast(pl.Int64),
    ).select(BAR_COLUMNS)


# -- pure calculations (tested without a lake) ----------------------------------------------------------


def combine_bars(written: pl.DataFrame, live: pl.DataFrame, time_range: TimeRange) -> pl.DataFrame:
    """Written bars plus live bars of minutes that have no written bar yet, inside the range, sorted."""
    written = written.filter(
        (pl.col("window_start") >= time_range.start) & (pl.col("window_start") < time_range.end)
    )
    if live.height:
        last_written = written.group_by("symbol").agg(pl.col("window_start").max().alias("last_written"))
        live = (
            live.join(last_written, on="symbol", how="left")
            .filter(pl.col("last_written").is_null() | (pl.col("window_start") > pl.col("last_written")))
            .filter((pl.col("window_start") >= time_range.start) & (pl.col("window_start") < time_range.end))
            .drop("last_written")
        )
    return pl.concat([written, live.select(BAR_COLUMNS)]).sort(["symbol", "window_start"])


def with_moving_averages(bars: pl.DataFrame, windows: Iterable[int]) -> pl.DataFrame:
    """Add `ma_<n>`: the simple moving average of the close over the last n bars (per symbol)."""
    return bars.with_columns(
        pl.col("close").rolling_mean(window_size=n, min_samples=n).over("symbol").alias(f"ma_{n}")
        for n in windows
    )


@dataclass(frozen=True)
class Quote:
    """Latest price of a symbol and its change against the open of the range."""

    symbol: str
    price: float
    open: float
    as_of: datetime

    @property
    def change(self) -> float:
        """Absolute change since the open (USD)."""
        return self.price - self.open

    @property
    def change_pct(self) -> float:
        """Relative change since the open, in percent."""
        return 100.0 * self.change / self.open if self.open else math.nan


def quote(bars: pl.DataFrame, symbol: str) -> Quote:
    """Latest close (live minute included) vs the first open of `bars` for `symbol`."""
    rows = bars.filter(pl.col("symbol") == symbol).sort("window_start")
    if rows.is_empty():
        raise NoData(f"No bars for {symbol} in this time range.")
    return Quote(symbol, float(rows["close"][-1]), float(rows["open"][0]), rows["window_start"][-1])


def overview(bars: pl.DataFrame) -> pl.DataFrame:
    """One row per symbol: latest price, % change vs the range's open, volume, volatility.

    Volatility is the standard deviation of 1-minute log returns of the close over the range, in percent
    (not annualised); it needs at least three bars.
    """
    if bars.is_empty():
        raise NoData("No bars in this time range.")
    return (
        bars.sort(["symbol", "window_start"])
        .with_columns((pl.col("close") / pl.col("close").shift(1)).log().over("symbol").alias("log_return"))
        .group_by("symbol")
        .agg(
            pl.col("close").last().alias("price"),
            ((pl.col("close").last() / pl.col("open").first() - 1.0) * 100.0).alias("change_pct"),
            pl.col("volume").sum().alias("volume"),
            (pl.col("log_return").drop_nulls().std() * 100.0).alias("volatility_pct"),
            pl.col("window_start").last().alias("as_of"),
        )
        .sort("symbol")
    )


# -- pipeline health -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One health indicator: good, late or failing, with the figure behind it."""

    name: str
    state: str
    value: str
    detail: str = ""


def age_state(age_s: float, late_s: float, failing_s: float) -> str:
    """good below `late_s`, late below `failing_s`, failing above."""
    if age_s < late_s:
        return "good"
    return "late" if age_s < failing_s else "failing"


def reads_kafka(query: dict[str, Any]) -> bool:
    """Whether a query of the status object consumes Kafka (its `source` is Spark's Kafka source).

    Status objects written before `source` existed had Kafka-reading queries only.
    """
    return str(query.get("source") or "Kafka").startswith("Kafka")


def consumer_lag(end_offsets: dict[int, int], processed: Any, topic: str) -> dict[int, int]:
    """Records per partition that Kafka has and the streaming query had not processed yet.

    `processed` is the status object's `end_offsets` of a query ({topic: {partition: next offset}}, Spark's
    format); a partition missing there counts as not processed at all.
    """
    done = {}
    if isinstance(processed, dict):
        done = {int(p): int(o) for p, o in (processed.get(topic) or {}).items()}
    return {p: max(0, end - done.get(p, 0)) for p, end in sorted(end_offsets.items())}


def kafka_end_offsets(kafka: KafkaSettings, topic: str, timeout_s: float) -> dict[int, int]:
    """High watermark of each partition of `topic`."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"tickstream-dashboard-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "socket.timeout.ms": int(timeout_s * 1000),
            "log_level": 0,
            "logger": _silent_logger,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        entry = metadata.topics.get(topic)
        if entry is None or entry.error is not None or not entry.partitions:
            raise SourceUnavailable(f"Kafka topic {topic!r} not found at {kafka.bootstrap_servers}")
        return {
            p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1])
            for p in sorted(entry.partitions)
        }
    except KafkaException as exc:
        raise SourceUnavailable(f"Kafka at {kafka.bootstrap_servers} is unreachable: {_short(exc)}") from exc
    finally:
        consumer.close()


class _SilentLogger:
    def log(self, *args: Any) -> None:
        """Drop librdkafka's connection-refused chatter (the page reports the failure)."""


_silent_logger = _SilentLogger()


def small_files(lake: Lake, hours: Sequence[datetime]) -> pl.DataFrame:
    """Per hour partition of each stream table: streaming objects in it, and objects a reader reads now.

    `stream_objects` counts every object the streaming job wrote (replaced ones stay until the compaction
    job's grace period ends); `read_objects` is what the reader rule selects: after compaction, the
    manifest's objects plus stream objects that arrived later.
    """
    rows = []
    for spec in (TICKS, BARS_1M):
        for hour in hours:
            date, hour_value = partition(hour)
            try:
                stream = stream_objects(lake.location, spec, date, hour_value)
            except OSError as exc:
                raise SourceUnavailable(
                    f"the lake at {lake.location.root} cannot be listed: {_short(exc)}"
                ) from exc
            committed = lake.committed(spec, hour)
            if not stream and committed.manifest is None:
                continue
            rows.append(
                {
                    "table": spec.name,
                    "partition": f"date={date}/hour={hour_value}",
                    "stream_objects": len(stream),
                    "compacted": committed.manifest is not None,
                    "read_objects": len(committed.objects),
                }
            )
    schema = {
        "table": pl.String,
        "partition": pl.String,
        "stream_objects": pl.Int64,
        "compacted": pl.Boolean,
        "read_objects": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)


def last_modified(infos: Iterable[pafs.FileInfo]) -> datetime | None:
    """Newest modification time of a set of objects."""
    times = [info.mtime for info in infos if info.mtime is not None]
    return max(times).astimezone(UTC) if times else None


def dbt_run(lake: Lake, location: str) -> dict[str, Any] | None:
    """dbt's run_results.json from the lake (a key) or the local disk (an absolute path)."""
    if location.startswith("/"):
        path = Path(location)
        return json.loads(path.read_text()) if path.exists() else None
    return lake.read_json(location)


# -- marts -------------------------------------------------------------------------------------------------


def mart_models(lake: Lake) -> list[str]:
    """dbt models as Parquet under <marts_prefix>/<model>/ (or the tables of the marts DuckDB file)."""
    if lake.settings.marts_duckdb_path:
        path = Path(lake.settings.marts_duckdb_path)
        if not path.exists():
            return []
        with duckdb.connect(str(path), read_only=True) as con:
            return sorted(
                row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
            )
    return [name for name in lake.list_dirs(lake.settings.marts_prefix) if not name.startswith(("_", "."))]


def read_mart(lake: Lake, model: str, limit: int = 100_000) -> pl.DataFrame:
    """One mart's rows (at most `limit`)."""
    if lake.settings.marts_duckdb_path:
        with duckdb.connect(lake.settings.marts_duckdb_path, read_only=True) as con:
            return con.execute(f'SELECT * FROM "{model}" LIMIT {int(limit)}').pl()
    infos = lake.list_files(f"{lake.settings.marts_prefix}/{model}", recursive=True)
    files = [lake.url(info.path) for info in infos if info.base_name.endswith(".parquet")]
    if not files:
        raise NoData(f"The mart {model!r} has no Parquet objects.")
    return lake.query(
        f"SELECT * FROM read_parquet($files, union_by_name = true) LIMIT {int(limit)}", {"files": files}
    )


# -- cached entry points used by the pages ----------------------------------------------------------------


def _cache_settings() -> DashboardSettings:
    try:
        return DashboardSettings()
    except ValueError:
        return DashboardSettings.model_construct()


_TTL = _cache_settings()
"""Cache lifetimes are read once per process (st.cache_data fixes its ttl when a function is decorated)."""
Keys = tuple[str, str]


@st.cache_resource(show_spinner=False)
def get_lake(settings_json: str, s3_json: str) -> Lake:
    """One `Lake` (DuckDB database, S3 filesystem) per process and configuration."""
    return Lake(DashboardSettings.model_validate_json(settings_json), S3Settings.model_validate_json(s3_json))


class Sources:
    """The configured sources, each read cached (st.cache_data) for its panel's freshness."""

    def __init__(self, settings: DashboardSettings, s3: S3Settings, kafka: KafkaSettings) -> None:
        """Sources for these settings (the `Lake` is shared per process)."""
        self.settings = settings
        self.kafka = kafka
        self.keys: Keys = (settings.model_dump_json(), s3.model_dump_json())

    def now(self) -> datetime:
        """The dashboard's clock (settings.now if pinned)."""
        pinned = self.settings.now
        if pinned is not None:
            return pinned if pinned.tzinfo else pinned.replace(tzinfo=UTC)
        return datetime.now(UTC)

    def bars(self, time_range: TimeRange) -> pl.DataFrame:
        """Every symbol's bars in `time_range`, with the live edge from raw ticks.

        Closed hours (every bar written: see `bars_closed_until`) are cached for an hour, open hours and the
        live edge for refresh_seconds: a day view re-reads about one hour of bars per refresh.
        """
        hours = time_range.hours()
        closed_until = self.bars_closed_until()
        closed = tuple(h for h in hours if h + timedelta(hours=1) <= closed_until)
        open_ = tuple(h for h in hours if h not in closed)
        frames = [_closed_bars(self.keys, closed)] if closed else []
        if open_:
            frames.append(_open_bars(self.keys, open_))
        written = pl.concat(frames) if frames else empty_bars()
        live_from = max(time_range.start, time_range.end - timedelta(hours=LIVE_TICKS_HOURS))
        if written.height:
            newest_bar: datetime = written["window_start"].max()  # type: ignore[assignment]
            live_from = max(live_from, newest_bar + timedelta(minutes=1))
        live = empty_bars()
        if live_from < time_range.end:
            live_from = live_from.replace(second=0, microsecond=0)
            until_us = to_us(time_range.end)
            live = _live_bars(
                self.keys,
                to_us(live_from),
                int(until_us // (_TTL.refresh_seconds * 1_000_000)),
                until_us,
                tuple(TimeRange(live_from, time_range.end).hours()),
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
        """Bars of minutes ending before this instant are all in the lake, so their hours can be cached.

        The bars query's watermark from the status object (bars are appended when the watermark passes
        their end, and the status is written after the batch's objects); without a status, now minus
        CLOSED_HOUR_MARGIN. A lagging job thus keeps its unfinished hours fresh instead of cached.
        """
        try:
            watermark = (self.status().get("queries", {}).get(BARS_1M.name) or {}).get("watermark")
        except (NoData, SourceUnavailable):
            watermark = None
        parsed = parse_time(watermark)
        return parsed if parsed is not None else self.now() - CLOSED_HOUR_MARGIN

    def status(self) -> dict[str, Any]:
        """The streaming job's status object (NoData when the job never ran)."""
        status = _status(self.keys)
        if not status:
            raise NoData(f"No {STATUS_KEY} yet: the streaming job has not finished a batch.")
        return status

    def newest_tick(self) -> datetime:
        """Event time of the newest tick in the lake."""
        return from_us(_newest_tick_us(self.keys))

    def kafka_end_offsets(self) -> dict[int, int]:
        """End offsets of the dashboard's topic."""
        return _kafka_end_offsets(
            self.kafka.model_dump_json(), self.settings.kafka_topic, self.settings.kafka_timeout_seconds
        )

    def small_files(self, hours: int = 6) -> pl.DataFrame:
        """Objects per partition for the last `hours` hours, before and after compaction."""
        return _small_files(self.keys, tuple(TimeRange.last(timedelta(hours=hours), self.now()).hours()))

    def last_compaction(self) -> datetime | None:
        """When the newest compaction manifest was published (None: never)."""
        return _last_compaction(self.keys)

    def dbt_run(self) -> dict[str, Any] | None:
        """dbt's last run_results.json, if the location has one."""
        return _dbt_run(self.keys)

    def mart_models(self) -> list[str]:
        """Models the marts location holds."""
        return _mart_models(self.keys)

    def mart(self, model: str) -> pl.DataFrame:
        """One mart's rows."""
        return _mart(self.keys, model)


def _lake(keys: Keys) -> Lake:
    try:
        return get_lake(*keys)
    except (OSError, duckdb.Error, ValueError) as exc:
        raise SourceUnavailable(f"the lake cannot be opened: {_short(exc)}") from exc


@st.cache_data(show_spinner=False, ttl=3600, max_entries=32)
def _closed_bars(keys: Keys, hours: tuple[datetime, ...]) -> pl.DataFrame:
    return _lake(keys).bars(hours)


@st.cache_data(show_spinner=False, ttl=_TTL.refresh_seconds, max_entries=32)
def _open_bars(keys: Keys, hours: tuple[datetime, ...]) -> pl.DataFrame:
    return _lake(keys).bars(hours)


@st.cache_data(show_spinner=False, ttl=_TTL.refresh_seconds, max_entries=32)
def _live_bars(
    keys: Keys, since_us: int, refresh_period: int, _until_us: int, _hours: tuple[datetime, ...]
) -> pl.DataFrame:
    # Keyed by refresh period, not the exact clock: sessions refreshing together share one read.
    return _lake(keys).live_bars(since_us, _until_us, _hours)


@st.cache_data(show_spinner=False, ttl=_TTL.health_refresh_seconds)
def _status(keys: Keys) -> dict[str, Any] | None:
    return _lake(keys).read_json(STATUS_KEY)


@st.cache_data(show_spinner=False, ttl=_TTL.health_refresh_seconds)
def _newest_tick_us(keys: Keys) -> int:
    return _lake(keys).newest_tick_us()


@st.cache_data(show_spinner=False, ttl=_TTL.health_refresh_seconds)
def _kafka_end_offsets(kafka_json: str, topic: str, timeout_s: float) -> dict[int, int]:
    return kafka_end_offsets(KafkaSettings.model_validate_json(kafka_json), topic, timeout_s)


@st.cache_data(show_spinner=False, ttl=60)
def _small_files(keys: Keys, hours: tuple[datetime, ...]) -> pl.DataFrame:
    return small_files(_lake(keys), hours)


@st.cache_data(show_spinner=False, ttl=60)
def _last_compaction(keys: Keys) -> datetime | None:
    return last_modified(_lake(keys).list_files(MANIFESTS_PREFIX, recursive=True))


@st.cache_data(show_spinner=False, ttl=60)
def _dbt_run(keys: Keys) -> dict[str, Any] | None:
    lake = _lake(keys)
    return dbt_run(lake, lake.settings.dbt_run_results)


@st.cache_data(show_spinner=False, ttl=_TTL.history_ttl_seconds)
def _mart_models(keys: Keys) -> list[str]:
    return mart_models(_lake(keys))


@st.cache_data(show_spinner=False, ttl=_TTL.history_ttl_seconds)
def _mart(keys: Keys, model: str) -> pl.DataFrame:
    return read_mart(_lake(keys), model)


def clear_caches() -> None:
    """Forget every cached read and the DuckDB database (tests)."""
    st.cache_data.clear()
    get_lake.clear()
