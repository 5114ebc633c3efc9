"""Rebuild closed hours of the lake from Kafka: `python -m compaction.rebuild --from T --to T [--force]`.

For when the lake lost or mangled data, or the parsing rules changed. A Spark batch job that reads the ticks
topic with Spark's Kafka connector over exact offsets (from `--starting-offsets`, default the earliest
retained, to the end offsets read when it starts), applies the streaming job's own parsing, validation and
de-duplication (`streaming.transforms`; of re-sent ticks the first in Kafka order is kept, as the stream
keeps it), keeps the ticks whose event time is in the hours, computes their 1-minute bars with the
streaming job's bar function, and replaces each hour of `ticks` and `bars_1m`:

* one Iceberg overwrite per table and hour (delete the hour's files, add the rebuilt ones), atomic for
  every reader, and conditional on the snapshot the rebuild started from: if anything was committed to
  that hour in the meantime, the commit fails and nothing changes (re-run it);
* the records read must be exactly the offsets' span, or the topic lost records under the rebuild
  (retention) and it fails;
* an hour is never shrunk unless `--force`: a rebuild that would hold fewer rows than the hour has now
  (the topic no longer has them all, say) is refused with the counts.

Differences from the live stream, by design: ticks the stream dropped as later than its watermark are
included (they are in Kafka), and the quarantine is not rebuilt. Only closed hours are rebuilt (exit 3
otherwise), so the live job does not write into an hour being rebuilt.
Exit codes: 0 done, 1 failed, 2 usage, 3 refused (an hour is open, or would shrink without --force).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from compaction.job import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    SparkOnDemand,
    check_closed,
    finish,
    hour_arg,
)
from compaction.maintenance import hour_files
from compaction.plan import HourPartition, partitions
from compaction.settings import CompactionSettings
from tickstream.commands import command_app, load_settings, usage_error
from tickstream.kafka import topic_offsets
from tickstream.lake import BARS_1M, TICKS, LakeLocation
from tickstream.logs import configure_logging, get_logger
from tickstream.settings import CatalogSettings, KafkaSettings, PathsSettings, S3Settings
from tickstream.topology import TICKS_TOPIC

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = get_logger("compaction.rebuild")

TABLES = (TICKS.name, BARS_1M.name)


class ShrinkRefused(RuntimeError):
    """A rebuilt hour would hold fewer rows than it holds now, and --force was not given."""


@dataclass(frozen=True)
class RebuildRequest:
    """A validated command line."""

    settings: CompactionSettings
    catalog: CatalogSettings
    s3: S3Settings
    paths: PathsSettings
    status_location: LakeLocation
    kafka: KafkaSettings
    topic: str
    starting_offsets: str
    start: datetime
    end: datetime
    force: bool = False


def offset_ranges(kafka: KafkaSettings, topic: str, starting: str) -> dict[int, tuple[int, int]]:
    """partition -> [start, end) offsets to read: from `starting` (earliest or Spark JSON) to the end now."""
    given = json.loads(starting).get(topic, {}) if starting != "earliest" else {}
    ranges = {}
    for partition, (low, high) in topic_offsets(
        kafka.bootstrap_servers, topic, config=kafka.client_security()
    ).items():
        first = int(given.get(str(partition), -2))
        ranges[partition] = (low if first < 0 else max(first, low), high)
    return ranges


def spark_offsets(topic: str, ranges: dict[int, tuple[int, int]], end: bool) -> str:
    """Spark's JSON form of the start (or end) offsets of `ranges`."""
    return json.dumps({topic: {str(p): (r[1] if end else r[0]) for p, r in ranges.items()}})


