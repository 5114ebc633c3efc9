"""Reliability tests with real Kafka, S3 and Spark: kill -9 the job repeatedly; restart Kafka and S3.

A deterministic stream (out-of-order ticks within the watermark delay, duplicate sends, malformed records,
then late ticks of minutes whose bars are written) goes through `python -m streaming.job`, which is
SIGKILLed (its whole process group: driver, JVM, Python workers) four times at different moments and
restarted; one kill lands after a batch was committed to the ticks table and before Spark recorded it, so
that batch is replayed and must be skipped. Then the job restarts without its checkpoint and must resume
from the Kafka offsets the lake holds. At the end, DuckDB reads the Iceberg tables through the catalog (and
pyiceberg, not our code, reads the same rows): exactly the valid ticks, late ones included, bars equal to an
independent polars computation, every malformed record once with the contract's reason, and the exact
late and duplicate counts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from ops.services.kafka import KafkaService, ensure_topics
from ops.services.seaweedfs import SeaweedFSService
from streaming.status import StatusStore
from streaming.writers import SNAPSHOT_BATCH_ID
from testkit.expected import EXPECTED_BAR_SQL_COLUMNS, expected_bars
from testkit.lake import TestLake, private_catalog_settings
from tickstream.catalog import load_table, metadata_location
from tickstream.contracts import Rejection, Tick, decode_tick, encode_tick, make_tick
from tickstream.duckdb_lake import connect, iceberg_scan
from tickstream.lake import BARS_1M, QUARANTINE, TICKS, LakeLocation, LakeTable
from tickstream.settings import S3Settings
from tickstream.topology import Topic

pytestmark = pytest.mark.integration

SYMBOLS = ("AAPL", "MSFT", "BRK.B", "NVDA", "SPY")
T0 = int(datetime(2024, 3, 1, 9, 56, tzinfo=UTC).timestamp() * 1_000_000)
MINUTE = 60_000_000
WATERMARK = "30 seconds"
FLUSHED_WATERMARKS = ("2024-03-01T10:25", "2024-03-01T10:25")
"""Ticks watermark and bars' end once the flush tick (10:26) is in: 10:25:30, and the minutes before 10:25."""
SRC = Path(__file__).resolve().parents[1]
S3_OUTAGE_S = 120
"""Longer than Iceberg's S3 client retries a request (it rode out 45 s), so the outage fails a batch."""
JOB_TIMEOUT_S = 240


# --- the deterministic stream ------------------------------------------------------------------------


@dataclass
class Feed:
    """Records to send (in order) and what the job must make of them."""

    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    accepted: list[Tick] = field(default_factory=list)
    malformed: list[bytes] = field(default_factory=list)
    late: int = 0


def _tick(symbol: str, seq: int, ts_us: int, i: int) -> Tick:
    cents = 10_000 + (i * 7919) % 5_000 + 100 * SYMBOLS.index(symbol)
    return make_tick(
        symbol, seq, ts_us, cents / 100, 1 + (i * 31) % 500, (cents - 1) / 100, (cents + 1) / 100
    )


def _malformed(i: int) -> bytes:
    base = dict(_tick("AAPL", 1, T0, i))
    variants: list[bytes] = [
        b"{not json",
        b"[1, 2, 3]",
        orjson.dumps({k: v for k, v in base.items() if k != "price"}),
        orjson.dumps({**base, "seq": "7"}),
        orjson.dumps({**base, "symbol": "aapl"}),
        orjson.dumps({**base, "ts_us": 4_102_444_800_000_000}),  # 2100-01-01: > Kafka time + 1 day
        orjson.dumps({**base, "price": -1.5}),
        orjson.dumps({**base, "seq": 0}),
        orjson.dumps({**base, "bid": 200.0, "ask": 100.0}),
        orjson.dumps({**base, "size": 0, "salt": i}),
    ]
    return variants[i % len(variants)]


