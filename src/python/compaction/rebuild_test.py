"""The rebuild's overwrite of an hour on a local test lake (atomic, and conditional on its snapshot), and its
command line."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from compaction import rebuild
from compaction.plan import HourPartition
from compaction.rebuild import overwrite_hour
from compaction.testdata import hour_start, synthetic_ticks
from testkit.lake import TestLake
from testkit.spark import register_lake
from tickstream.catalog import load_table
from tickstream.lake import TICKS

HOUR = HourPartition.of(TICKS, "2024-03-01", "09")


def test_overwrite_replaces_only_the_hour(spark: SparkSession, local_lake: TestLake) -> None:
    lake = register_lake(spark, local_lake)
    lake.append(TICKS, synthetic_ticks(hour_start("2024-03-01", "09"), 0, 100, 100))
    lake.append(TICKS, synthetic_ticks(hour_start("2024-03-01", "10"), 0, 40, 40))
    replacement = spark.createDataFrame(
        synthetic_ticks(hour_start("2024-03-01", "09"), 1000, 30, 3000).to_pandas()
    )
    snapshot = load_table(lake.catalog, lake.settings, TICKS).current_snapshot()
    assert snapshot is not None
    overwrite_hour(replacement, lake.settings.spark_identifier(TICKS.name), HOUR, snapshot.snapshot_id)
    rows = lake.read(TICKS)
    hours = sorted({t.hour for t in rows["event_time"].to_pylist()})
    assert rows.num_rows == 70 and hours == [9, 10]


def test_overwrite_fails_if_the_hour_changed_since_its_snapshot(
    spark: SparkSession, local_lake: TestLake
) -> None:
    lake = register_lake(spark, local_lake)
    start = hour_start("2024-03-01", "09")
    lake.append(TICKS, synthetic_ticks(start, 0, 100, 1000))
    snapshot = load_table(lake.catalog, lake.settings, TICKS).current_snapshot()
    assert snapshot is not None
    lake.append(TICKS, synthetic_ticks(start, 100, 5, 1000))  # committed while the rebuild computed its rows
    replacement = spark.createDataFrame(synthetic_ticks(start, 0, 100, 1000).to_pandas())
    with pytest.raises(Exception, match="ValidationException|conflicting"):
        overwrite_hour(replacement, lake.settings.spark_identifier(TICKS.name), HOUR, snapshot.snapshot_id)
    assert lake.read(TICKS).num_rows == 105  # nothing replaced


def test_cli_refuses_bad_ranges_and_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rebuild, "run", lambda *args: pytest.fail("a refused command line must not run"))
    for bad, message in (
        (["--from", "2024-03-01T09", "--to", "2024-03-01T09"], "error: --to must be after --from"),
        (
            ["--from", "2024-03-01T09", "--to", "2024-03-01T10", "--starting-offsets", "{"],
            "--starting-offsets",
        ),
        (["--from", "9 o'clock", "--to", "2024-03-01T10"], "error: --from: expected YYYY-MM-DDTHH"),
        (["--to", "2024-03-01T10"], "Missing option '--from'"),
    ):
        result = CliRunner().invoke(rebuild.app, bad)
        assert result.exit_code == 2 and message in result.output, (bad, result.output)
