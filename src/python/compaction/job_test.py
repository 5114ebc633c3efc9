"""Compaction with local Spark on a local lake directory: rows kept, idempotence, late data, aborts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession

from compaction import spark_io
from compaction.job import EXIT_REFUSED, Request, compact_hour, parse_args, run
from compaction.plan import HourPartition, VerificationError
from compaction.settings import CompactionSettings
from compaction.testdata import StreamWriter, write_status
from tickstream.lake import (
    BARS_1M,
    TICKS,
    LakeLocation,
    LakeObject,
    committed_hour,
    committed_objects,
    read_manifest,
    stream_objects,
)

DATE, HOUR = "2024-03-01", "09"
SETTINGS = CompactionSettings(grace_seconds=3600)


def read_rows(location: LakeLocation, table: str) -> pa.Table:
    keys = committed_objects(location, table, DATE, HOUR)
    rows = pa.concat_tables([pq.read_table(location.path(k)) for k in keys])
    spec = TICKS if table == TICKS.name else BARS_1M
    return rows.sort_by([(k, "ascending") for k in spec.sort_keys])


@pytest.fixture
def lake(tmp_path: Path) -> LakeLocation:
    location = LakeLocation(str(tmp_path / "lake"))
    write_status(location, datetime(2024, 3, 1, 11, tzinfo=UTC))
    return location


def test_compaction_keeps_rows_and_is_idempotent(spark: SparkSession, lake: LakeLocation) -> None:
    writer = StreamWriter(lake, DATE, HOUR)
    written = writer.ticks(batches=40, rows_per_batch=250)
    before = read_rows(lake, TICKS.name)
    assert before.num_rows == written.num_rows == 10_000

    report = compact_hour(lake, HourPartition.of(TICKS, DATE, HOUR), SETTINGS, lambda: spark)
    assert (report.action, report.files_before, report.files_after, report.rows) == ("compact", 40, 1, 10_000)
    manifest = read_manifest(lake, TICKS, DATE, HOUR)
    assert manifest is not None and len(manifest.replaced) == 40
    assert committed_objects(lake, TICKS, DATE, HOUR) == [o.key for o in manifest.objects]
    after = read_rows(lake, TICKS.name)
    assert after.equals(before)
    compacted = pq.read_table(lake.path(manifest.objects[0].key))
    assert compacted.equals(compacted.sort_by([(k, "ascending") for k in TICKS.sort_keys]))  # sorted by key
    assert (
        pq.ParquetFile(lake.path(manifest.objects[0].key)).metadata.row_group(0).column(0).compression
        == "ZSTD"
    )

    again = compact_hour(lake, HourPartition.of(TICKS, DATE, HOUR), SETTINGS, lambda: spark)
    assert again.action == "noop"
    assert read_manifest(lake, TICKS, DATE, HOUR) == manifest
    assert read_rows(lake, TICKS.name).equals(before)


def test_late_stream_objects_are_read_then_folded_in(spark: SparkSession, lake: LakeLocation) -> None:
    writer = StreamWriter(lake, DATE, HOUR)
    writer.ticks(batches=5, rows_per_batch=100)
    compact_hour(lake, HourPartition.of(TICKS, DATE, HOUR), SETTINGS, lambda: spark)
    first = read_manifest(lake, TICKS, DATE, HOUR)
    writer.ticks(batches=2, rows_per_batch=100)  # the hour was not really closed
    view = committed_hour(lake, TICKS, DATE, HOUR)
    assert len(view.stream) == 2 and view.manifest == first
    assert read_rows(lake, TICKS.name).num_rows == 700

    report = compact_hour(lake, HourPartition.of(TICKS, DATE, HOUR), SETTINGS, lambda: spark)
    second = read_manifest(lake, TICKS, DATE, HOUR)
    assert first is not None and second is not None
    assert (report.action, report.rows, report.files_before) == ("compact", 700, 3)
    assert second.run_id != first.run_id and len(second.replaced) == 7
    assert committed_hour(lake, TICKS, DATE, HOUR).stream == ()
    assert read_rows(lake, TICKS.name).num_rows == 700


def test_bars_are_compacted_with_timestamps_intact(spark: SparkSession, lake: LakeLocation) -> None:
    StreamWriter(lake, DATE, HOUR).bars(batches=12)
    before = read_rows(lake, BARS_1M.name)
    report = compact_hour(lake, HourPartition.of(BARS_1M, DATE, HOUR), SETTINGS, lambda: spark)
    assert (report.action, report.files_after, report.rows) == ("compact", 1, 120)
    after = read_rows(lake, BARS_1M.name)
    assert after.schema == before.schema and after.equals(before)


def test_several_right_sized_files(spark: SparkSession, lake: LakeLocation) -> None:
    StreamWriter(lake, DATE, HOUR).ticks(batches=8, rows_per_batch=20_000)
    input_bytes = sum(o.bytes for o in stream_objects(lake, TICKS, DATE, HOUR))
    settings = CompactionSettings(target_file_mb=1, grace_seconds=0)
    report = compact_hour(lake, HourPartition.of(TICKS, DATE, HOUR), settings, lambda: spark)
    assert report.files_after == -(-input_bytes // (1024 * 1024)) > 1
    keys = committed_objects(lake, TICKS, DATE, HOUR)
    firsts = [pq.read_table(lake.path(k), columns=["symbol"])["symbol"][0].as_py() for k in keys]
    assert firsts == sorted(firsts)  # range-partitioned: files follow the key order
    assert report.deleted == 8 and stream_objects(lake, TICKS, DATE, HOUR) == []  # grace 0: GC at once


def test_verification_failure_aborts_and_keeps_old_objects(spark: SparkSession, lake: LakeLocation) -> None:
    StreamWriter(lake, DATE, HOUR).ticks(batches=4, rows_per_batch=50)
    keys_before = committed_objects(lake, TICKS, DATE, HOUR)

    def lossy(frame: DataFrame, spec, location, output_dir, files, schema) -> list[LakeObject]:  # type: ignore[no-untyped-def]
        return spark_io.write_sorted(frame.limit(199), spec, location, output_dir, files, schema)

    from compaction import job

    partition = HourPartition.of(TICKS, DATE, HOUR)
    plan = job.plan_hour(partition, committed_hour(lake, TICKS, DATE, HOUR), SETTINGS.target_bytes)
    with pytest.raises(VerificationError, match="rows: before '200', after '199'"):
        job.compact(spark, lake, plan, write=lossy)
    assert read_manifest(lake, TICKS, DATE, HOUR) is None
    assert committed_objects(lake, TICKS, DATE, HOUR) == keys_before
    assert not Path(lake.path(plan.output_dir)).exists() or not any(
        Path(lake.path(plan.output_dir)).iterdir()
    )


def test_open_partition_is_refused(lake: LakeLocation) -> None:
    StreamWriter(lake, DATE, "10").ticks(batches=1, rows_per_batch=10)
    request = parse_args(["--table", "all", "--date", DATE, "--hour", "10", "--lake-root", lake.root])
    code, result = run(request)
    assert code == EXIT_REFUSED and result["status"] == "refused"
    assert "ticks/date=2024-03-01/hour=10 is still open" in result["error"]
    assert read_manifest(lake, TICKS, DATE, "10") is None


def test_cli_validates_ranges() -> None:
    request = parse_args(
        ["--table", "all", "--from", "2024-03-01T22", "--to", "2024-03-02T01", "--lake-root", "/x"]
    )
    assert isinstance(request, Request) and len(request.partitions) == 6
    for bad in (
        ["--table", "ticks"],
        ["--table", "ticks", "--date", DATE],
        ["--table", "x", "--date", DATE, "--hour", "1"],
    ):
        with pytest.raises(SystemExit) as exited:
            parse_args(bad)
        assert exited.value.code == 2
