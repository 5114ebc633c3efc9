"""The streaming job: `python -m streaming.job [options]` runs the ticks and bars queries until stopped.

Two queries in one Spark application, each with its own checkpoint, in a bronze-to-silver chain:

* `ticks`: Kafka -> parse/validate -> watermark -> dedup -> valid rows to stream/ticks, rejected rows to
  quarantine (raw value, reason, Kafka coordinates). The only Kafka consumer: every record is parsed and
  de-duplicated once.
* `bars_1m`: the partial bars the ticks query's writers compute from the ticks they write (one row per
  symbol and minute per task, stream/_bar_partials) -> watermark on the minute -> exact merge per
  (symbol, minute) (append mode) -> stream/bars_1m. It handles a few hundred rows per batch, so bars cost
  next to nothing and do not slow the ticks query.

Both write through `streaming.writers.write_batch` (idempotent object names per epoch and task), and run
in their own fair-scheduler pools, the ticks query first. Options override
the TICKSTREAM_STREAMING_* environment. SIGINT/SIGTERM to the driver (not its process group: the JVM
must outlive the request) stop the queries gracefully between batches. A failed query (Kafka or S3 down,
a broken batch) is restarted from its checkpoint with back-off (`supervise`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from pydantic import ValidationError
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from streaming.settings import StreamingSettings
from streaming.spark_session import build_spark_session, cached_connector_jars, spark_conf
from streaming.status import StatusBook, StatusListener, StatusStore
from streaming.transforms import (
    BAR_PARTIALS_SPARK_SCHEMA,
    bars_from_partials,
    dedup_within_watermark,
    from_kafka,
    parse_ticks,
    route_bars_batch,
    route_ticks_batch,
)
from streaming.writers import write_batch
from tickstream.lake import BAR_PARTIALS, BARS_1M, TICKS, LakeLocation, put_object
from tickstream.logs import configure_logging, get_logger
from tickstream.settings import KafkaSettings, S3Settings

QUERY_ID_PROPERTY = "sql.streaming.queryId"
"""Spark local property holding the running query's id inside foreachBatch."""

SOURCE_MARKER = "_source"
"""Empty object that makes the bar partials' prefix exist before the first partial (Spark requires it)."""

SUPERVISE_POLL_S = 0.5
"""How often the supervisor looks at the queries."""

log = get_logger("streaming.job")


# --- the two pipelines -------------------------------------------------------------------------------


def ticks_pipeline(records: DataFrame, settings: StreamingSettings) -> DataFrame:
    """Every Kafka record parsed and validated; valid ticks de-duplicated within the watermark."""
    return dedup_within_watermark(parse_ticks(from_kafka(records)), settings.watermark_delay)


def bars_pipeline(partials: DataFrame, settings: StreamingSettings) -> DataFrame:
    """1-minute bars merged from the partial bars the ticks query wrote (valid, de-duplicated ticks)."""
    return bars_from_partials(partials, settings.bars_watermark_delay)


def kafka_records(
    spark: SparkSession, settings: StreamingSettings, kafka: KafkaSettings, lake: LakeLocation
) -> DataFrame:
    """The Kafka source of the ticks query."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka.bootstrap_servers)
        .option("subscribe", settings.topic)
        .option("startingOffsets", settings.starting_offsets)
        .option("failOnDataLoss", str(settings.fail_on_data_loss).lower())
    )
    if settings.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
    return reader.load()


def lake_bar_partials(
    spark: SparkSession, settings: StreamingSettings, kafka: KafkaSettings, lake: LakeLocation
) -> DataFrame:
    """The partial bars the ticks query writes, as a Parquet file stream: the source of the bars query.

    Objects appear whole (one PUT, or a rename locally) and a replayed epoch rewrites the same name with
    the same rows, which the file source does not read twice. Read objects are deleted (`cleanSource`), so
    the listing stays short.
    """
    filesystem, base = lake.filesystem()
    marker = (
        f"{base}/{BAR_PARTIALS.prefix}/{SOURCE_MARKER}"  # the directory must exist; '_' files are skipped
    )
    if not filesystem.get_file_info(marker).is_file:
        put_object(filesystem, marker, b"")
    return (
        spark.readStream.schema(BAR_PARTIALS_SPARK_SCHEMA)
        .option("recursiveFileLookup", "true")  # date=/hour= directories, listed (not globbed)
        .option("pathGlobFilter", "part-*.parquet")
        .option("cleanSource", "delete")
        .parquet(lake.hadoop_url(BAR_PARTIALS.prefix))
    )


@dataclass(frozen=True)
class Query:
    """How one streaming query is built and where its batches go."""

    name: str
    source: Callable[[SparkSession, StreamingSettings, KafkaSettings, LakeLocation], DataFrame]
    pipeline: Callable[[DataFrame, StreamingSettings], DataFrame]
    route: Callable[[DataFrame], DataFrame]
    trigger_setting: str
    """The StreamingSettings field holding the query's trigger interval in seconds."""
    write_in_driver: bool = False
    """Write batches from the driver (`write_batch(in_driver=True)`): a few rows per batch."""

    def trigger_seconds(self, settings: StreamingSettings) -> float:
        """The query's micro-batch trigger interval."""
        return float(getattr(settings, self.trigger_setting))


