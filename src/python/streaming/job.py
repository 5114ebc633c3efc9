"""The streaming job: `python -m streaming.job [options]` streams Kafka ticks into the lake until stopped.

One Structured Streaming query, `ticks`, the only Kafka consumer and stateless: every record is parsed and
validated by the contract, and each micro-batch is committed from `foreachBatch` to the lake's Iceberg
tables exactly once (`streaming.writers.IcebergBatchSink`): valid ticks, however late, to `ticks` less the
proven duplicates (de-duplicated against the table), rejected records to `quarantine` (raw value, reason,
Kafka coordinates). Beside the query, once a minute, the 1-minute bars of the minutes now complete are
computed from the committed ticks and appended to `bars_1m`, and the hours that received late ticks get
their bars recomputed (`streaming.writers.BarsUpdater`, run by `BarsSchedule`). A new checkpoint starts
after the Kafka offsets the lake already holds, so losing the checkpoint duplicates nothing.

Options override the TICKSTREAM_STREAMING_* environment; the catalog comes from TICKSTREAM_CATALOG_*.
SIGINT/SIGTERM to the driver (not its process group: the JVM must outlive the request) stop the query
gracefully between batches. A failed query (Kafka or S3 down, a broken batch) is restarted from its
checkpoint with back-off (`streaming.supervisor`); the supervisor's loop also runs the bars updates and
the expiry of old snapshots (`SnapshotExpiry`), in a lower-priority scheduler pool than the query.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from streaming.settings import StreamingSettings, delay_seconds
from streaming.spark_session import spark_conf
from streaming.status import StatusBook, StatusListener, StatusStore
from streaming.supervisor import StopFlag, Upkeep, error_summary, supervise
from streaming.transforms import from_kafka, parse_ticks, route_ticks_batch
from streaming.writers import BarsUpdater, IcebergBatchSink, committed_offsets, uncorrected_late_hours
from tickstream.kafka import topic_offsets
from tickstream.lake import BARS_1M, QUARANTINE, TABLES, TICKS, LakeLocation
from tickstream.logs import configure_logging, get_logger
from tickstream.settings import CatalogSettings, KafkaSettings, PathsSettings, S3Settings, invalid_settings
from tickstream.spark import build_spark_session, cached_connector_jars
from tickstream.spark_iceberg import expire_snapshots

QUERY_ID_PROPERTY = "sql.streaming.queryId"
"""Spark local property holding the running query's id inside foreachBatch."""

RETAIN_SNAPSHOTS = 10
"""Snapshots every table keeps whatever their age (the newest ones)."""
CORRECTION_SPACING_S = 5.0
"""Least time between two recomputations of the bars of hours that received late ticks."""
SCHEDULER_POOL = "spark.scheduler.pool"
TICKS_POOL, UPKEEP_POOL = "ticks", "upkeep"
"""Fair-scheduler pools (`spark_session.scheduler_pools`): the ticks query's jobs first, upkeep after."""


log = get_logger("streaming.job")


# --- the pipeline ------------------------------------------------------------------------------------


def ticks_pipeline(records: DataFrame, settings: StreamingSettings) -> DataFrame:
    """Every Kafka record parsed and validated (no state: ticks are de-duplicated against the lake)."""
    records = from_kafka(records).coalesce(settings.parse_partitions)
    return parse_ticks(records, round(settings.max_event_time_ahead_seconds * 1_000_000))


def starting_offsets(settings: StreamingSettings, kafka: KafkaSettings, committed: dict[int, int]) -> str:
    """Where a new checkpoint starts: after the records the lake already holds (per partition, as Spark's
    JSON, partitions the lake has none of at `settings.starting_offsets`), else `settings.starting_offsets`.

    Spark only uses this for a new checkpoint; an existing one resumes from its own offsets.
    """
    if not committed:
        return settings.starting_offsets
    partitions = topic_offsets(kafka.bootstrap_servers, settings.topic)
    default = {"earliest": -2, "latest": -1}.get(settings.starting_offsets, -2)
    offsets = {str(p): committed.get(p, default) for p in partitions}
    return json.dumps({settings.topic: offsets})


