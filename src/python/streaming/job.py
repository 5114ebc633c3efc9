"""The streaming job: `python -m streaming.job [options]` streams Kafka ticks into the lake until stopped.

One Structured Streaming query, `ticks`, the only Kafka consumer and stateless: every record is parsed and
validated by the contract, and each micro-batch is committed from `foreachBatch` to the lake's Iceberg
tables exactly once (`streaming.writers.IcebergBatchSink`): valid ticks, however late, to `ticks` less the
proven duplicates (de-duplicated against the table), rejected records to `quarantine` (raw value, reason,
Kafka coordinates). Beside the query, once a minute, the 1-minute bars of the minutes now complete are
computed from the committed ticks and appended to `bars_1m`, and the hours that received late ticks get
their bars recomputed (`streaming.writers.BarsUpdater`, run by `streaming.upkeep.BarsSchedule`). A new
checkpoint starts after the Kafka offsets the lake already holds, so losing the checkpoint duplicates
nothing.

Options override the TICKSTREAM_STREAMING_* environment; the catalog comes from TICKSTREAM_CATALOG_*.
SIGINT/SIGTERM to the driver (not its process group: the JVM must outlive the request) stop the query
gracefully between batches. A failed query (Kafka or S3 down, a broken batch) is restarted from its
checkpoint with back-off (`streaming.supervisor`); the supervisor's loop also runs the upkeep
(`streaming.upkeep`: bars updates, expiry of old snapshots) in a lower-priority scheduler pool than the
query.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Annotated

import typer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from streaming.settings import StreamingSettings
from streaming.sink import LakeSink
from streaming.spark_session import spark_conf
from streaming.status import StatusBook, StatusListener, StatusStore
from streaming.supervisor import StopFlag, Upkeep, error_summary, supervise
from streaming.transforms import from_kafka, parse_ticks
from streaming.upkeep import BarsSchedule, SnapshotExpiry
from streaming.writers import BarsUpdater, IcebergBatchSink, committed_offsets, uncorrected_late_hours
from tickstream.commands import command_app, load_settings, usage_error
from tickstream.kafka import topic_offsets
from tickstream.lake import BARS_1M, QUARANTINE, TICKS, LakeLocation
from tickstream.logs import configure_logging, get_logger
from tickstream.settings import CatalogSettings, KafkaSettings, PathsSettings, S3Settings
from tickstream.spark import build_spark_session, cached_connector_jars

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
    partitions = topic_offsets(kafka.bootstrap_servers, settings.topic, config=kafka.client_security())
    default = {"earliest": -2, "latest": -1}.get(settings.starting_offsets, -2)
    offsets = {str(p): committed.get(p, default) for p in partitions}
    return json.dumps({settings.topic: offsets})


def kafka_source_options(settings: StreamingSettings, kafka: KafkaSettings, starting: str) -> dict[str, str]:
    """The options of Spark's Kafka source for the ticks query (`starting`: where a new checkpoint starts).

    The trigger adapts to the input rate (Spark's own minOffsetsPerTrigger and maxTriggerDelay): a batch
    waits until it has `min_offsets_per_trigger` records or `max_trigger_delay_s` has passed, so a slow feed
    costs fewer, larger batches (each has a fixed cost) and a fast one still gets a batch every trigger.
    The minimum is capped at `max_offsets_per_trigger` (Spark refuses a minimum above the maximum).
    """
    options = {
        **kafka.spark_options(),
        "subscribe": settings.topic,
        "startingOffsets": starting,
        "failOnDataLoss": str(settings.fail_on_data_loss).lower(),
        "minOffsetsPerTrigger": str(
            min(settings.min_offsets_per_trigger, settings.max_offsets_per_trigger or sys.maxsize)
        ),
        "maxTriggerDelay": f"{round(settings.max_trigger_delay_s * 1000)}ms",
    }
    if settings.max_offsets_per_trigger:
        options["maxOffsetsPerTrigger"] = str(settings.max_offsets_per_trigger)
    return options


def kafka_records(
    spark: SparkSession, settings: StreamingSettings, kafka: KafkaSettings, starting: str
) -> DataFrame:
    """The Kafka source of the ticks query (`starting`: where a new checkpoint starts)."""
    return spark.readStream.format("kafka").options(**kafka_source_options(settings, kafka, starting)).load()


# --- wiring ------------------------------------------------------------------------------------------


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

app = command_app(
    "Stream Kafka ticks into the lake's Iceberg tables (ticks, quarantine, 1-minute bars). Options override "
    "TICKSTREAM_STREAMING_* variables; the catalog is TICKSTREAM_CATALOG_* (docs/lake.md)."
)


def _described(name: str) -> str:
    """The help of an option: its setting's description."""
    return StreamingSettings.model_fields[name].description or ""


@app.command()
def stream(
    master: Annotated[str | None, typer.Option(help=_described("master"))] = None,
    trigger_seconds: Annotated[float | None, typer.Option(help=_described("trigger_seconds"))] = None,
    max_offsets_per_trigger: Annotated[
        int | None, typer.Option(help=_described("max_offsets_per_trigger"))
    ] = None,
    min_offsets_per_trigger: Annotated[
        int | None, typer.Option(help=_described("min_offsets_per_trigger"))
    ] = None,
    max_trigger_delay_s: Annotated[float | None, typer.Option(help=_described("max_trigger_delay_s"))] = None,
    starting_offsets: Annotated[str | None, typer.Option(help=_described("starting_offsets"))] = None,
    checkpoint_dir: Annotated[str | None, typer.Option(help=_described("checkpoint_dir"))] = None,
    watermark_delay: Annotated[str | None, typer.Option(help=_described("watermark_delay"))] = None,
    bars_trigger_seconds: Annotated[
        float | None, typer.Option(help=_described("bars_trigger_seconds"))
    ] = None,
    shuffle_partitions: Annotated[int | None, typer.Option(help=_described("shuffle_partitions"))] = None,
    driver_memory: Annotated[str | None, typer.Option(help=_described("driver_memory"))] = None,
    max_event_time_ahead_seconds: Annotated[
        float | None, typer.Option(help=_described("max_event_time_ahead_seconds"))
    ] = None,
    topic: Annotated[str | None, typer.Option(help=_described("topic"))] = None,
    max_restarts: Annotated[int | None, typer.Option(help=_described("max_restarts"))] = None,
    snapshot_retention_s: Annotated[
        float | None, typer.Option(help=_described("snapshot_retention_s"))
    ] = None,
    no_bars: Annotated[
        bool, typer.Option("--no-bars", help="Do not update the bars table (only ticks and quarantine).")
    ] = False,
    lake_root: Annotated[
        str | None,
        typer.Option(
            help="Where the status object goes: s3://bucket[/prefix] or a directory (default: the bucket)."
        ),
    ] = None,
    run_seconds: Annotated[
        float | None, typer.Option(help="Stop gracefully after this many seconds.")
    ] = None,
) -> None:
    """Stream until stopped (SIGINT/SIGTERM, or --run-seconds); exit 1 if the query keeps failing."""
    settings = load_settings(
        StreamingSettings,
        master=master,
        trigger_seconds=trigger_seconds,
        max_offsets_per_trigger=max_offsets_per_trigger,
        min_offsets_per_trigger=min_offsets_per_trigger,
        max_trigger_delay_s=max_trigger_delay_s,
        starting_offsets=starting_offsets,
        checkpoint_dir=checkpoint_dir,
        watermark_delay=watermark_delay,
        bars_trigger_seconds=bars_trigger_seconds,
        shuffle_partitions=shuffle_partitions,
        driver_memory=driver_memory,
        max_event_time_ahead_seconds=max_event_time_ahead_seconds,
        topic=topic,
        max_restarts=max_restarts,
        snapshot_retention_s=snapshot_retention_s,
        bars=False if no_bars else None,
    )
    if run_seconds is not None and run_seconds <= 0:
        raise usage_error("--run-seconds must be > 0")
    s3 = S3Settings()
    configure_logging()
    logging.getLogger("py4j").setLevel(logging.WARNING)  # one line per Python<->JVM call at INFO
    code = run(
        settings,
        LakeLocation.of(lake_root or settings.lake_root, s3),
        KafkaSettings(),
        CatalogSettings(),
        s3,
        PathsSettings(),
        run_seconds,
    )
    raise typer.Exit(code)


def main() -> None:
    """Entry point (the PEX's and `python -m streaming.job`)."""
    app()


if __name__ == "__main__":
    main()
