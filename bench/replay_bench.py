"""Replay benchmark: years of daily bars replayed into a running platform, landed, corrected and modelled.

With the streaming job running on a scratch topic and lake (its own Iceberg catalog and warehouse prefix)
and a live producer at 2,000 ticks/s, `ops.replay` (what `tickstream replay FILE` runs) publishes a
file of daily bars of one symbol over 2,148 weekdays (8.2 years: 8,592 ticks, one hour partition per day),
waits until the streaming job has committed them and recomputed the bars of their hours, and builds the dbt
models of the touched days. Measured: the seconds to each of those points (target: modelled in under 60 s),
the files the replay left per table and how many replayed hours hold more than one (what compaction would
have to merge), and the live stream's batch durations in the 30 s before the replay vs during it (the
replay must not slow the live stream). Baseline, same run: the producer publishing the same file to a
topic nobody reads (publish alone).

Runs the platform's PEXes (`./pants package src/python/{producer,streaming,compaction,analytics}:bin`;
bench/run_all.py does it). Needs Kafka and S3 (`tickstream services up`).
Writes bench/results/replay.json.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from figures import write_results

from ops.replay import ReplayRequest, replay
from ops.services.kafka import ensure_topics
from ops.services.spark_jars import install_spark_jars
from testkit.lake import TestLake, private_catalog_settings
from tickstream.commands import command_app
from tickstream.lake import BARS_1M, TICKS, LakeLocation, read_status
from tickstream.settings import KafkaSettings, PathsSettings, S3Settings
from tickstream.topology import MS_PER_DAY, Topic

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "replay.json"
PEXES = {
    "producer": ROOT / "dist" / "src.python.producer" / "bin.pex",
    "streaming": ROOT / "dist" / "src.python.streaming" / "bin.pex",
    "analytics": ROOT / "dist" / "src.python.analytics" / "bin.pex",
    "compaction": ROOT / "dist" / "src.python.compaction" / "bin.pex",
}
TARGET_TOTAL_S = 60.0
LIVE_RATE = 2_000.0
BEFORE_S = 30.0


def daily_bars(path: Path, days: int, symbol: str = "HIST") -> int:
    """`days` weekdays of daily bars of one symbol from 2016-01-04, as CSV; returns the rows written."""
    weekdays = [d for d in (date(2016, 1, 4) + timedelta(days=i) for i in range(days * 2)) if d.weekday() < 5]
    rows = []
    for i, day in enumerate(weekdays[:days]):
        base = 10_000 + (i * 37) % 2_000
        low, high = base - 50 - i % 30, base + 60 + (i * 7) % 40
        rows.append((symbol, day, base / 100, high / 100, low / 100, (low + high) // 2 / 100, 10_000 + i))
    pl.DataFrame(
        rows, orient="row", schema=["symbol", "timestamp", "open", "high", "low", "close", "volume"]
    ).write_csv(path)
    return len(rows)


def environment(lake: TestLake, status: LakeLocation, work: Path, jars: list[Path]) -> dict[str, str]:
    """What every component process gets: Kafka, S3, the scratch catalog, jars and dbt's places."""
    return {
        **os.environ,
        "TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": KafkaSettings().bootstrap_servers,
        **lake.env(),
        "TICKSTREAM_STREAMING_JARS": ",".join(str(jar) for jar in jars),
        "TICKSTREAM_DBT_PROJECT_DIR": str(ROOT / "src" / "sql" / "dbt"),
        "TICKSTREAM_LAKE_ROOT": status.root,
        "TICKSTREAM_DBT_STATE_DIR": str(work / "dbt"),
        "TICKSTREAM_DBT_DUCKDB_PATH": str(work / "dbt" / "marts.duckdb"),
    }


@contextmanager
def running(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A component process for the duration of the block; SIGTERM (then SIGKILL) at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)


