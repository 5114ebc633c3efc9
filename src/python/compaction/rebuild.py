"""Rebuild closed hours of the lake from Kafka: `python -m compaction.rebuild --from T --to T`.

For when the lake lost or mangled data, or the parsing rules changed. A Spark batch job that reads the ticks
topic with Spark's Kafka connector (from `--starting-offsets`, default earliest, to the end), applies the
streaming job's own parsing, validation and de-duplication (`streaming.transforms`; of re-sent ticks the
first in Kafka order is kept, as the stream keeps it), keeps the ticks whose event time is in the hours, and
commits each hour of `ticks` and `bars_1m` the way compaction does: sorted objects under
`compacted/<table>/date=D/hour=H/<run id>/` and then one manifest PUT that replaces every object the hour
had. Readers switch atomically from the old content to the rebuilt one; a re-run with the same input
gives the same run id, objects and rows; garbage collection removes the replaced objects after the grace
period (`python -m compaction.job --gc`).

Differences from the live stream, by design: ticks the stream dropped as later than its watermark are
included (they are in Kafka), and the quarantine (partitioned by Kafka time) is not rebuilt. Only closed
hours are rebuilt (exit 3 otherwise), so the live job never writes into an hour being rebuilt.
Exit codes: 0 done, 1 failed, 2 usage, 3 refused (an hour is open).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from compaction.job import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    ConcurrentChangeError,
    check_closed,
    collect_garbage,
    finish,
    hour_arg,
    spark_session_factory,
)
from compaction.plan import HourPartition, partitions
from compaction.settings import CompactionSettings
from tickstream.lake import (
    BARS_1M,
    BARS_1M_ARROW_SCHEMA,
    TICKS,
    TICKS_ARROW_SCHEMA,
    LakeLocation,
    Manifest,
    compacted_dir,
    read_manifest,
    stream_objects,
    write_manifest,
)
from tickstream.logs import configure_logging, get_logger
from tickstream.settings import KafkaSettings, S3Settings
from tickstream.topology import TICKS_TOPIC

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = get_logger("compaction.rebuild")

TABLES = (TICKS.name, BARS_1M.name)
SCHEMAS = {TICKS.name: TICKS_ARROW_SCHEMA, BARS_1M.name: BARS_1M_ARROW_SCHEMA}
ROWS_PER_FILE = 4_000_000
"""Rows per rebuilt object (about 100 MB of ticks)."""


@dataclass(frozen=True)
class RebuildRequest:
    """A validated command line."""

    settings: CompactionSettings
    location: LakeLocation
    kafka: KafkaSettings
    topic: str
    starting_offsets: str
    start: datetime
    end: datetime


def lake_frames(spark: SparkSession, request: RebuildRequest) -> dict[str, DataFrame]:
    """Ticks and 1-minute bars of [start, end) from the topic, with the streaming job's rules."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from streaming.transforms import (
        BAR_COLUMNS,
        EVENT_TIME,
        TICK_COLUMNS,
        bars_1m,
        from_kafka,
        is_valid,
        parse_ticks,
        partition_columns,
    )

    records = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", request.kafka.bootstrap_servers)
        .option("subscribe", request.topic)
        .option("startingOffsets", request.starting_offsets)
        .option("endingOffsets", "latest")
        .load()
    )
    valid = parse_ticks(from_kafka(records)).where(is_valid())
    in_range = valid.where(
        (F.col(EVENT_TIME) >= F.lit(request.start)) & (F.col(EVENT_TIME) < F.lit(request.end))
    )
    first_send = Window.partitionBy("symbol", "seq", "ts_us").orderBy("kafka_partition", "kafka_offset")
    ticks = (
        in_range.withColumn("_send", F.row_number().over(first_send)).where(F.col("_send") == 1).drop("_send")
    )
    bars = bars_1m(ticks)
    return {
        TICKS.name: ticks.select(*partition_columns(F.col(EVENT_TIME)), *TICK_COLUMNS),
        BARS_1M.name: bars.select(*partition_columns(F.col("window_start")), *BAR_COLUMNS),
    }


def run_id_for(request: RebuildRequest, offsets: str, partition: HourPartition) -> str:
    """Deterministic run id of one rebuilt hour: same topic range and hour, same id (and object keys)."""
    digest = hashlib.sha256(f"{request.topic}|{offsets}|{partition}".encode()).hexdigest()
    return f"rebuild-{digest[:16]}"


