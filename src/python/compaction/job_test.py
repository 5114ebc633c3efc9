"""Compaction with local Spark on a local test lake: rows kept, sorted files, idempotence, late rows,
maintenance, refusal of open hours and the command line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from compaction import job
from compaction.job import EXIT_REFUSED, Request, build_request, run
from compaction.maintenance import compact_hour, maintain_table
from compaction.plan import HourPartition
from compaction.settings import CompactionSettings
from compaction.testdata import bars_of, fill_hour, hour_start, synthetic_ticks, write_status
from testkit.lake import TestLake
from testkit.spark import register_lake
from tickstream.catalog import load_table
from tickstream.lake import BARS_1M, TICKS, LakeLocation, LakeTable

DATE, HOUR = "2024-03-01", "09"
SETTINGS = CompactionSettings()


def sorted_rows(lake: TestLake, table: LakeTable) -> pa.Table:
    return lake.read(table).sort_by([(key, "ascending") for key in table.sort_keys])


@pytest.fixture
def lake(spark: SparkSession, local_lake: TestLake) -> TestLake:
    return register_lake(spark, local_lake)


def test_compaction_keeps_rows_sorted_and_is_idempotent(spark: SparkSession, lake: TestLake) -> None:
    written = fill_hour(lake, DATE, HOUR, batches=40, rows_per_batch=250)
    before = sorted_rows(lake, TICKS)
    assert before.num_rows == written.num_rows == 10_000 and lake.files(TICKS) == 40

    partition = HourPartition.of(TICKS, DATE, HOUR)
    report = compact_hour(spark, lake.settings, partition, SETTINGS)
    assert (report.action, report.files_before, report.files_after, report.rows) == ("compact", 40, 1, 10_000)
    assert sorted_rows(lake, TICKS).equals(before)
    (path,) = lake.read_files(TICKS)
    compacted = pq.read_table(path)
    assert compacted.equals(compacted.sort_by([(k, "ascending") for k in TICKS.sort_keys]))  # the sort order
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    replace = load_table(lake.catalog, lake.settings, TICKS).current_snapshot()
    assert (
        replace is not None and replace.summary is not None and replace.summary.operation.value == "replace"
    )

    again = compact_hour(spark, lake.settings, partition, SETTINGS)
    assert (again.action, again.files_before, again.files_after) == ("noop", 1, 1)
    assert load_table(lake.catalog, lake.settings, TICKS).current_snapshot() == replace  # no new commit
    assert sorted_rows(lake, TICKS).equals(before)


def test_rows_arriving_after_compaction_are_folded_in_next_time(spark: SparkSession, lake: TestLake) -> None:
    fill_hour(lake, DATE, HOUR, batches=5, rows_per_batch=100)
    partition = HourPartition.of(TICKS, DATE, HOUR)
    compact_hour(spark, lake.settings, partition, SETTINGS)
    late = synthetic_ticks(hour_start(DATE, HOUR), 500, 200, 700)
    lake.append(TICKS, late.slice(0, 100))
    lake.append(TICKS, late.slice(100))
    assert lake.read(TICKS).num_rows == 700 and lake.files(TICKS) == 3

    report = compact_hour(spark, lake.settings, partition, SETTINGS)
    assert (report.action, report.files_before, report.files_after, report.rows) == ("compact", 3, 1, 700)
    assert lake.read(TICKS).num_rows == 700


def test_bars_are_compacted_with_timestamps_intact(spark: SparkSession, lake: TestLake) -> None:
    fill_hour(lake, DATE, HOUR, batches=12, rows_per_batch=10)
    before = sorted_rows(lake, BARS_1M)
    report = compact_hour(spark, lake.settings, HourPartition.of(BARS_1M, DATE, HOUR), SETTINGS)
    assert (report.action, report.files_before, report.files_after, report.rows) == ("compact", 12, 1, 120)
    after = sorted_rows(lake, BARS_1M)
    assert after.schema == before.schema and after.equals(before)


def test_bars_of_an_hour_that_got_late_ticks_are_recomputed(spark: SparkSession, lake: TestLake) -> None:
    ticks = fill_hour(lake, DATE, HOUR, batches=6, rows_per_batch=100)
    bars = HourPartition.of(BARS_1M, DATE, HOUR)
    assert not compact_hour(spark, lake.settings, bars, SETTINGS).bars_corrected  # they match the ticks
    late = synthetic_ticks(hour_start(DATE, HOUR), 600, 50, 600, seed=9)  # after the bars were written
    lake.append(TICKS, late)
    report = compact_hour(spark, lake.settings, bars, SETTINGS)
    assert report.bars_corrected and report.files_after == 1
    assert sorted_rows(lake, BARS_1M).equals(sorted_rows_of(bars_of(pa.concat_tables([ticks, late]))))
    assert not compact_hour(spark, lake.settings, bars, SETTINGS).bars_corrected  # idempotent


def sorted_rows_of(rows: pa.Table) -> pa.Table:
    return rows.sort_by([(key, "ascending") for key in BARS_1M.sort_keys])


def test_only_the_hour_is_rewritten(spark: SparkSession, lake: TestLake) -> None:
    fill_hour(lake, DATE, "09", batches=4, rows_per_batch=50)
    fill_hour(lake, DATE, "10", batches=3, rows_per_batch=50)
    compact_hour(spark, lake.settings, HourPartition.of(TICKS, DATE, "09"), SETTINGS)
    assert lake.files(TICKS) == 1 + 3


def test_several_right_sized_files(spark: SparkSession, lake: TestLake) -> None:
    fill_hour(lake, DATE, HOUR, batches=24, rows_per_batch=10_000)
    settings = CompactionSettings(target_file_mb=1)
    report = compact_hour(spark, lake.settings, HourPartition.of(TICKS, DATE, HOUR), settings)
    print(report)
    assert report.action == "compact" and 1 < report.files_after < report.files_before == 24
    assert report.bytes_before / report.files_before < 0.75 * 1024 * 1024  # small: rewritten
    assert report.bytes_after / report.files_after < 1.5 * 1024 * 1024
    assert lake.read(TICKS).num_rows == 240_000


def test_maintenance_expires_snapshots_and_deletes_orphans(spark: SparkSession, lake: TestLake) -> None:
    fill_hour(lake, DATE, HOUR, batches=6, rows_per_batch=100)
    compact_hour(spark, lake.settings, HourPartition.of(TICKS, DATE, HOUR), SETTINGS)
    table = load_table(lake.catalog, lake.settings, TICKS)
    orphan = f"{table.location()}/data/orphan-from-a-crashed-commit.parquet".removeprefix("file://")
    pq.write_table(synthetic_ticks(hour_start(DATE, HOUR), 0, 5, 5), orphan)
    assert len(table.snapshots()) == 7

    settings = CompactionSettings(snapshot_retention_minutes=0, retain_snapshots=1, orphan_age_hours=0)
    result = maintain_table(spark, lake.settings, TICKS.name, settings, datetime.now(UTC))
    assert result["expired"]["deleted_data_files_count"] == 6  # the small files the compaction replaced
    assert result["orphan_files_deleted"] >= 1
    assert len(load_table(lake.catalog, lake.settings, TICKS).snapshots()) == 2  # kept + rewrite_manifests
    assert lake.read(TICKS).num_rows == 600
    assert not pafs.LocalFileSystem().get_file_info(orphan).is_file


def test_open_partition_is_refused(lake: TestLake, tmp_path: Path) -> None:
    status = LakeLocation(str(tmp_path / "status"))
    write_status(status, datetime(2024, 3, 1, 10, 5, tzinfo=UTC))  # 09h closed, 10h open
    request = build_request("all", DATE, "10", lake_root=status.root)
    request = Request(
        request.settings, lake.settings, lake.s3, request.paths, status, request.partitions, request.mode
    )
    code, result = run(request, spark=lambda: pytest.fail("a refused run must not start Spark"))
    assert code == EXIT_REFUSED and result["status"] == "refused"
    assert "ticks/2024-03-01T10 is still open" in result["error"]


def test_a_range_at_once_corrects_bars_and_rewrites_hours_of_several_files(
    spark: SparkSession, lake: TestLake, tmp_path: Path
) -> None:
    fill_hour(lake, DATE, "07", batches=1, rows_per_batch=50)  # one file per table: clean
    fill_hour(lake, DATE, "08", batches=3, rows_per_batch=50)  # several files: dirty
    status = LakeLocation(str(tmp_path / "status"))
    write_status(status, datetime(2024, 3, 1, 12, tzinfo=UTC))
    parsed = build_request(
        "all", start=f"{DATE}T00", end=f"{DATE}T10", lake_root=status.root, maintain=False, only_dirty=True
    )
    request = Request(
        parsed.settings,
        lake.settings,
        lake.s3,
        parsed.paths,
        status,
        parsed.partitions,
        parsed.mode,
        False,
        parsed.only_dirty,
    )
    late = synthetic_ticks(hour_start(DATE, "07"), 50, 5, 50, seed=3)  # hour 07 gets ticks after its bars
    lake.append(TICKS, late)
    code, result = run(request, spark=lambda: spark)
    span = result["span"]
    assert code == 0 and span["bars_hours_corrected"] == 1  # hour 07
    assert span["ticks"]["rewritten_data_files_count"] == 3 + 2  # hours 08 (3 files) and 07 (2 files)
    assert span["bars_1m"]["rewritten_data_files_count"] >= 3  # hour 08, and 07 if replaced by several
    assert lake.files(TICKS) == 2 and lake.files(BARS_1M) == 2


def test_cli_validates_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    request = build_request("all", start="2024-03-01T22", end="2024-03-02T01", lake_root="/x")
    assert isinstance(request, Request) and len(request.partitions) == 6
    monkeypatch.setattr(job, "run", lambda *args: pytest.fail("a refused command line must not run"))
    for bad, message in (
        (["--table", "ticks"], "error: give either --date D --hour H or --from T --to T"),
        (["--table", "ticks", "--date", DATE], "error: --date and --hour go together"),
        (["--table", "x", "--date", DATE, "--hour", "1"], "error: --table: choose from ticks, bars_1m, all"),
        (
            ["--table", "ticks", "--from", "2024-03-01T09", "--to", "2024-03-01T09"],
            "error: --to must be after",
        ),
        (["--table", "ticks", "--from", "yesterday", "--to", "2024-03-01T09"], "error: --from: expected"),
        (["--table", "all", "--date", DATE, "--hour", "1", "--target-file-mb", "0"], "target_file_mb"),
        (["--date", DATE, "--hour", "1"], "Missing option '--table'"),
    ):
        result = CliRunner().invoke(job.app, bad)
        assert result.exit_code == 2 and message in result.output, (bad, result.output)
    assert CliRunner().invoke(job.app, ["--help"]).exit_code == 0