QUERIES: dict[str, Query] = {
    TICKS.name: Query(TICKS.name, kafka_records, ticks_pipeline, route_ticks_batch, "trigger_seconds"),
    BARS_1M.name: Query(
        BARS_1M.name, lake_bar_partials, bars_pipeline, route_bars_batch, "bars_trigger_seconds", True
    ),
}


# --- wiring ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LakeSink:
    """The foreachBatch function: route a micro-batch to lake tables, write it, record the output."""

    route: Callable[[DataFrame], DataFrame]
    lake: LakeLocation
    book: StatusBook
    in_driver: bool = False

    def __call__(self, batch: DataFrame, epoch_id: int) -> None:
        """Write one micro-batch (idempotently: a replay overwrites the same objects)."""
        query_id = batch.sparkSession.sparkContext.getLocalProperty(QUERY_ID_PROPERTY)
        if not query_id:
            raise RuntimeError(f"Spark did not set {QUERY_ID_PROPERTY}; cannot name the batch's objects")
        output = write_batch(self.route(batch), self.lake, query_id, epoch_id, self.in_driver)
        self.book.record_output(query_id, output)


def start_query(
    source: DataFrame, query: Query, settings: StreamingSettings, sink: LakeSink
) -> StreamingQuery:
    """Start one query on its source, with its own checkpoint."""
    stream = query.pipeline(source, settings)
    return (
        stream.writeStream.queryName(query.name)
        .outputMode("append")
        .foreachBatch(sink)
        .option("checkpointLocation", settings.checkpoint_for(query.name))
        .trigger(processingTime=f"{round(query.trigger_seconds(settings) * 1000)} milliseconds")
        .start()
    )


class StopFlag:
    """Set by SIGINT/SIGTERM (or a deadline); the main loop then stops the queries gracefully."""

    def __init__(self) -> None:
        """Not set."""
        self.reason: str | None = None

    def install(self) -> None:
        """Turn SIGINT and SIGTERM into a graceful stop."""

        def handle(signum: int, frame: FrameType | None) -> None:
            self.reason = signal.Signals(signum).name

        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)


def error_summary(error: object) -> str | None:
    """The telling line of a query's exception: the last line of a Python traceback, else the first line."""
    lines = [line.strip() for line in str(error or "").splitlines() if line.strip()]
    if not lines:
        return None
    return lines[-1][:500] if "Traceback" in lines[0] else lines[0][:500]


def restart_delay_s(failures: int, first_s: float, max_s: float) -> float:
    """Back-off before restarting a query that failed `failures` times in a row: doubling, capped."""
    return float(min(max_s, first_s * 2 ** max(0, failures - 1)))


def supervise(
    spark: SparkSession,
    starters: dict[str, Callable[[], StreamingQuery]],
    stop: StopFlag,
    deadline: float | None,
    settings: StreamingSettings,
) -> int:
    """Run the queries until a stop is requested (exit code 0); restart a failed query from its checkpoint.

    A query fails when a source or the lake is unreachable (Kafka or S3 restarting, a network cut) or a
    batch breaks; it is restarted after a doubling back-off (`restart_delay_s`), so the job recovers on
    its own once the outage ends, and replays the failed batch idempotently. A query that fails
    `max_restarts` times in a row (if set) ends the job with exit code 1.
    """
    queries = {name: start() for name, start in starters.items()}
    failures = dict.fromkeys(starters, 0)
    next_start: dict[str, float] = {}
    code = 0
    while stop.reason is None:
        for name, query in queries.items():
            if query.isActive:
                if query.lastProgress is not None and query.lastProgress.get("numInputRows", 0) > 0:
                    failures[name] = 0  # it works again
                continue
            if name not in next_start:
                failures[name] += 1
                delay = restart_delay_s(
                    failures[name], settings.restart_delay_s, settings.restart_max_delay_s
                )
                error = query.exception()
                log.error(
                    "query_failed",
                    query=name,
                    error=error_summary(error),
                    consecutive_failures=failures[name],
                    restart_in_s=delay,
                )
                if settings.max_restarts is not None and failures[name] > settings.max_restarts:
                    stop.reason = f"query {name} failed {failures[name]} times in a row"
                    code = 1
                    break
                next_start[name] = time.monotonic() + delay
            elif time.monotonic() >= next_start[name]:
                del next_start[name]
                try:
                    queries[name] = starters[name]()
                    log.info("query_restarted", query=name)
                except Exception as exc:  # e.g. the checkpoint store is unreachable too: try again later
                    log.error("query_restart_failed", query=name, error=str(exc).splitlines()[0])
                    next_start[name] = time.monotonic() + settings.restart_max_delay_s
        if deadline is not None and time.monotonic() >= deadline:
            stop.reason = "run_seconds elapsed"
        time.sleep(SUPERVISE_POLL_S)
    for query in spark.streams.active:
        try:
            query.stop()
        except StreamingQueryException as exc:
            log.warning("query_stop_failed", error=str(exc).splitlines()[0])
    spark.stop()
    log.info("stopped", reason=stop.reason, exit_code=code)
    return code


