"""Streaming benchmark: sustained ticks/s through the job with a backlog, and produce->readable latency.

Runs `python -m streaming.job` (production settings, bars included) as a subprocess against a scratch topic
and a scratch lake (its own Iceberg catalog and warehouse prefix), in two phases:

1. backlog: N simulated ticks are produced first, then the job starts at `earliest`; throughput is the
   ticks the ticks query consumed after its first batch divided by the time until the last one is
   reported in the status object (so JVM start-up and the first batch do not count), with the bars updated
   alongside; then how long after that the bars reach the backlog's last complete minute.
   The backlog's event time advances 100k ticks per second, as a live feed at the target rate would, so
   the de-duplication state (two watermark delays of keys: 6M at 30 s) reaches its steady size once 60 s
   of event time (6M ticks) are in; the default 10M ticks measure mostly that steady state.
   Target >= 100k ticks/s. Baseline, measured on the same topic just before the job starts: Kafka's own
   kafka-consumer-perf-test reading the backlog (records/s; it reads, the job also parses, de-duplicates
   and writes, so the ratio says what share of the bare read rate the whole job keeps).
2. latency: with the job caught up, ticks are produced at a steady rate (default 10k/s) with event time =
   send time; the catalog is polled for the ticks table's current snapshot, each new snapshot's ticks are
   read with DuckDB (`iceberg_scan`), and each tick's latency is (time its snapshot was first seen) - ts_us:
   produce -> committed and readable by DuckDB. Target p95 <= 3 s.

Writes bench/results/streaming.json. Needs Kafka and S3 (`tickstream services up`), the connector jars and
an otherwise idle machine:

    PYTHONPATH=src/python PYSPARK_PYTHON=$(which python) python bench/streaming_bench.py --backlog 10000000
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from confluent_kafka import Producer
from figures import percentile, write_results

from ops.services.kafka import KafkaService, ensure_topics
from producer.simulator import SimulatedFeed, SimulationConfig
from streaming.settings import StreamingSettings, delay_seconds
from streaming.status import StatusStore
from testkit.lake import TestLake, private_catalog_settings
from tickstream.catalog import metadata_location
from tickstream.commands import command_app
from tickstream.contracts import decode_tick, encode_tick_columns, kafka_key, now_us
from tickstream.duckdb_lake import connect, iceberg_scan
from tickstream.lake import TICKS, LakeLocation
from tickstream.settings import KafkaSettings, PathsSettings, S3Settings
from tickstream.topology import MS_PER_DAY, TICKS_TOPIC, Topic

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "streaming.json"
SRC = Path(__file__).resolve().parents[1] / "src" / "python"
POLL_S = 0.1
CONSUMER_PERF_CLASS = "org.apache.kafka.tools.ConsumerPerformance"
LIVE_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY")


def produce_backlog(bootstrap: str, topic: str, ticks: int) -> tuple[float, int]:
    """Produce `ticks` simulated ticks as fast as possible; return ticks/s and the last event time."""
    producer = Producer(_producer_config(bootstrap))
    started = time.perf_counter()
    config = SimulationConfig(start_ts_us=now_us() - 3_600_000_000, event_rate_hz=100_000.0)
    last_event_us = 0
    for batch in SimulatedFeed(config, ticks):
        _send(producer, topic, batch.keys, batch.values)
        last_event_us = max(last_event_us, *(decode_tick(v)["ts_us"] for v in batch.values[-5:]))  # type: ignore[index]
    producer.flush(120)
    return ticks / (time.perf_counter() - started), last_event_us


def measure_kafka_consumer_perf(bootstrap: str, topic: str, records: int) -> dict[str, Any]:
    """kafka-consumer-perf-test reading `records` from the start of `topic`: the bare read rate."""
    args = ["--bootstrap-server", bootstrap, "--topic", topic, "--num-records", str(records)]
    kafka = KafkaService(PathsSettings(), KafkaSettings())
    completed = kafka.run_tool(CONSUMER_PERF_CLASS, [*args, "--timeout", "60000"], True, timeout=600)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or len(lines) < 2:
        raise RuntimeError(
            f"{CONSUMER_PERF_CLASS} failed ({completed.returncode}): {completed.stderr[-2000:]}"
        )
    header, values = (line.split(",") for line in lines[-2:])  # CSV: a header line, then the figures
    summary = {name.strip(): value.strip() for name, value in zip(header, values, strict=True)}
    return {
        "records": int(summary["data.consumed.in.nMsg"]),
        "records_per_s": float(summary["nMsg.sec"]),
        "mb_per_s": float(summary["MB.sec"]),
        "summary": lines[-1],
    }


def _producer_config(bootstrap: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000,
    }


def _send(producer: Producer, topic: str, keys: list[bytes], values: list[bytes]) -> None:
    for key, value in zip(keys, values, strict=True):
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    producer.poll(0)


def start_job(
    topic: str, lake: TestLake, status_root: str, checkpoint_dir: str, log_path: Path
) -> subprocess.Popen[bytes]:
    """The streaming job with its production defaults on the scratch topic and lake."""
    argv = [sys.executable, "-m", "streaming.job", "--topic", topic, "--lake-root", status_root]
    argv += ["--checkpoint-dir", checkpoint_dir, "--starting-offsets", "earliest"]
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
        "TICKSTREAM_CATALOG_URI": lake.settings.uri,
        "TICKSTREAM_CATALOG_NAME": lake.settings.name,
        "TICKSTREAM_CATALOG_WAREHOUSE": lake.settings.warehouse,
    }
    with log_path.open("wb") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def consumed(status: dict[str, Any], query: str) -> int:
    """Records a Kafka-reading query has consumed, from the end offsets of its last reported batch."""
    offsets = (status.get("queries", {}).get(query, {}).get("end_offsets") or {}).values()
    return sum(int(v) for partitions in offsets for v in partitions.values())


def measure_backlog(
    store: StatusStore,
    job: subprocess.Popen[bytes],
    total: int,
    bars_watermark_target: str,
    timeout_s: float,
) -> dict[str, Any]:
    """Throughput of the ticks query draining the backlog (first batch excluded), then the bars' lag.

    The ticks query does all per-tick work (parse, validate, dedup, the ticks and quarantine commits) and,
    once a minute, the bars of the complete minutes; the bars are done when they reach the backlog's last
    complete minute.
    """
    deadline = time.monotonic() + timeout_s
    first: tuple[float, int] | None = None
    ticks_done: float | None = None
    while True:
        if job.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("streaming job died or backlog not drained in time")
        status = store.read()
        now = time.monotonic()
        count = consumed(status, "ticks")
        if count and first is None:
            first = (now, count)
        if count >= total and ticks_done is None:
            ticks_done = now
        bars_watermark = status.get("queries", {}).get("bars_1m", {}).get("watermark") or ""
        if ticks_done is not None and bars_watermark >= bars_watermark_target:
            break
        time.sleep(POLL_S)
    assert first is not None
    started, count = first
    elapsed = ticks_done - started
    return {
        "ticks": {
            "ticks_after_first_batch": total - count,
            "elapsed_s": round(elapsed, 2),
            "ticks_per_s": round((total - count) / elapsed, 1) if elapsed > 0 else None,
        },
        "bars_1m": {
            "watermark_target": bars_watermark_target,
            "caught_up_after_ticks_s": round(now - ticks_done, 2),
        },
    }


def bars_watermark_target(last_event_us: int, settings: StreamingSettings) -> str:
    """Where the bars end once they cover the backlog's last complete minute (its watermark's minute)."""
    complete_us = last_event_us - delay_seconds(settings.watermark_delay) * 1_000_000
    return datetime.fromtimestamp(complete_us // 60_000_000 * 60, tz=UTC).isoformat(timespec="milliseconds")[
        :23
    ]


def measure_latency(
    bootstrap: str, topic: str, lake: TestLake, rate: float, seconds: float, warmup_s: float
) -> dict[str, Any]:
    """Produce at `rate` ticks/s with ts_us = send time; latency of each tick until DuckDB can read it."""
    producer = Producer(_producer_config(bootstrap))
    started_us = now_us()
    reader = connect(lake.s3)
    seen_location = metadata_location(lake.catalog, lake.settings, TICKS)
    newest_us = started_us
    latencies_ms: list[float] = []
    snapshots = 0
    sent = 0
    next_poll = time.monotonic()
    produce_until_us = started_us + int(seconds * 1_000_000)
    while now_us() < produce_until_us + 15_000_000:  # then 15 s for the last commits
        now = now_us()
        due = int(min(now, produce_until_us) - started_us) * rate / 1_000_000 - sent
        if due >= 1:
            _send_live_ticks(producer, topic, sent, int(due), now)
            sent += int(due)
        if time.monotonic() >= next_poll:
            next_poll = time.monotonic() + POLL_S
            location = metadata_location(lake.catalog, lake.settings, TICKS)
            if location is not None and location != seen_location:
                seen_location, visible_us = location, now_us()
                snapshots += 1
                rows = reader.execute(
                    f"SELECT ts_us FROM {iceberg_scan(location)} "
                    "WHERE event_time >= to_timestamp(? / 1e6) AND ts_us > ?",
                    [newest_us, newest_us],
                ).fetchall()
                fresh = [t for (t,) in rows]
                newest_us = max([newest_us, *fresh])
                latencies_ms += [(visible_us - t) / 1000 for t in fresh if t >= started_us + warmup_s * 1e6]
        time.sleep(0.005)
    producer.flush(30)
    latencies_ms.sort()
    return {
        "rate_ticks_per_s": rate,
        "seconds": seconds,
        "sent_ticks": sent,
        "measured_ticks": len(latencies_ms),
        "snapshots_seen": snapshots,
        "p50_ms": percentile(latencies_ms, 0.50),
        "p95_ms": percentile(latencies_ms, 0.95),
        "p99_ms": percentile(latencies_ms, 0.99),
        "max_ms": latencies_ms[-1] if latencies_ms else None,
        "poll_interval_ms": POLL_S * 1000,
    }


def _send_live_ticks(producer: Producer, topic: str, first: int, count: int, ts_us: int) -> None:
    """`count` valid ticks stamped `ts_us` (now), round-robin over a few symbols, unique seq numbers."""
    symbols = [LIVE_SYMBOLS[(first + i) % len(LIVE_SYMBOLS)] for i in range(count)]
    seqs = [first + i + 1 for i in range(count)]
    values = encode_tick_columns(
        symbols, seqs, [ts_us] * count, [100.0] * count, [100] * count, [99.99] * count, [100.01] * count
    )
    _send(producer, topic, [kafka_key(s) for s in symbols], values)


def stop(job: subprocess.Popen[bytes]) -> None:
    """Stop the job gracefully (SIGTERM to its process group), killing it if it hangs."""
    if job.poll() is None:
        job.send_signal(signal.SIGTERM)  # the driver only: it stops the queries and the JVM
        try:
            job.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(30)


DESCRIPTION = __doc__.splitlines()[0]
app = command_app(DESCRIPTION)


@app.command(help=DESCRIPTION)
def benchmark(
    backlog: Annotated[int, typer.Option(help="ticks produced before the job starts")] = 10_000_000,
    rate: Annotated[float, typer.Option(help="ticks/s of the latency phase")] = 10_000.0,
    seconds: Annotated[float, typer.Option(help="duration of the latency phase")] = 60.0,
    warmup: Annotated[float, typer.Option(help="seconds of the latency phase not measured")] = 10.0,
    timeout: Annotated[float, typer.Option(help="longest wait for the backlog")] = 900.0,
    out: Annotated[Path, typer.Option(help="results file")] = RESULTS_PATH,
    job_log: Annotated[
        Path | None, typer.Option(help="keep the streaming job's log here (else deleted)")
    ] = None,
) -> None:
    """Run both phases and write the results file."""
    load_at_start = [round(x, 2) for x in os.getloadavg()]  # others' work skews a 2-core machine
    run_id = uuid.uuid4().hex[:8]
    topic = f"bench.streaming.{run_id}"
    bootstrap = KafkaSettings().bootstrap_servers
    s3 = S3Settings()
    scratch_dir = Path(tempfile.mkdtemp(prefix="streaming-bench-"))
    lake = TestLake(private_catalog_settings(scratch_dir / "lake", s3), s3)
    status = LakeLocation(f"{lake.settings.warehouse}-status", s3)
    ensure_topics(
        bootstrap, [Topic(topic, TICKS_TOPIC.partitions, MS_PER_DAY, "Streaming benchmark scratch.")]
    )
    produce_rate, last_event_us = produce_backlog(bootstrap, topic, backlog)
    bars_target = bars_watermark_target(last_event_us, StreamingSettings())
    consumer_perf = measure_kafka_consumer_perf(bootstrap, topic, backlog)
    job = start_job(topic, lake, status.root, f"{scratch_dir}/checkpoints", scratch_dir / "job.log")
    try:
        drained = measure_backlog(StatusStore(status), job, backlog, bars_target, timeout)
        latency = measure_latency(bootstrap, topic, lake, rate, seconds, warmup)
    finally:
        stop(job)
        if job_log:
            shutil.copy(scratch_dir / "job.log", job_log)
        shutil.rmtree(scratch_dir, ignore_errors=True)
    results = {
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {"backlog_ticks": backlog, "warehouse": lake.settings.warehouse, "topic": topic},
        "job_settings": StreamingSettings().model_dump(exclude={"jars", "checkpoint_dir"}),
        "load_average_at_start": load_at_start,
        "backlog_produce_ticks_per_s": round(produce_rate, 1),
        "kafka_consumer_perf_test": consumer_perf,
        "backlog": drained,
        "latency": latency,
        "targets": {"ticks_per_s": 100_000, "latency_p95_ms": 3_000},
    }
    write_results(out, results)


def main() -> None:
    """Entry point (`python bench/streaming_bench.py`, `./pants run bench/streaming_bench.py -- ...`)."""
    app()


if __name__ == "__main__":
    main()
