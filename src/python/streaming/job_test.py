"""The job's ticks query end to end without servers: a Kafka-shaped file source, a local test lake.

Checks what needs a real stream: de-duplication against the table, late ticks stored and counted and their
bars recomputed, rejected records quarantined, bars of complete minutes appended after the batches, the
status object, the supervisor, and the CLI's argument errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from streaming import job, supervisor, upkeep
from streaming.job import start_ticks_query
from streaming.settings import StreamingSettings
from streaming.sink import LakeSink
from streaming.status import StatusBook, StatusListener, StatusStore
from streaming.upkeep import BarsSchedule
from streaming.writers import BarsUpdater, IcebergBatchSink
from testkit.lake import TestLake, tick_rows
from testkit.spark import register_lake
from tickstream.contracts import encode_tick, make_tick
from tickstream.lake import BARS_1M, QUARANTINE, STATUS_KEY, TICKS, LakeLocation
from tickstream.settings import KafkaSettings

KAFKA_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset bigint, timestamp timestamp, "
    "timestampType int"
)
KAFKA_TS = datetime(2024, 3, 1, 10, 5, tzinfo=UTC)
T0 = int(datetime(2024, 3, 1, 9, 59, tzinfo=UTC).timestamp() * 1_000_000)
SECOND = 1_000_000


def tick(seq: int, offset_s: float, price: float = 100.0, symbol: str = "AAPL") -> bytes:
    """A valid tick `offset_s` seconds after T0 (09:59:00)."""
    return encode_tick(
        make_tick(symbol, seq, T0 + int(offset_s * SECOND), price, 10, price - 0.01, price + 0.01)
    )


class KafkaLikeFiles:
    """Appends Parquet files shaped like Spark's Kafka source rows to a directory a file stream reads."""

    def __init__(self, spark: SparkSession, directory: Path) -> None:
        self._spark = spark
        self.directory = directory
        self._offset = 0
        self._files = 0

    def stream(self):  # type: ignore[no-untyped-def]
        return (
            self._spark.readStream.schema(KAFKA_SCHEMA)
            .option("maxFilesPerTrigger", 1)
            .parquet(str(self.directory))
        )

    def add(self, values: list[bytes]) -> None:
        rows = [(None, v, "ticks", 0, self._offset + i, KAFKA_TS, 0) for i, v in enumerate(values)]
        self._offset += len(values)
        frame = self._spark.createDataFrame(rows, KAFKA_SCHEMA).coalesce(1)
        frame.write.parquet(str(self.directory / f"tmp-{self._files}"))
        target = self.directory / f"batch-{self._files:04d}.parquet"
        next((self.directory / f"tmp-{self._files}").glob("*.parquet")).rename(target)
        self._files += 1


@pytest.fixture
def running_job(
    spark: SparkSession, local_lake: TestLake, tmp_path: Path
) -> Iterator[tuple[KafkaLikeFiles, TestLake, LakeLocation, Any, BarsSchedule]]:
    """The ticks query on a file source, its bars schedule, a local test lake, the listener."""
    lake = register_lake(spark, local_lake)
    (tmp_path / "in").mkdir()
    source = KafkaLikeFiles(spark, tmp_path / "in")
    status = LakeLocation(str(tmp_path / "status"))
    settings = StreamingSettings(
        checkpoint_dir=str(tmp_path / "checkpoints"),
        watermark_delay="10 seconds",
        trigger_seconds=0.1,
        bars_trigger_seconds=0.01,
    )
    book = StatusBook(StatusStore(status))
    listener = StatusListener(book)
    spark.streams.addListener(listener)
    identifier = lake.settings.spark_identifier
    bars = BarsUpdater(identifier(TICKS.name), identifier(BARS_1M.name))
    sink = LakeSink(IcebergBatchSink((TICKS, QUARANTINE), identifier), book, settings)
    schedule = BarsSchedule(spark, bars, sink, book, every_s=0, correction_every_s=0)
    query = start_ticks_query(source.stream(), settings, sink)
    try:
        yield source, lake, status, query, schedule
    finally:
        query.stop()
        spark.streams.removeListener(listener)