def kafka_records(
    spark: SparkSession, settings: StreamingSettings, kafka: KafkaSettings, starting: str
) -> DataFrame:
    """The Kafka source of the ticks query (`starting`: where a new checkpoint starts)."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka.bootstrap_servers)
        .option("subscribe", settings.topic)
        .option("startingOffsets", starting)
        .option("failOnDataLoss", str(settings.fail_on_data_loss).lower())
    )
    if settings.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
    return reader.load()


# --- wiring ------------------------------------------------------------------------------------------


class LakeSink:
    """The foreachBatch function: commit a micro-batch's tables once; track how far minutes are complete.

    Event time (docs/streaming.md): a minute is *complete* once the batches have moved event time
    `watermark_delay` past its end, with event time counted no further than the records' Kafka timestamps
    (arrival) so that a tick ahead of its clock cannot complete minutes early. A tick of a complete minute
    is *late*: it is stored like any other, counted, and its hour's bars are recomputed
    (`take_late_hours`).
    """

    def __init__(self, tables: IcebergBatchSink, book: StatusBook, settings: StreamingSettings) -> None:
        """Commit through `tables`, report to `book`."""
        self.tables = tables
        self.book = book
        self.lateness = timedelta(seconds=delay_seconds(settings.watermark_delay))
        self.complete_until: datetime | None = None
        """The minutes before this are complete in the ticks table (monotonic)."""
        self._late_hours: set[datetime] = set()
        self._last_batch: tuple[str, int] | None = None
        self._lock = threading.Lock()

    def __call__(self, batch: DataFrame, epoch_id: int) -> None:
        """Commit one micro-batch (a replay of a committed batch is skipped per table)."""
        spark = batch.sparkSession
        query_id = spark.sparkContext.getLocalProperty(QUERY_ID_PROPERTY)
        if not query_id:
            raise RuntimeError(f"Spark did not set {QUERY_ID_PROPERTY}; cannot tell a replayed batch")
        output = self.tables.write(route_ticks_batch(batch), query_id, epoch_id, self.complete_until)
        if output.max_event_time is not None and output.max_arrival is not None:
            bound = min(output.max_event_time, output.max_arrival) - self.lateness
            self.complete_until = max(bound, self.complete_until or bound)
        with self._lock:
            self._late_hours |= output.late_hours
            self._last_batch = (query_id, epoch_id)
        self.book.record_output(query_id, replace(output, complete_until=self.complete_until))

    def take_late_hours(self) -> tuple[set[datetime], tuple[str, int] | None]:
        """The hours that received late ticks since the last call (their bars need recomputing), and the
        (query id, batch id) of the last batch committed by then: once those hours are corrected, the bars
        agree with the ticks of every batch through it."""
        with self._lock:
            hours, self._late_hours = self._late_hours, set()
            return hours, self._last_batch

    def give_back(self, hours: set[datetime]) -> None:
        """Hours whose bars correction failed: they are taken again next time."""
        with self._lock:
            self._late_hours |= hours


class BarsSchedule:
    """Keeps `bars_1m` up to date from the supervisor's loop: appends the bars of completed minutes at most
    every `bars_trigger_seconds`, and recomputes the bars of hours that received late ticks within
    `CORRECTION_SPACING_S` of their commit.

    Off the ticks query's path: a bars update (reading ticks back) never delays a commit. A failed update
    (S3 down) is logged and retried at the next round; the bars are caught up then.
    """

    def __init__(
        self,
        spark: SparkSession,
        bars: BarsUpdater,
        sink: LakeSink,
        book: StatusBook,
        every_s: float,
        correction_every_s: float = CORRECTION_SPACING_S,
    ) -> None:
        """Update `bars` up to `sink.complete_until`; report to `book`."""
        self.spark, self.bars, self.sink, self.book, self.every_s = spark, bars, sink, book, every_s
        self.correction_every_s = correction_every_s
        self._due = 0.0
        self._correction_due = 0.0
        self._reported: tuple[str, int] | None = None

    def maybe_run(self) -> None:
        """Correct the hours with late ticks if any are waiting, then append newly complete minutes if due."""
        complete_until = self.sink.complete_until
        if complete_until is None:
            return
        try:
            if time.monotonic() >= self._correction_due:
                self._correction_due = time.monotonic() + self.correction_every_s
                self.correct()
            if time.monotonic() >= self._due:
                self._due = time.monotonic() + self.every_s
                output = self.bars.update(self.spark, complete_until)
                if output is not None:
                    self.book.record_bars(output)
        except Exception as exc:
            log.warning("bars_update_failed", error=error_summary(exc))
            self.book.record_bars_failure(error_summary(exc))
            self._due = self._correction_due = time.monotonic()  # retry at the next round

    def correct(self) -> None:
        """Recompute the bars of the hours that received late ticks (given back if it fails), and report
        the last batch the bars now agree with (`bars_1m.corrected_through_batch` in the status)."""
        hours, through = self.sink.take_late_hours()
        if hours:
            try:
                corrected = self.bars.correct(self.spark, hours)
            except Exception:
                self.sink.give_back(hours)
                raise
            if corrected is not None:
                log.info(
                    "bars_corrected", hours=len(hours), rows=corrected.rows, duration_ms=corrected.write_ms
                )
                self.book.record_bars_correction(corrected, len(hours))
        if through is not None and through != self._reported:
            self.book.record_bars_consistent(*through)
            self._reported = through


def start_ticks_query(records: DataFrame, settings: StreamingSettings, sink: LakeSink) -> StreamingQuery:
    """Start the ticks query on a stream of Kafka records (`kafka_records`), with its checkpoint."""
    stream = ticks_pipeline(records, settings)
    return (
        stream.writeStream.queryName(TICKS.name)
        .outputMode("append")
        .option("checkpointLocation", settings.checkpoint_for(TICKS.name))
        .trigger(processingTime=f"{round(settings.trigger_seconds * 1000)} milliseconds")
        .foreachBatch(sink)
        .start()
    )


class SnapshotExpiry:
    """Expires the lake tables' old snapshots every so often, so each commit's metadata stays small.

    Every append adds a snapshot to the table's metadata file, which every commit rewrites and every
    reader parses: at one commit per second an hour of snapshots is megabytes. Run from the supervisor's
    loop (not a batch), so a slow expiry never delays a commit.
    """

    def __init__(self, spark: SparkSession, catalog: CatalogSettings, settings: StreamingSettings) -> None:
        """Expire snapshots older than `settings.snapshot_retention_s`, every third of that."""
        self.spark = spark
        self.catalog = catalog
        self.retention = timedelta(seconds=settings.snapshot_retention_s)
        self._due = time.monotonic() + settings.snapshot_retention_s / 3

    def maybe_run(self) -> None:
        """Expire if due; an error is logged, not raised (the next round tries again)."""
        if time.monotonic() < self._due:
            return
        self._due = time.monotonic() + self.retention.total_seconds() / 3
        older_than = datetime.now(UTC) - self.retention
        for table in TABLES:
            try:
                counts = expire_snapshots(self.spark, self.catalog, table, older_than, RETAIN_SNAPSHOTS)
                log.info("snapshots_expired", table=table, **counts)
            except Exception as exc:  # e.g. S3 down: the stream's own restart logic handles outages
                log.warning("snapshot_expiry_failed", table=table, error=error_summary(exc))


def run(
    settings: StreamingSettings,
    lake: LakeLocation,
    kafka: KafkaSettings,
    catalog: CatalogSettings,
    s3: S3Settings,
    paths: PathsSettings,
    run_seconds: float | None = None,
) -> int:
    """Run the ticks query (and the bars updates) until stopped; return the process exit code."""
    jars = [jar for jar in settings.jars.split(",") if jar] or [str(j) for j in cached_connector_jars(paths)]
    spark = build_spark_session(spark_conf(settings, s3, catalog, jars))
    spark.sparkContext.setLogLevel("WARN")
    store = StatusStore(lake)
    book = StatusBook(store, store.read())
    spark.streams.addListener(StatusListener(book))
    stop = StopFlag()
    stop.install()
    tables = IcebergBatchSink((TICKS, QUARANTINE), catalog.spark_identifier)
    identifiers = [catalog.spark_identifier(t.name) for t in (TICKS, QUARANTINE)]
    bars = (
        BarsUpdater(catalog.spark_identifier(TICKS.name), catalog.spark_identifier(BARS_1M.name))
        if settings.bars
        else None
    )
    sink = LakeSink(tables, book, settings)
    if bars is not None:  # a tick of a minute that already has its bar is late, whenever the job started
        try:
            sink.complete_until = bars.read_through(spark)
            sink.give_back(uncorrected_late_hours(spark, bars.ticks, bars.bars))
        except Exception as exc:  # the lake is unreachable: the first batches set it
            log.warning("bars_through_unknown", error=error_summary(exc))
    log.info(
        "starting",
        master=settings.master,
        catalog=catalog.uri,
        warehouse=catalog.warehouse,
        bars=settings.bars,
    )
    deadline = time.monotonic() + run_seconds if run_seconds else None
    upkeep: list[Upkeep] = [SnapshotExpiry(spark, catalog, settings)]
    if bars is not None:
        upkeep.append(BarsSchedule(spark, bars, sink, book, settings.bars_trigger_seconds))

    def start() -> StreamingQuery:
        spark.sparkContext.setLocalProperty(SCHEDULER_POOL, TICKS_POOL)  # the query thread inherits it
        try:
            tables.offsets = committed_offsets(spark, identifiers)
            starting = starting_offsets(settings, kafka, tables.offsets)
            return start_ticks_query(kafka_records(spark, settings, kafka, starting), settings, sink)
        finally:
            spark.sparkContext.setLocalProperty(SCHEDULER_POOL, UPKEEP_POOL)

    return supervise(spark, start, stop, deadline, settings, upkeep)


# --- command line ------------------------------------------------------------------------------------

_OVERRIDES = {
    "master": str,
    "trigger_seconds": float,
    "max_offsets_per_trigger": int,
    "starting_offsets": str,
    "checkpoint_dir": str,
    "watermark_delay": str,
    "bars_trigger_seconds": float,
    "shuffle_partitions": int,
    "driver_memory": str,
    "max_event_time_ahead_seconds": float,
    "topic": str,
    "max_restarts": int,
    "snapshot_retention_s": float,
}


def build_parser() -> argparse.ArgumentParser:
    """The CLI: every StreamingSettings field as an option, plus the status location and run time."""
    parser = argparse.ArgumentParser(
        prog="python -m streaming.job",
        description="Stream Kafka ticks into the lake's Iceberg tables (ticks, quarantine, 1-minute bars).",
        epilog="Options override TICKSTREAM_STREAMING_* variables; the catalog is TICKSTREAM_CATALOG_* "
        "(docs/lake.md).",
    )
    for name, kind in _OVERRIDES.items():
        field = StreamingSettings.model_fields[name]
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=field.description)
    parser.add_argument(
        "--no-bars", action="store_true", help="do not update the bars table (only ticks and quarantine)"
    )
    parser.add_argument(
        "--lake-root",
        help="where the status object goes: s3://bucket[/prefix] or a directory (default: the bucket)",
    )
    parser.add_argument("--run-seconds", type=float, help="stop gracefully after this many seconds")
    return parser


def parse_args(
    argv: Sequence[str] | None, s3: S3Settings
) -> tuple[StreamingSettings, LakeLocation, float | None]:
    """Validated settings, status location and run time; usage errors exit with code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {name: value for name in _OVERRIDES if (value := getattr(args, name)) is not None}
    if args.no_bars:
        overrides["bars"] = False
    try:
        settings = StreamingSettings(**overrides)
    except ValidationError as exc:
        parser.error(invalid_settings(exc))
    if args.run_seconds is not None and args.run_seconds <= 0:
        parser.error("--run-seconds must be > 0")
    lake = LakeLocation.of(args.lake_root, s3)
    return settings, lake, args.run_seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    s3 = S3Settings()
    settings, lake, run_seconds = parse_args(argv, s3)
    configure_logging()
    logging.getLogger("py4j").setLevel(logging.WARNING)  # one line per Python<->JVM call at INFO
    return run(settings, lake, KafkaSettings(), CatalogSettings(), s3, PathsSettings(), run_seconds)


if __name__ == "__main__":
    sys.exit(main())