def rebuild_hour(
    request: RebuildRequest, partition: HourPartition, rows: DataFrame, offsets: str
) -> dict[str, Any]:
    """Write one hour's rebuilt rows and commit them with a manifest replacing everything it had."""
    from compaction import spark_io

    spec, date, hour = partition.spec, partition.date, partition.hour
    location = request.location
    previous = read_manifest(location, spec, date, hour)
    replaced = {o.key for o in stream_objects(location, spec, date, hour)}
    replaced.update(previous.replaced if previous else ())
    frame = rows.where((rows["date"] == date) & (rows["hour"] == hour)).drop("date", "hour")
    before = spark_io.checksum(frame, spec)
    count = int(before["rows"])
    run_id = run_id_for(request, offsets, partition)
    output_dir = compacted_dir(spec, date, hour, run_id)
    written = (
        spark_io.write_sorted(
            frame, spec, location, output_dir, max(1, -(-count // ROWS_PER_FILE)), SCHEMAS[spec.name]
        )
        if count
        else []
    )
    if sum(o.rows or 0 for o in written) != count:
        raise RuntimeError(f"{partition}: wrote {sum(o.rows or 0 for o in written)} rows of {count}")
    current = read_manifest(location, spec, date, hour)
    if (current.run_id if current else None) != (previous.run_id if previous else None):
        raise ConcurrentChangeError(f"{partition}: the manifest changed while rebuilding; re-run")
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    write_manifest(
        location,
        Manifest(
            table=spec.name,
            date=date,
            hour=hour,
            run_id=run_id,
            created_at=stamp,
            objects=tuple(written),
            rows=count,
            checksum=before,
            replaced=tuple(sorted(replaced)),
        ),
    )
    grace = timedelta(seconds=request.settings.grace_seconds)
    deleted = collect_garbage(location, partition, grace, datetime.now(UTC))
    return {
        "partition": str(partition),
        "run_id": run_id,
        "rows": count,
        "files": len(written),
        "replaced_objects": len(replaced),
        "deleted": deleted,
    }


def run(request: RebuildRequest) -> tuple[int, dict[str, Any]]:
    """Refuse open hours; otherwise rebuild every hour of both tables; return exit code and report."""
    started = time.perf_counter()
    hours = partitions(list(TABLES), request.start, request.end)
    result: dict[str, Any] = {"lake": request.location.root, "topic": request.topic, "hours": []}
    checks = check_closed(request.location, request.settings, hours)
    open_hours = [c.reason for c in checks if not c.closed]
    if open_hours:
        result.update(status="refused", error="; ".join(open_hours))
        return EXIT_REFUSED, result
    spark = spark_session_factory(request.settings, request.location.s3 or S3Settings())
    code = EXIT_OK
    try:
        session = spark()
        frames = {name: frame.cache() for name, frame in lake_frames(session, request).items()}
        offsets = request.starting_offsets
        for partition in hours:
            try:
                report = rebuild_hour(request, partition, frames[partition.spec.name], offsets)
            except Exception as exc:
                log.exception("hour_rebuild_failed", partition=str(partition))
                result["hours"].append({"partition": str(partition), "error": repr(exc)})
                code = EXIT_FAILED
                break
            log.info("hour_rebuilt", **report)
            result["hours"].append(report)
    finally:
        for session in getattr(spark, "session", []):
            session.stop()
    result["status"] = "failed" if code else "ok"
    result["duration_s"] = round(time.perf_counter() - started, 3)
    return code, result


def parse_args(argv: Sequence[str] | None) -> RebuildRequest:
    """A validated request; usage errors exit with code 2."""
    parser = argparse.ArgumentParser(
        prog="python -m compaction.rebuild",
        description="Rebuild closed hours of the lake (ticks and 1-minute bars) from the Kafka topic.",
        epilog="Spark, lake and margins from TICKSTREAM_COMPACTION_*; Kafka from TICKSTREAM_KAFKA_*.",
    )
    parser.add_argument(
        "--from", dest="start", type=hour_arg, required=True, help="first hour (YYYY-MM-DDTHH)"
    )
    parser.add_argument("--to", dest="end", type=hour_arg, required=True, help="end hour, exclusive")
    parser.add_argument("--topic", default=TICKS_TOPIC.name, help="the ticks topic (default: ticks)")
    parser.add_argument(
        "--starting-offsets",
        default="earliest",
        help="where to start reading: earliest (default) or Spark's per-partition JSON offsets",
    )
    parser.add_argument("--lake-root", help="s3://bucket[/prefix] or a local directory (default: the bucket)")
    args = parser.parse_args(argv)
    if args.end <= args.start:
        parser.error("--to must be after --from")
    if args.starting_offsets != "earliest":
        try:
            json.loads(args.starting_offsets)
        except ValueError:
            parser.error('--starting-offsets: earliest or JSON such as \'{"ticks": {"0": 1200}}\'')
    settings = CompactionSettings()
    s3 = S3Settings()
    root = args.lake_root or settings.lake_root
    location = LakeLocation(root, s3) if root else LakeLocation.for_bucket(s3)
    return RebuildRequest(
        settings, location, KafkaSettings(), args.topic, args.starting_offsets, args.start, args.end
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; prints the JSON report and returns the exit code."""
    request = parse_args(argv)
    configure_logging()
    logging.getLogger("py4j").setLevel(logging.WARNING)
    return finish(*run(request))


if __name__ == "__main__":
    sys.exit(main())