def settled_status(lake: LakeLocation, done: Callable[[dict[str, Any]], bool], timeout_s: float = 30) -> dict:
    """The status object once `done` holds for it (it is written by the asynchronous progress listener)."""
    deadline = time.monotonic() + timeout_s
    while True:
        path = Path(lake.root) / STATUS_KEY
        status: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        try:
            if done(status) or time.monotonic() > deadline:
                return status
        except (KeyError, TypeError):
            if time.monotonic() > deadline:
                return status
        time.sleep(0.1)


def test_dedup_late_quarantine_and_bars(running_job) -> None:  # type: ignore[no-untyped-def]
    source, lake, status_location, query, schedule = running_job
    # batch 0: a tick, its duplicate, a tick 70 s later (minutes before 10:00:00 complete), two bad records
    source.add([tick(1, 0), tick(1, 0), tick(2, 70, 101.0), b"not json", b'{"symbol": "AAPL"}'])
    query.processAllAvailable()
    # batch 1: seq 1 and 2 re-sent (duplicates), seq 3 (on time), seq 5 of 09:59:30 (late: stored, counted)
    source.add([tick(1, 0), tick(3, 65, 99.0), tick(2, 70, 101.0), tick(5, 30, 98.0), b"not json"])
    query.processAllAvailable()
    # batch 2: event time moves to 09:59:00 + 200 s: 09:59 .. 10:01 are complete (10:02:10)
    source.add([tick(4, 200, 102.0)])
    query.processAllAvailable()
    schedule.maybe_run()  # what the supervisor's loop does: the bars of the minutes completed so far
    # batch 3: a tick of 09:59, whose bar is written: stored, and the hour's bars are recomputed
    source.add([tick(6, 10, 97.0)])
    query.processAllAvailable()
    schedule.maybe_run()

    ticks = sorted((t["seq"], t["event_time"].hour) for t in lake.read(TICKS).to_pylist())
    assert ticks == [(1, 9), (2, 10), (3, 10), (4, 10), (5, 9), (6, 9)]
    quarantine = lake.read(QUARANTINE).to_pylist()
    assert sorted((q["kafka_offset"], q["reason"]) for q in quarantine) == [
        (3, "not_json"),
        (4, "missing_field"),
        (9, "not_json"),
    ]
    assert {bytes(q["raw_value"]) for q in quarantine} == {b"not json", b'{"symbol": "AAPL"}'}
    bars = sorted(
        (b["window_start"].strftime("%H:%M"), b["open"], b["low"], b["close"], b["trade_count"])
        for b in lake.read(BARS_1M).to_pylist()
    )
    # 09:59 was recomputed with the late seq 6; 10:02 is not complete
    assert bars == [("09:59", 100.0, 97.0, 98.0, 3), ("10:00", 99.0, 99.0, 101.0, 2)]

    # Spark reports progress to listeners asynchronously: wait for the last batch's report
    status = settled_status(
        status_location,
        lambda s: s["queries"]["ticks"]["totals"]["through_batch_id"] >= 3
        and s["queries"]["bars_1m"]["watermark"] >= "2024-03-01T10:02:00",
    )
    ticks_status = status["queries"]["ticks"]
    assert ticks_status["totals"]["late"] == 3  # seq 1 re-sent, seq 5, seq 6 (the re-send is a duplicate too)
    assert ticks_status["totals"]["duplicates"] == 3
    assert ticks_status["totals"]["quarantined"] == 3
    assert ticks_status["totals"]["quarantined_by_reason"] == {"missing_field": 1, "not_json": 2}
    assert ticks_status["totals"]["rows_written"] == 6
    assert ticks_status["watermark"].startswith("2024-03-01T10:02:10")  # 09:59:00 + 200 s - 10 s
    assert status["queries"]["bars_1m"]["totals"]["rows_written"] == 2