def lake_frames(
    spark: SparkSession, request: RebuildRequest, ranges: dict[int, tuple[int, int]]
) -> dict[str, DataFrame]:
    """Ticks and 1-minute bars of [start, end) from the offset ranges, with the streaming job's rules."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from streaming.transforms import EVENT_TIME, bars_1m, from_kafka, is_valid, parse_ticks

    records = (
        spark.read.format("kafka")
        .options(**request.kafka.spark_options())
        .option("subscribe", request.topic)
        .option("startingOffsets", spark_offsets(request.topic, ranges, end=False))
        .option("endingOffsets", spark_offsets(request.topic, ranges, end=True))
        .option("failOnDataLoss", "true")
        .load()
    )
    parsed = parse_ticks(from_kafka(records)).cache()
    expected = sum(high - low for low, high in ranges.values())
    read = parsed.count()
    if read != expected:
        raise RuntimeError(
            f"read {read} records from {request.topic} where the offsets span {expected}: the topic changed "
            "under the rebuild (retention?); re-run"
        )
    in_range = parsed.where(is_valid()).where(
        (F.col(EVENT_TIME) >= F.lit(request.start)) & (F.col(EVENT_TIME) < F.lit(request.end))
    )
    first_send = Window.partitionBy("symbol", "seq", "ts_us").orderBy("kafka_partition", "kafka_offset")
    ticks = in_range.withColumn("_send", F.row_number().over(first_send)).where(F.col("_send") == 1)
    ticks = ticks.select(*TICKS.columns).cache()
    return {TICKS.name: ticks, BARS_1M.name: bars_1m(ticks).select(*BARS_1M.columns).cache()}


def overwrite_hour(
    rows: DataFrame, identifier: str, partition: HourPartition, snapshot_id: int | None
) -> None:
    """Replace the hour's rows of a table with `rows` in one commit, which fails if anything was committed
    to the hour after `snapshot_id` (Iceberg's serializable validation; None: the table was empty)."""
    from pyspark.sql import functions as F

    column = F.col(partition.table.partition_column)
    writer = rows.writeTo(identifier).option("isolation-level", "serializable")
    if snapshot_id is not None:
        writer = writer.option("validate-from-snapshot-id", str(snapshot_id))
    writer.overwrite((column >= F.lit(partition.start)) & (column < F.lit(partition.end)))


def rebuild_hour(
    spark: SparkSession, request: RebuildRequest, partition: HourPartition, rows: DataFrame
) -> dict[str, Any]:
    """Replace one hour of one table with `rows`' rows of that hour, conditional on the current snapshot."""
    from pyspark.sql import functions as F

    from tickstream.spark_iceberg import java_table

    table = partition.table
    identifier = request.catalog.spark_identifier(table.name)
    snapshot = java_table(spark, identifier).currentSnapshot()
    before = hour_files(spark, request.catalog, partition)
    column = F.col(table.partition_column)
    in_hour = (column >= F.lit(partition.start)) & (column < F.lit(partition.end))
    frame = rows.where(in_hour)
    count = frame.count()
    if count < before.rows and not request.force:
        raise ShrinkRefused(
            f"{partition}: the rebuild has {count} rows where the lake holds {before.rows}; refusing to "
            "shrink "
            "the hour (the topic may no longer hold all of it); re-run with --force to replace it anyway"
        )
    overwrite_hour(frame, identifier, partition, None if snapshot is None else int(snapshot.snapshotId()))
    after = hour_files(spark, request.catalog, partition)
    if after.rows != count:
        raise RuntimeError(f"{partition}: wrote {count} rows, the table now holds {after.rows} in the hour")
    return {"partition": str(partition), "rows_before": before.rows, "rows": count, "files": after.files}


def run(request: RebuildRequest) -> tuple[int, dict[str, Any]]:
    """Refuse open hours; otherwise rebuild every hour of both tables; return exit code and report."""
    started = time.perf_counter()
    hours = partitions(list(TABLES), request.start, request.end)
    result: dict[str, Any] = {"topic": request.topic, "hours": []}
    checks = check_closed(request.status_location, request.settings, hours)
    open_hours = [c.reason for c in checks if not c.closed]
    if open_hours:
        result.update(status="refused", error="; ".join(open_hours))
        return EXIT_REFUSED, result
    spark = SparkOnDemand(
        request.settings, request.s3, request.catalog, request.paths, app_name="tickstream-rebuild"
    )
    code = EXIT_OK
    try:
        session = spark()
        ranges = offset_ranges(request.kafka, request.topic, request.starting_offsets)
        result["offsets"] = {str(p): list(r) for p, r in ranges.items()}
        frames = lake_frames(session, request, ranges)
        for partition in hours:
            try:
                report = rebuild_hour(session, request, partition, frames[partition.table.name])
            except ShrinkRefused as exc:
                result.update(status="refused", error=str(exc))
                log.error("hour_rebuild_refused", partition=str(partition), error=str(exc))
                return EXIT_REFUSED, result
            except Exception as exc:
                log.exception("hour_rebuild_failed", partition=str(partition))
                result["hours"].append({"partition": str(partition), "error": repr(exc)[:500]})
                code = EXIT_FAILED
                break
            log.info("hour_rebuilt", **report)
            result["hours"].append(report)
    except Exception as exc:
        log.exception("rebuild_failed")
        result["error"] = repr(exc)[:500]
        code = EXIT_FAILED
    finally:
        spark.stop()
    result["status"] = "failed" if code else "ok"
    result["duration_s"] = round(time.perf_counter() - started, 3)
    return code, result


def build_request(
    start: str,
    end: str,
    topic: str = TICKS_TOPIC.name,
    starting_offsets: str = "earliest",
    force: bool = False,
    lake_root: str | None = None,
) -> RebuildRequest:
    """The validated request of a command line; a usage error (exit 2, one line) otherwise."""
    first, last = hour_arg(start, "--from"), hour_arg(end, "--to")
    if last <= first:
        raise usage_error("--to must be after --from")
    if starting_offsets != "earliest":
        try:
            parsed = json.loads(starting_offsets)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise usage_error('--starting-offsets: earliest or JSON such as \'{"ticks": {"0": 1200}}\'')
    settings = load_settings(CompactionSettings)
    s3 = S3Settings()
    return RebuildRequest(
        settings,
        CatalogSettings(),
        s3,
        PathsSettings(),
        LakeLocation.of(lake_root or settings.lake_root, s3),
        KafkaSettings(),
        topic,
        starting_offsets,
        first,
        last,
        force,
    )


app = command_app(
    "Rebuild closed hours of the lake (ticks and 1-minute bars) from the Kafka topic. Prints a JSON report. "
    "Spark and margins: TICKSTREAM_COMPACTION_*; catalog: TICKSTREAM_CATALOG_*; Kafka: TICKSTREAM_KAFKA_*."
)


@app.command()
def rebuild(
    start: Annotated[str, typer.Option("--from", help="First hour (YYYY-MM-DDTHH).")],
    end: Annotated[str, typer.Option("--to", help="End hour, exclusive (YYYY-MM-DDTHH).")],
    topic: Annotated[str, typer.Option(help="The ticks topic.")] = TICKS_TOPIC.name,
    starting_offsets: Annotated[
        str, typer.Option(help="Where to start reading: earliest or Spark's per-partition JSON offsets.")
    ] = "earliest",
    force: Annotated[
        bool, typer.Option("--force", help="Replace an hour even if it would hold fewer rows.")
    ] = False,
    lake_root: Annotated[
        str | None, typer.Option(help="Where the streaming status is: s3://bucket[/prefix] or a directory.")
    ] = None,
) -> None:
    """Rebuild every hour of [--from, --to) of both tables, one atomic overwrite per table and hour."""
    request = build_request(start, end, topic, starting_offsets, force, lake_root)
    configure_logging()
    logging.getLogger("py4j").setLevel(logging.WARNING)
    raise typer.Exit(finish(*run(request)))


def main() -> None:
    """Entry point (the PEX's and `python -m compaction.rebuild`)."""
    app()


if __name__ == "__main__":
    main()