def wait(what: str, check: Callable[[], bool], job: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    """Poll `check` while the streaming job lives."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if job.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"waiting for {what}: streaming job exit code {job.poll()}")
        time.sleep(0.5)


def batch_durations(log: Path, since: float, until: float) -> list[int]:
    """Durations (ms) of the ticks batches the job logged with a wall time in [since, until) (epoch s)."""
    durations = []
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") != "batch" or event.get("query") != TICKS.name:
            continue
        moment = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()
        if since <= moment < until:
            durations.append(int(event["duration_ms"]))
    return durations


def percentiles(values: list[int]) -> dict[str, float | None]:
    """p50/p95/max of batch durations (None without batches)."""
    if len(values) < 2:
        return {"batches": len(values), "p50_ms": None, "p95_ms": None, "max_ms": None}
    cuts = statistics.quantiles(values, n=20)
    return {
        "batches": len(values),
        "p50_ms": statistics.median(values),
        "p95_ms": cuts[18],
        "max_ms": max(values),
    }


def replayed_files(lake: TestLake, first: datetime, last: datetime) -> dict[str, dict[str, int]]:
    """Per table: data files in the replayed span and hours of it holding more than one file."""
    result = {}
    for table in (TICKS, BARS_1M):
        files = lake.table(table).inspect.files().to_pylist()
        column = f"{table.partition_column}_hour"
        first_hour = int(first.timestamp() // 3600)
        last_hour = int(last.timestamp() // 3600)
        hours = [f["partition"][column] for f in files if first_hour <= f["partition"][column] <= last_hour]
        per_hour: dict[int, int] = {}
        for hour in hours:
            per_hour[hour] = per_hour.get(hour, 0) + 1
        result[table.name] = {
            "files": len(hours),
            "hours": len(per_hour),
            "hours_with_several_files": sum(1 for n in per_hour.values() if n > 1),
        }
    return result


DESCRIPTION = __doc__.splitlines()[0]
app = command_app(DESCRIPTION)


@app.command(help=DESCRIPTION)
def benchmark(
    days: Annotated[int, typer.Option(help="weekdays of daily bars (4 ticks each)")] = 2_148,
    out: Annotated[Path, typer.Option(help="results file")] = RESULTS_PATH,
) -> None:
    """Run the benchmark and write its JSON."""
    missing = [str(pex) for pex in PEXES.values() if not pex.is_file()]
    if missing:
        print(
            f"missing {missing}: ./pants package src/python/{{producer,streaming,analytics}}:bin",
            file=sys.stderr,
        )
        raise typer.Exit(2)

    s3 = S3Settings()
    run = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="tickstream-replay-bench-"))
    topic, baseline_topic = f"bench.replay.{run}", f"bench.replay-baseline.{run}"
    kafka = KafkaSettings().bootstrap_servers
    ensure_topics(kafka, [Topic(t, 3, MS_PER_DAY, "replay benchmark") for t in (topic, baseline_topic)])
    lake = TestLake(private_catalog_settings(work / "lake", s3), s3)
    status = LakeLocation(f"{lake.settings.warehouse}-status", s3)
    env = environment(lake, status, work, install_spark_jars(PathsSettings()))
    path = work / "daily.csv"
    bars = daily_bars(path, days)

    # baseline: publishing the file alone (nobody reads that topic)
    started = time.monotonic()
    subprocess.run(
        [str(PEXES["producer"]), "replay", str(path), "--speed", "0", "--topic", baseline_topic],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    publish_alone_s = time.monotonic() - started

    streaming = [
        str(PEXES["streaming"]), "--topic", topic, "--lake-root", status.root,
        "--checkpoint-dir", str(work / "checkpoints"),
    ]  # fmt: skip
    live = [str(PEXES["producer"]), "simulate", "--rate", str(LIVE_RATE), "--topic", topic]
    job_log = work / "streaming.log"
    with running(streaming, env, job_log) as job, running(live, env, work / "live.log"):
        wait("the first bars of the live stream", lambda: lake.files(BARS_1M) >= 1, job)
        time.sleep(BEFORE_S)
        replay_started = time.time()
        report = replay(
            ReplayRequest(
                path=path,
                publish=[str(PEXES["producer"])],
                model=[str(PEXES["analytics"])],
                compact=[str(PEXES["compaction"])],
                bootstrap=kafka,
                topic=topic,
                status=status,
                timeout_s=600,
                env=env,
                catalog=lake.settings,
                s3=s3,
            )
        )
        replay_ended = time.time()
        time.sleep(3)  # the last batches' log lines
    before = percentiles(batch_durations(job_log, replay_started - BEFORE_S, replay_started))
    during = percentiles(batch_durations(job_log, replay_started, replay_ended))
    first, last = datetime.fromisoformat(report["first"]), datetime.fromisoformat(report["last"])
    result: dict[str, Any] = {
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "file": {"bars": bars, "ticks": report["ticks"], "first": report["first"], "last": report["last"]},
        "replay": report,
        "baseline_publish_alone_s": round(publish_alone_s, 2),
        "live_rate_ticks_per_s": LIVE_RATE,
        "live_batches_before": before,
        "live_batches_during": during,
        "files": replayed_files(lake, first, last),
        "status_totals": (read_status(status).get("queries") or {}).get(TICKS.name, {}).get("totals"),
        "targets": {"total_s": TARGET_TOTAL_S},
    }
    write_results(out, result)


def main() -> None:
    """Entry point (`./pants run bench/replay_bench.py -- ...`)."""
    app()


if __name__ == "__main__":
    main()