def test_a_future_dated_tick_does_not_stop_ingestion(running_job) -> None:  # type: ignore[no-untyped-def]
    source, lake, status_location, query, _ = running_job
    hours_ahead = encode_tick(make_tick("AAPL", 9, T0 + 20 * 3600 * SECOND, 1.0, 1, 1.0, 1.0))
    source.add([tick(1, 0), hours_ahead])  # one bad clock, 20 hours ahead
    query.processAllAvailable()
    source.add([tick(2, 1), tick(3, 2, symbol="MSFT")])  # the next ticks of every symbol still land
    query.processAllAvailable()
    assert sorted(lake.read(TICKS)["seq"].to_pylist()) == [1, 2, 3]
    assert lake.read(QUARANTINE)["reason"].to_pylist() == ["future_timestamp"]
    status = settled_status(
        status_location, lambda s: s["queries"]["ticks"]["totals"]["through_batch_id"] >= 1
    )
    assert status["queries"]["ticks"]["totals"]["late"] == 0
    assert status["queries"]["ticks"]["watermark"] < "2024-03-01T10:00"  # event time did not jump ahead


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--watermark-delay", "soon"], "error: invalid setting: watermark_delay"),
        (["--snapshot-retention-s", "5"], "error: invalid setting: snapshot_retention_s"),  # >= 60 s
        (["--max-event-time-ahead-seconds", "0"], "error: invalid setting: max_event_time_ahead_seconds"),
        (["--starting-offsets", "yesterday"], "error: invalid setting: starting_offsets"),
        (["--shuffle-partitions", "0"], "error: invalid setting: shuffle_partitions"),
        (["--queries", "ticks"], "No such option: --queries"),
        (["--trigger-seconds", "fast"], "Invalid value for '--trigger-seconds'"),
        (["--run-seconds", "-1"], "error: --run-seconds must be > 0"),
    ],
)
def test_cli_rejects_bad_arguments(argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job, "run", lambda *args: pytest.fail("a refused command line must not run the job"))
    result = CliRunner().invoke(job.app, argv)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_cli_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKSTREAM_STREAMING_SHUFFLE_PARTITIONS", "8")
    monkeypatch.setenv("TICKSTREAM_STREAMING_MASTER", "spark://cluster:7077")
    calls: list[tuple[Any, ...]] = []

    def fake_run(*args: Any) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(job, "run", fake_run)
    result = CliRunner().invoke(job.app, ["--shuffle-partitions", "3", "--no-bars"])
    assert result.exit_code == 0, result.output
    settings, lake, *_, run_seconds = calls[0]
    assert (settings.shuffle_partitions, settings.master, settings.bars, run_seconds) == (
        3,
        "spark://cluster:7077",
        False,
        None,
    )
    assert lake.root.startswith("s3://")
    assert settings.checkpoint_for("ticks").endswith("/ticks")


def test_the_kafka_source_adapts_its_trigger_to_the_input_rate() -> None:
    kafka = KafkaSettings(bootstrap_servers="broker:9092")
    options = job.kafka_source_options(StreamingSettings(max_trigger_delay_s=2.5), kafka, "latest")
    assert (options["minOffsetsPerTrigger"], options["maxTriggerDelay"]) == ("10000", "2500ms")
    assert (options["subscribe"], options["startingOffsets"]) == ("ticks", "latest")
    assert options["kafka.bootstrap.servers"] == "broker:9092"
    capped = job.kafka_source_options(StreamingSettings(max_offsets_per_trigger=1500), kafka, "latest")
    assert (capped["minOffsetsPerTrigger"], capped["maxOffsetsPerTrigger"]) == ("1500", "1500")


def test_cli_has_help() -> None:
    result = CliRunner().invoke(job.app, ["--help"])
    assert result.exit_code == 0 and "--trigger-seconds" in result.output and "--no-bars" in result.output


