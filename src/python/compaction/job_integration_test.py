"""Compaction against real S3 (SeaweedFS) and Spark, run as `python -m compaction.job` subprocesses.

An hour of many small stream objects (named like the streaming job's) is compacted; DuckDB reads the hour
through the reader rule before, during and after, and must always see the same rows. Covers idempotence,
a SIGKILL between writing the new objects and publishing the manifest, refusal of an open hour, and the
grace-period garbage collection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from compaction.testdata import StreamWriter, duckdb_connection, ticks_summary, write_status
from tickstream.lake import (
    BARS_1M,
    TICKS,
    LakeLocation,
    committed_hour,
    committed_objects,
    compacted_hour_dir,
    list_objects,
    read_manifest,
    stream_objects,
)
from tickstream.settings import S3Settings

pytestmark = pytest.mark.integration

SRC = Path(__file__).resolve().parents[1]
DATE, HOUR = "2024-03-01", "09"
JOB_TIMEOUT_S = 600


class Compaction:
    """Runs the job as a subprocess against one lake prefix."""

    def __init__(self, s3: S3Settings, jars: list[Path], root: str) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "PYTHONPATH": str(SRC),
            "PYSPARK_PYTHON": sys.executable,
            "TICKSTREAM_S3_ENDPOINT_URL": s3.endpoint_url,
            "TICKSTREAM_S3_ACCESS_KEY_ID": s3.access_key_id,
            "TICKSTREAM_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
            "TICKSTREAM_S3_BUCKET": s3.bucket,
            "TICKSTREAM_COMPACTION_JARS": ",".join(str(jar) for jar in jars),
            "TICKSTREAM_COMPACTION_LAKE_ROOT": root,
        }

    def __call__(self, *args: str, **env: str) -> tuple[int, dict[str, Any], str]:
        argv = [sys.executable, "-m", "compaction.job", *args]
        done = subprocess.run(
            argv,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=JOB_TIMEOUT_S,
            start_new_session=True,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        report = json.loads(lines[-1]) if lines else {}
        return done.returncode, report, done.stderr


@pytest.fixture
def setup(
    s3_settings: S3Settings, spark_connector_jars: list[Path]
) -> Iterator[tuple[Compaction, LakeLocation]]:
    root = f"s3://{s3_settings.bucket}/compaction-it-{uuid.uuid4().hex[:8]}"
    location = LakeLocation(root, s3_settings)
    write_status(location, datetime(2024, 3, 1, 10, 5, tzinfo=UTC))  # 09h closed, 10h open
    yield Compaction(s3_settings, spark_connector_jars, root), location


def hour_args(hour: str = HOUR) -> list[str]:
    return ["--table", "all", "--date", DATE, "--hour", hour]


def test_compaction_on_s3_keeps_every_row_and_is_idempotent(
    setup: tuple[Compaction, LakeLocation], s3_settings: S3Settings
) -> None:
    job, lake = setup
    writer = StreamWriter(lake, DATE, HOUR)
    writer.ticks(batches=120, rows_per_batch=500)
    writer.bars(batches=60)
    con = duckdb_connection(s3_settings)
    before = ticks_summary(con, lake, DATE, HOUR)
    assert sum(row[1] for row in before) == 60_000
    bars_before = len(committed_objects(lake, BARS_1M, DATE, HOUR))

    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # a reader during the run: always every row, never none or twice
        reader = duckdb_connection(s3_settings)
        while not stop.is_set():
            seen.append(sum(row[1] for row in ticks_summary(reader, lake, DATE, HOUR)))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        code, report, stderr = job(*hour_args())
    finally:
        stop.set()
        watcher.join()
    assert code == 0, stderr[-3000:]
    assert report["status"] == "ok"
    ticks_report, bars_report = report["hours"]
    assert (ticks_report["action"], ticks_report["files_before"], ticks_report["files_after"]) == (
        "compact",
        120,
        1,
    )
    assert (bars_report["table"], bars_report["files_before"], bars_report["files_after"]) == (
        "bars_1m",
        bars_before,
        1,
    )
    assert ticks_report["rows"] == 60_000 and ticks_report["bytes_after"] > 0
    assert '"event": "hour_compacted"' in stderr
    assert seen and set(seen) == {60_000}, seen
    print(f"reader observations during the run: {len(seen)}")

    manifest = read_manifest(lake, TICKS, DATE, HOUR)
    assert manifest is not None
    assert committed_objects(lake, TICKS, DATE, HOUR) == [o.key for o in manifest.objects]
    assert ticks_summary(con, lake, DATE, HOUR) == before
    assert len(stream_objects(lake, TICKS, DATE, HOUR)) == 120  # kept for the grace period

    code, again, stderr = job(*hour_args())
    assert code == 0, stderr[-3000:]
    assert [h["action"] for h in again["hours"]] == ["noop", "noop"]
    assert read_manifest(lake, TICKS, DATE, HOUR) == manifest
    assert ticks_summary(con, lake, DATE, HOUR) == before

    code, collected, stderr = job("--gc", "--grace-seconds", "0", *hour_args())
    assert code == 0, stderr[-3000:]
    assert stream_objects(lake, TICKS, DATE, HOUR) == [] and stream_objects(lake, BARS_1M, DATE, HOUR) == []
    assert ticks_summary(con, lake, DATE, HOUR) == before


def test_kill_between_objects_and_manifest_then_rerun(
    setup: tuple[Compaction, LakeLocation], s3_settings: S3Settings
) -> None:
    job, lake = setup
    StreamWriter(lake, DATE, HOUR).ticks(batches=50, rows_per_batch=400)
    con = duckdb_connection(s3_settings)
    before = ticks_summary(con, lake, DATE, HOUR)
    old_keys = committed_objects(lake, TICKS, DATE, HOUR)

    code, _, stderr = job(
        "--table", "ticks", "--date", DATE, "--hour", HOUR, TICKSTREAM_COMPACTION_FAIL_POINT="after_write"
    )
    assert code == -9, stderr[-3000:]
    assert '"point": "after_write"' in stderr
    crashed = [
        info.path for info in list_objects(lake, compacted_hour_dir(TICKS, DATE, HOUR), recursive=True)
    ]
    assert crashed, "the killed run wrote no objects"
    assert read_manifest(lake, TICKS, DATE, HOUR) is None
    assert committed_objects(lake, TICKS, DATE, HOUR) == old_keys  # still the stream objects
    assert ticks_summary(con, lake, DATE, HOUR) == before

    code, report, stderr = job("--table", "ticks", "--date", DATE, "--hour", HOUR)
    assert code == 0, stderr[-3000:]
    manifest = read_manifest(lake, TICKS, DATE, HOUR)
    assert manifest is not None and report["hours"][0]["run_id"] == manifest.run_id
    assert [lake.path(o.key) for o in manifest.objects] == crashed  # same deterministic run, overwritten
    assert ticks_summary(con, lake, DATE, HOUR) == before
    assert committed_hour(lake, TICKS, DATE, HOUR).stream == ()


def test_open_hour_is_refused(setup: tuple[Compaction, LakeLocation]) -> None:
    job, lake = setup
    StreamWriter(lake, DATE, "10").ticks(batches=3, rows_per_batch=10)
    code, report, stderr = job(*hour_args("10"))
    assert code == 3
    assert report["status"] == "refused"
    assert "ticks/date=2024-03-01/hour=10 is still open" in stderr
    assert read_manifest(lake, TICKS, DATE, "10") is None
    assert len(committed_objects(lake, TICKS, DATE, "10")) == 3