def valid_phase(first_index: int, count: int, start_us: int, step_us: int, seqs: dict[str, int]) -> Feed:
    """`count` ticks round-robin over SYMBOLS, some sent up to 40 ticks late, some twice, plus bad records."""
    ticks = []
    for i in range(first_index, first_index + count):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        seqs[symbol] += 1
        ticks.append(_tick(symbol, seqs[symbol], start_us + (i - first_index) * step_us, i))
    order = list(range(count))
    for position in range(0, count - 41, 50):  # out of order by 1.6 s event time: within the watermark
        order.insert(position + 40, order.pop(position))
    feed = Feed(accepted=list(ticks))
    for n, index in enumerate(order):
        tick = ticks[index]
        feed.records.append((tick["symbol"].encode(), encode_tick(tick)))
        if n % 17 == 0 and n >= 3:  # a retry of a tick sent 3 records ago
            earlier = ticks[order[n - 3]]
            feed.records.append((earlier["symbol"].encode(), encode_tick(earlier)))
        if n % 400 == 7:
            bad = _malformed(first_index // 400 + len(feed.malformed))  # every variant in turn
            feed.records.append((b"AAPL", bad))
            feed.malformed.append(bad)
    return feed


def late_phase(phase_a: Feed, seqs: dict[str, int]) -> Feed:
    """Ticks of minutes whose bars are written (new keys, and re-sends of old ones): all counted late, the
    new ones stored (and their bars corrected), the re-sends dropped as duplicates."""
    feed = Feed()
    for j in range(40):
        symbol = SYMBOLS[j % len(SYMBOLS)]
        seqs[symbol] += 1
        tick = _tick(symbol, seqs[symbol], T0 + MINUTE + j * 1000, j)
        feed.records.append((symbol.encode(), encode_tick(tick)))
        feed.accepted.append(tick)
    for old in phase_a.accepted[:2000:100]:
        feed.records.append((old["symbol"].encode(), encode_tick(old)))
    feed.late = 40 + 20
    return feed


def send(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Produce records in order (idempotent producer), waiting for every acknowledgement."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for key, value in records:
        producer.produce(topic, value=value, key=key)
        producer.poll(0)
    assert producer.flush(60) == 0


# --- driving the job ---------------------------------------------------------------------------------


@dataclass
class Job:
    """The streaming job as a subprocess in its own process group."""

    argv: list[str]
    env: dict[str, str]
    logs: Path
    runs: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.runs += 1
        log = (self.logs / f"job-{self.runs}.log").open("wb")
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.tail()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        """Graceful stop: SIGTERM to the driver only (the JVM must live to stop the queries)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)

    def tail(self) -> str:
        text = (self.logs / f"job-{self.runs}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-30:])


@dataclass
class Lake:
    """The test's lake: its Iceberg tables (catalog and warehouse of its own) and the status object."""

    tables: TestLake
    status_location: LakeLocation

    def status(self) -> dict[str, Any]:
        return StatusStore(self.status_location).read().get("queries", {})

    def committed_batch(self) -> int:
        """The batch id of the newest snapshot of the ticks table (-1 if none)."""
        snapshot = load_table(self.tables.catalog, self.tables.settings, TICKS).current_snapshot()
        if snapshot is None or snapshot.summary is None:
            return -1
        return int(snapshot.summary.additional_properties.get(SNAPSHOT_BATCH_ID, -1))


def new_lake(s3: S3Settings, directory: Path) -> Lake:
    tables = TestLake(private_catalog_settings(directory, s3), s3)
    return Lake(tables, LakeLocation(f"{tables.settings.warehouse}-status", s3))


def job_for(bootstrap: str, jars: list[Path], topic: str, lake: Lake, work: Path, **env: str) -> Job:
    """`python -m streaming.job` on `topic` into `lake`: small batches, checkpoints under `work`."""
    environment = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "PYSPARK_PYTHON": sys.executable,
        "TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        **lake.tables.env(),
        "TICKSTREAM_STREAMING_JARS": ",".join(str(jar) for jar in jars),
        "TICKSTREAM_STREAMING_DRIVER_MEMORY": "2g",
        **env,
    }
    argv = [
        sys.executable, "-m", "streaming.job",
        "--topic", topic,
        "--lake-root", lake.status_location.root,
        "--checkpoint-dir", str(work / "checkpoints"),
        "--max-offsets-per-trigger", "1500",
        "--trigger-seconds", "0.5",
        "--watermark-delay", WATERMARK,
        "--bars-trigger-seconds", "1",
    ]  # fmt: skip
    return Job(argv, environment, work)


def wait_for(what: str, condition: Callable[[], bool], job: Job, timeout_s: float = JOB_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert (
            job.process is not None and job.process.poll() is None
        ), f"job died waiting for {what}\n{job.tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{job.tail()}"
        time.sleep(0.05)


def caught_up(
    lake: Lake, total_records: int, ticks_watermark: str | None = None, bars_watermark: str | None = None
) -> Callable[[], bool]:
    """The ticks query has consumed every record, and the queries' watermarks passed the given instants."""

    def check() -> bool:
        status = lake.status()
        offsets = (status.get(TICKS.name, {}).get("end_offsets") or {}).values()
        if sum(int(v) for partitions in offsets for v in partitions.values()) < total_records:
            return False
        wanted = {TICKS.name: ticks_watermark, BARS_1M.name: bars_watermark}
        return all((status.get(name, {}).get("watermark") or "") >= at for name, at in wanted.items() if at)

    return check


def last_batch(lake: Lake) -> int:
    """The last ticks batch whose progress the status object reports (-1 if none)."""
    return int(lake.status().get(TICKS.name, {}).get("last_batch_id", -1))


def committed_not_reported(lake: Lake) -> Callable[[], bool]:
    """A ticks batch is committed to the table but its progress is not reported yet: Spark has not marked
    it done, so a kill now makes it replay a batch whose ticks are already in the table."""

    def check() -> bool:
        return lake.committed_batch() > max(last_batch(lake), 0)

    return check


# --- reading the lake back with DuckDB, and the independent expectation -------------------------------


def read_table(lake: Lake, table: LakeTable, columns: str) -> list[tuple[Any, ...]]:
    """Rows of the table's current snapshot as DuckDB reads them through the catalog (sorted)."""
    location = metadata_location(lake.tables.catalog, lake.tables.settings, table)
    assert location is not None
    with connect(lake.tables.s3) as con:
        return sorted(con.execute(f"SELECT {columns} FROM {iceberg_scan(location)}").fetchall())


def read_with_pyiceberg(lake: Lake, table: LakeTable, columns: list[str]) -> list[tuple[Any, ...]]:
    """The same rows read by pyiceberg (Iceberg's own Python library, not the platform's reader)."""
    rows = lake.tables.read(table).select(columns).to_pylist()
    return sorted(tuple(row[c] for c in columns) for row in rows)


def bars_closed_before(ticks: list[Tick], closed_before_us: int) -> list[tuple[Any, ...]]:
    """The independent 1-minute bars of `ticks` whose minute ended by `closed_before_us`."""
    return [bar for bar in expected_bars(ticks) if bar[1] + MINUTE <= closed_before_us]


# --- the test ----------------------------------------------------------------------------------------


TICK_COLUMNS = ["schema_version", "symbol", "seq", "ts_us", "price", "size", "bid", "ask"]


@pytest.fixture
def job_setup(
    kafka_bootstrap: str, s3_settings: S3Settings, spark_connector_jars: list[Path], tmp_path: Path
) -> Iterator[tuple[Job, Lake, str]]:
    topic = f"ticks-it-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [Topic(topic, 3, 86_400_000, "streaming integration test")])
    lake = new_lake(s3_settings, tmp_path / "lake")
    job = job_for(kafka_bootstrap, spark_connector_jars, topic, lake, tmp_path)
    try:
        yield job, lake, topic
    finally:
        job.stop()


def job_events(job: Job) -> list[dict[str, Any]]:
    """The structured log events of every run of the job (Spark's own lines are not JSON)."""
    events = []
    for run in range(1, job.runs + 1):
        for line in (job.logs / f"job-{run}.log").read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
    return events


def test_exactly_once_across_kill_9(job_setup: tuple[Job, Lake, str], kafka_bootstrap: str) -> None:
    job, lake, topic = job_setup
    seqs = dict.fromkeys(SYMBOLS, 0)
    phase_a = valid_phase(0, 12_000, T0, 40_000, seqs)  # 09:56:00 .. 10:04:00, across an hour
    send(kafka_bootstrap, topic, phase_a.records)
    sent = len(phase_a.records)
    kills: list[str] = []

    job.start()  # kill 1: a few seconds after start (session start-up / first batch planning)
    time.sleep(12)
    job.kill()
    kills.append("during start-up")

    job.start()  # kill 2: a batch committed to the ticks table, not yet recorded by Spark
    wait_for("a ticks batch committed but not reported", committed_not_reported(lake), job)
    replayed = lake.committed_batch()
    job.kill()
    kills.append(f"after the Iceberg commit of batch {replayed}, before Spark's")

    job.start()  # kill 3: right after a batch's progress was reported
    before = last_batch(lake)
    wait_for("the next reported batch", lambda: last_batch(lake) > before, job)
    job.kill()
    kills.append("just after a reported batch")

    job.start()
    phase_a_end = datetime.fromtimestamp((T0 + 12_000 * 40_000) / 1e6 - 60, tz=UTC).isoformat()[:19]
    wait_for("phase A processed", caught_up(lake, sent, ticks_watermark=phase_a_end), job)

    late = late_phase(phase_a, seqs)  # minutes long complete
    phase_b = valid_phase(12_000, 3_000, T0 + 8 * MINUTE, 40_000, seqs)
    send(kafka_bootstrap, topic, late.records + phase_b.records)
    sent += len(late.records) + len(phase_b.records)
    wait_for("phase B in flight", committed_not_reported(lake), job)
    job.kill()  # kill 4: mid-stream while late, duplicate and new ticks are in flight
    kills.append("phase B in flight")

    job.start()
    flush = _tick("SPY", seqs["SPY"] + 1, T0 + 30 * MINUTE, 0)  # completes every earlier minute
    send(kafka_bootstrap, topic, [(b"SPY", encode_tick(flush))])
    sent += 1
    wait_for("everything processed", caught_up(lake, sent, *FLUSHED_WATERMARKS), job)
    job.stop()
    print(f"kills: {kills}")
    status = lake.status()  # before the lost checkpoint starts new totals

    # the checkpoint is lost: the new query resumes after the offsets committed to the lake
    shutil.rmtree(job.logs / "checkpoints")
    job.start()
    extra = valid_phase(15_000, 100, T0 + 31 * MINUTE, 40_000, seqs)
    send(kafka_bootstrap, topic, extra.records)
    sent += len(extra.records)
    wait_for("the records after the lost checkpoint", caught_up(lake, sent), job)
    job.stop()
    resumed = lake.status()[TICKS.name]
    assert resumed["query_id"] != status[TICKS.name]["query_id"]
    assert resumed["totals"]["input_rows"] == len(extra.records), "the new checkpoint re-read the topic"

    # the faults really happened: four kills, and the batch committed before a kill was replayed and skipped
    assert job.runs == 6 and len(kills) == 4
    skipped = [event for event in job_events(job) if event.get("event") == "batch_already_committed"]
    assert any(
        (e["table"], e["batch_id"]) == ("ticks", replayed) for e in skipped
    ), f"batch {replayed}, committed before kill 2, was not replayed and skipped: {skipped}"

    accepted = phase_a.accepted + late.accepted + phase_b.accepted + [flush] + extra.accepted
    malformed = phase_a.malformed + phase_b.malformed + extra.malformed
    expected_ticks = sorted(tuple(t.values()) for t in accepted)
    assert read_table(lake, TICKS, ", ".join(TICK_COLUMNS)) == expected_ticks
    assert read_with_pyiceberg(lake, TICKS, TICK_COLUMNS) == expected_ticks
    hours = read_table(lake, TICKS, "count(*), count(DISTINCT date_trunc('hour', event_time))")
    assert hours == [(len(accepted), 2)]  # 09h and 10h

    flushed = T0 + 29 * MINUTE  # the minutes the flush tick completed (the late ticks' 09:57 among them)
    bars = [bar for bar in read_table(lake, BARS_1M, EXPECTED_BAR_SQL_COLUMNS) if bar[1] + MINUTE <= flushed]
    assert bars == bars_closed_before(accepted, flushed)

    quarantined = read_table(lake, QUARANTINE, "raw_value, reason, epoch_us(kafka_ts)")
    assert sorted(bytes(raw) for raw, _, _ in quarantined) == sorted(malformed)
    for raw, reason, kafka_ts_us in quarantined:
        rejection = decode_tick(bytes(raw), now_us_override=kafka_ts_us)
        assert isinstance(rejection, Rejection) and rejection.reason == reason, (raw, reason)

    # the counts are exact across the kills: every late tick, every duplicate, every record of the first query
    totals = status[TICKS.name]["totals"]
    first_query = phase_a, late, phase_b
    valid_sent = sum(len(f.records) - len(f.malformed) for f in first_query) + 1
    stored = sum(len(f.accepted) for f in first_query) + 1
    assert (totals["late"], totals["rows_written"]) == (late.late, stored)
    assert (totals["duplicates"], totals["input_rows"]) == (valid_sent - stored, sent - len(extra.records))
    first_malformed = phase_a.malformed + phase_b.malformed
    reasons = {r.reason for bad in first_malformed if isinstance(r := decode_tick(bad), Rejection)}
    assert set(status[TICKS.name]["totals"]["quarantined_by_reason"]) == reasons
    print(f"status totals: ticks {totals}, bars {status[BARS_1M.name]['totals']}; runs: {job.runs}")


def send_paced(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], chunks: int, pause_s: float
) -> None:
    """Produce records in `chunks` pieces `pause_s` apart (a steady load), then wait for every ack.

    The idempotent producer buffers and retries while the broker restarts; nothing is lost or doubled.
    """
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 180_000,
        }
    )
    size = -(-len(records) // chunks)
    for start in range(0, len(records), size):
        for key, value in records[start : start + size]:
            producer.produce(topic, value=value, key=key)
        producer.poll(0)
        time.sleep(pause_s)
    assert producer.flush(180) == 0


def test_recovers_from_kafka_and_s3_restarts_under_load(
    private_kafka: KafkaService,
    private_s3: SeaweedFSService,
    spark_connector_jars: list[Path],
    tmp_path: Path,
) -> None:
    """Restart the broker, then the S3 server, while ticks flow: the job recovers by itself, lake exact."""
    bootstrap, s3 = private_kafka.settings.bootstrap_servers, private_s3.s3
    topic = f"ticks-faults-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [Topic(topic, 3, 86_400_000, "fault test")])
    lake = new_lake(s3, tmp_path / "lake")
    job = job_for(
        bootstrap,
        spark_connector_jars,
        topic,
        lake,
        tmp_path,
        TICKSTREAM_STREAMING_RESTART_DELAY_S="1",
        TICKSTREAM_STREAMING_RESTART_MAX_DELAY_S="5",
    )
    seqs = dict.fromkeys(SYMBOLS, 0)
    feed = valid_phase(0, 9_000, T0, 40_000, seqs)  # 6 minutes of event time
    flush = _tick("SPY", seqs["SPY"] + 1, T0 + 30 * MINUTE, 0)  # closes every earlier bar
    records = [*feed.records, (b"SPY", encode_tick(flush))]
    sender = threading.Thread(target=send_paced, args=(bootstrap, topic, records, 40, 1.0))
    job.start()
    try:
        wait_for("the first committed batch", lambda: last_batch(lake) >= 0, job)
        sender.start()
        time.sleep(5)
        private_kafka.down()  # broker restart under load
        time.sleep(5)
        private_kafka.up()
        before = last_batch(lake)
        wait_for("a batch after the broker restart", lambda: last_batch(lake) > before, job)
        # S3 down under load for longer than the S3 clients retry: the commits fail, so does the query
        private_s3.down()
        time.sleep(S3_OUTAGE_S)
        private_s3.up()
        sender.join(300)
        assert not sender.is_alive()
        wait_for("everything processed", caught_up(lake, len(records), *FLUSHED_WATERMARKS), job, 300)
        assert job.runs == 1 and job.process is not None and job.process.poll() is None  # no manual restart
    finally:
        job.stop()

    accepted = [*feed.accepted, flush]
    assert read_table(lake, TICKS, ", ".join(TICK_COLUMNS)) == sorted(tuple(t.values()) for t in accepted)
    assert read_table(lake, BARS_1M, EXPECTED_BAR_SQL_COLUMNS) == bars_closed_before(
        accepted, T0 + 29 * MINUTE
    )
    quarantined = read_table(lake, QUARANTINE, "raw_value")
    assert sorted(bytes(raw) for (raw,) in quarantined) == sorted(feed.malformed)
    # the outages really broke the query, and the job restarted it by itself
    log = (tmp_path / "job-1.log").read_text(errors="replace")
    failures, restarts = log.count('"event": "query_failed"'), log.count('"event": "query_restarted"')
    print(f"query failures while services restarted: {failures}, restarts: {restarts}")
    assert failures >= 1 and restarts >= 1