class FakeQuery:
    """A streaming query that fails after `fail_after` polls (None: never), and records being stopped."""

    def __init__(self, fail_after: int | None) -> None:
        self.polls = 0
        self.fail_after = fail_after
        self.stopped = False
        self.lastProgress: dict[str, int] | None = None
        self.name = "ticks"

    @property
    def isActive(self) -> bool:
        self.polls += 1
        if self.fail_after is not None and self.polls > self.fail_after:
            return False
        self.lastProgress = {"numInputRows": 10}
        return not self.stopped

    def exception(self) -> Exception:
        return RuntimeError("S3 unreachable\nstack")

    def stop(self) -> None:
        self.stopped = True


class FakeSpark:
    def __init__(self) -> None:
        self.started: list[FakeQuery] = []
        self.stopped = False

    @property
    def streams(self) -> Any:
        return SimpleNamespace(active=[q for q in self.started if not q.stopped and q.fail_after is None])

    def stop(self) -> None:
        self.stopped = True


def test_supervise_restarts_a_failed_query_with_back_off_until_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor, "SUPERVISE_POLL_S", 0.001)
    spark = FakeSpark()
    plans = iter([2, 1, None])  # fails twice (two outages), then keeps running

    def start() -> FakeQuery:
        query = FakeQuery(next(plans))
        spark.started.append(query)
        return query

    stop = supervisor.StopFlag()
    settings = StreamingSettings(restart_delay_s=0.01, restart_max_delay_s=0.02)
    deadline = time.monotonic() + 1.0
    code = supervisor.supervise(spark, start, stop, deadline, settings)  # type: ignore[arg-type]
    assert code == 0 and stop.reason == "run_seconds elapsed"
    assert len(spark.started) == 3 and spark.started[-1].stopped and spark.stopped


def test_supervise_exits_1_after_max_restarts_consecutive_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "SUPERVISE_POLL_S", 0.001)
    spark = FakeSpark()

    def start() -> FakeQuery:
        query = FakeQuery(0)  # fails at once, every time
        spark.started.append(query)
        return query

    settings = StreamingSettings(restart_delay_s=0.001, restart_max_delay_s=0.001, max_restarts=2)
    code = supervisor.supervise(spark, start, supervisor.StopFlag(), time.monotonic() + 30, settings)  # type: ignore[arg-type]
    assert code == 1 and len(spark.started) == 3  # the first start and two restarts


def test_restart_delay_doubles_up_to_the_cap() -> None:
    assert [supervisor.restart_delay_s(n, 2.0, 60.0) for n in (1, 2, 3, 5, 9)] == [2.0, 4.0, 8.0, 32.0, 60.0]


def test_error_summary_names_the_python_error_not_the_proxy() -> None:
    proxy = (
        "An exception was raised by the Python Proxy. Return Message: Traceback (most recent call last):\n"
    )
    proxy += '  File "writers.py", line 9\nOSError: When uploading part: Connection refused\n'
    assert supervisor.error_summary(RuntimeError(proxy)) == "OSError: When uploading part: Connection refused"
    assert supervisor.error_summary("Kafka timeout\n\tat x.y") == "Kafka timeout"
    assert supervisor.error_summary(None) is None


def test_snapshot_expiry_runs_when_due_and_keeps_the_newest(
    spark: SparkSession, local_lake: TestLake
) -> None:
    lake = register_lake(spark, local_lake)
    t0 = T0
    for i in range(upkeep.RETAIN_SNAPSHOTS + 3):
        lake.append(
            TICKS, tick_rows([make_tick("AAPL", i + 1, t0 + i, 100.0, 1, 99.0, 101.0)], first_offset=i)
        )
    expiry = upkeep.SnapshotExpiry(spark, lake.settings, StreamingSettings(snapshot_retention_s=60))
    expiry.maybe_run()  # first due a third of the retention after the start
    assert len(lake.table(TICKS).snapshots()) == upkeep.RETAIN_SNAPSHOTS + 3
    expiry.retention = timedelta(0)  # every snapshot is old enough now
    expiry._due = 0.0
    expiry.maybe_run()
    assert len(lake.table(TICKS).snapshots()) == upkeep.RETAIN_SNAPSHOTS
    assert lake.read(TICKS).num_rows == upkeep.RETAIN_SNAPSHOTS + 3  # expiry never removes live rows