def run(
    settings: StreamingSettings,
    names: Sequence[str],
    lake: LakeLocation,
    kafka: KafkaSettings,
    run_seconds: float | None = None,
) -> int:
    """Run the named queries until stopped; return the process exit code."""
    jars = [jar for jar in settings.jars.split(",") if jar] or [str(j) for j in cached_connector_jars()]
    s3 = lake.s3 or S3Settings()
    spark = build_spark_session(spark_conf(settings, s3, jars))
    spark.sparkContext.setLogLevel("WARN")
    store = StatusStore(lake)
    book = StatusBook(store, store.read())
    spark.streams.addListener(StatusListener(book))
    stop = StopFlag()
    stop.install()

    def starter(name: str) -> Callable[[], StreamingQuery]:
        query = QUERIES[name]
        sink = LakeSink(query.route, lake, book, query.write_in_driver)
        return lambda: start_query(query.source(spark, settings, kafka, lake), query, settings, sink)

    starters = {name: starter(name) for name in names}
    log.info("starting", queries=list(names), master=settings.master, lake=lake.root)
    deadline = time.monotonic() + run_seconds if run_seconds else None
    return supervise(spark, starters, stop, deadline, settings)


# --- command line ------------------------------------------------------------------------------------

_OVERRIDES = {
    "master": str,
    "trigger_seconds": float,
    "max_offsets_per_trigger": int,
    "starting_offsets": str,
    "checkpoint_dir": str,
    "watermark_delay": str,
    "bars_watermark_delay": str,
    "bars_trigger_seconds": float,
    "shuffle_partitions": int,
    "driver_memory": str,
    "state_store": str,
    "topic": str,
    "max_restarts": int,
}


def build_parser() -> argparse.ArgumentParser:
    """The CLI: every StreamingSettings field as an option, plus queries, lake root and run time."""
    parser = argparse.ArgumentParser(
        prog="python -m streaming.job",
        description="Stream Kafka ticks into the S3 lake (ticks, 1-minute bars, quarantine).",
        epilog="Options override TICKSTREAM_STREAMING_* variables; see docs/lake.md for the output layout.",
    )
    for name, kind in _OVERRIDES.items():
        field = StreamingSettings.model_fields[name]
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=field.description)
    parser.add_argument(
        "--queries",
        default=",".join(QUERIES),
        help=f"comma-separated queries to run, of {', '.join(QUERIES)} (default: all)",
    )
    parser.add_argument("--lake-root", help="s3://bucket[/prefix] or a local directory (default: the bucket)")
    parser.add_argument("--run-seconds", type=float, help="stop gracefully after this many seconds")
    return parser


def parse_args(argv: Sequence[str] | None) -> tuple[StreamingSettings, list[str], LakeLocation, float | None]:
    """Validated settings, query names, lake location and run time; usage errors exit with code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {name: value for name in _OVERRIDES if (value := getattr(args, name)) is not None}
    try:
        settings = StreamingSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        parser.error(f"invalid setting: {problems}")
    names = [name.strip() for name in args.queries.split(",") if name.strip()]
    unknown = sorted(set(names) - set(QUERIES))
    if unknown or not names:
        parser.error(f"--queries: unknown {unknown or 'empty list'}; choose from {', '.join(QUERIES)}")
    if args.run_seconds is not None and args.run_seconds <= 0:
        parser.error("--run-seconds must be > 0")
    s3 = S3Settings()
    lake = LakeLocation(args.lake_root, s3) if args.lake_root else LakeLocation.for_bucket(s3)
    return settings, names, lake, args.run_seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    settings, names, lake, run_seconds = parse_args(argv)
    configure_logging()
    logging.getLogger("py4j").setLevel(logging.WARNING)  # one line per Python<->JVM call at INFO
    return run(settings, names, lake, KafkaSettings(), run_seconds)


if __name__ == "__main__":
    sys.exit(main())
