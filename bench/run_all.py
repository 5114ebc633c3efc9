#!/usr/bin/env python3
"""Run every benchmark in a fixed order, then write the report: `python3 bench/run_all.py` (~30-37 min).

Each benchmark runs as its own `./pants run bench/<name>_bench.py -- <args>`, so it gets the interpreter of
its resolve (producer, dbt, dashboard: python-default; streaming, compaction: spark, with pyspark) built
from the lockfiles, and runs in the repository (bench/BUILD sets `run_goal_use_sandbox=False`), where it
writes bench/results/<name>.json. Then `./pants run bench/report.py` writes summary.json, REPORT.md and
chart.svg. This driver itself needs only the standard library: run it with any Python 3.9+, not through
`./pants run` (a Pants run inside a Pants run waits for the first one's pantsd and gives up).

Before each benchmark it records the load average and available memory, and the machine (CPUs, RAM,
platform, git commit) once, in bench/results/run_all.json, which the report merges in. A failing
benchmark does not stop the others (its old result is then reported as stale); the exit code is 1 if
any failed. Needs Kafka and S3 for producer, streaming and dashboard: `./tickstream services up` first.

    python3 bench/run_all.py                       # everything, sizes below
    python3 bench/run_all.py --only dbt,dashboard  # some of them (the report covers all result files)
    python3 bench/run_all.py --dry-run             # print the commands
    python3 bench/run_all.py --smoke               # each benchmark's --help through Pants: builds and imports
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RUN_FILE = RESULTS / "run_all.json"


@dataclass(frozen=True)
class Stage:
    """One benchmark: its script, arguments and expected duration on a 2-core machine."""

    name: str
    script: str
    args: Sequence[str]
    minutes: float
    services: bool  # needs the running Kafka / S3 (`./tickstream services up`)
    packages: Sequence[str] = ()  # Pants targets packaged (into dist/) before the benchmark runs


# Sized for ~30-37 minutes in all on 2 cores (durations measured 2026-11-26 under load 3-8), plus the
# one-off build of each resolve's environment by Pants on a cold cache (a few minutes for spark).
STAGES = (
    # 5M ticks through our producer, then kafka-producer-perf-test: ~1 min.
    Stage("producer", "bench/producer_bench.py", ["--records", "5000000"], 1, True),
    # 10M-tick backlog (100 s of event time: the de-duplication state reaches its steady size, 2 x 30 s of
    # keys; ~2.5 min incl. JVM start), then 60 s at 10k ticks/s + 15 s drain: ~5 min.
    Stage("streaming", "bench/streaming_bench.py", ["--backlog", "10000000", "--seconds", "60"], 6, True),
    # One full hour as the stream appends it (18M ticks, 3,600 files in 60 commits), then compacted: ~6 min.
    Stage("compaction", "bench/compaction_bench.py", ["--rate", "5000", "--seconds", "3600"], 6, False),
    # One day at 100 ticks/s (8.64M ticks) in two Iceberg lakes on local disk, every hour streamed (10k files)
    # vs closed hours compacted; dbt build full + hourly, DuckDB query on both: ~2-3 min.
    Stage("dbt", "bench/dbt_bench.py", ["--ticks-per-second", "100", "--batch-seconds", "10"], 4, False),
    # 30 symbols x 1 day of bars in two Iceberg lakes on S3, 60 files/hour vs compacted, day view: ~1 min.
    Stage("dashboard", "bench/dashboard_bench.py", ["--symbols", "30", "--objects-per-hour", "60"], 1, True),
    # 8.2 years of daily bars (8,592 ticks) replayed into a running platform (live producer at 2k/s), landed,
    # bars corrected and the touched days modelled by dbt; the platform's own PEXes: ~4 min.
    Stage(
        "replay",
        "bench/replay_bench.py",
        ["--days", "2148"],
        4,
        True,
        tuple(f"src/python/{name}:bin" for name in ("producer", "streaming", "compaction", "analytics")),
    ),
    # The whole platform from the packaged CLI (its own home and ports): up, 180 s settle (JIT warm-up),
    # 60 s CPU at 2k ticks/s, 60 s of probes at 10k ticks/s observed in Kafka, the lake, the dashboard and
    # Chromium, down: ~8 min (measured 2026-11-28).
    Stage(
        "platform",
        "bench/platform_bench.py",
        [],
        8,
        False,
        (
            "src/python/ops:cli",
            "src/dags:airflow",
            *(
                f"src/python/{name}:bin"
                for name in ("producer", "streaming", "compaction", "analytics", "dashboard")
            ),
        ),
    ),
)


def now() -> str:
    """UTC now, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")  # noqa: UP017 (datetime.UTC: 3.11+)


def meminfo() -> dict[str, float]:
    """Total and available memory in GiB (Linux /proc/meminfo; empty elsewhere)."""
    values: dict[str, float] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                values[key] = round(int(rest.split()[0]) / 1024**2, 1)
    except OSError:
        pass
    return values


def git(*args: str) -> str:
    """Output of a read-only git command in the repository ('' if it fails)."""
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def machine() -> dict[str, Any]:
    """The machine the benchmarks run on."""
    memory = meminfo()
    return {
        "cpus": os.cpu_count(),
        "ram_total_gib": memory.get("MemTotal"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def reachable(address: str, timeout_s: float = 2.0) -> bool:
    """Whether a TCP connection to host:port (or a URL) succeeds."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 80), timeout_s):
            return True
    except OSError:
        return False


def missing_services() -> list[str]:
    """Kafka / S3 endpoints (from TICKSTREAM_* or the defaults) that do not answer."""
    kafka = os.environ.get("TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092").split(",")[0]
    s3 = os.environ.get("TICKSTREAM_S3_ENDPOINT_URL", "http://127.0.0.1:8333")
    return [f"{name} at {where}" for name, where in (("Kafka", kafka), ("S3", s3)) if not reachable(where)]


def pants_run(script: str, args: Sequence[str]) -> list[str]:
    """The command that runs `script` with `args` through Pants."""
    return [str(ROOT / "pants"), "run", script, "--", *args]


def run_stage(stage: Stage, smoke: bool) -> dict[str, Any]:
    """Run one benchmark (or its --help with `smoke`) and describe the run."""
    argv = pants_run(stage.script, ["--help"] if smoke else stage.args)
    load = [round(x, 2) for x in os.getloadavg()]
    memory = meminfo()
    print(f"\n=== {stage.name} (~{stage.minutes:g} min), load {load}: {shlex.join(argv)}", flush=True)
    started_at, started = now(), time.monotonic()
    exit_code = 0
    if stage.packages and not smoke:
        exit_code = subprocess.run([str(ROOT / "pants"), "package", *stage.packages], cwd=ROOT).returncode
    if exit_code == 0:
        exit_code = subprocess.run(argv, cwd=ROOT, check=False).returncode
    duration = round(time.monotonic() - started, 1)
    print(f"=== {stage.name}: exit {exit_code} after {duration:.0f} s", flush=True)
    return {
        "name": stage.name,
        "argv": argv[1:],
        "started_at": started_at,
        "finished_at": now(),
        "duration_s": duration,
        "exit_code": exit_code,
        "load_average_before": load,
        "mem_available_gib_before": memory.get("MemAvailable"),
        "result_file": f"bench/results/{stage.name}.json",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks in order, record the run, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated stages (default: all, in order)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    parser.add_argument("--smoke", action="store_true", help="run each benchmark's --help only")
    parser.add_argument("--no-report", action="store_true", help="skip bench/report.py")
    args = parser.parse_args(argv)

    names = [name for name in args.only.split(",") if name] or [stage.name for stage in STAGES]
    unknown = sorted(set(names) - {stage.name for stage in STAGES})
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; choose from {[s.name for s in STAGES]}")
    stages = [stage for stage in STAGES if stage.name in names]
    if args.dry_run:
        for stage in stages:
            print(shlex.join(pants_run(stage.script, stage.args)))
        print(shlex.join(pants_run("bench/report.py", [])))
        return 0
    if os.environ.get("PEX_EXTRA_SYS_PATH") or os.environ.get("PANTS_CHROOT"):
        print("run_all.py drives ./pants itself: run it as `python3 bench/run_all.py`", file=sys.stderr)
        return 2
    missing = missing_services() if not args.smoke and any(s.services for s in stages) else []
    if missing:
        print(f"not reachable: {', '.join(missing)}. Start them: ./tickstream services up", file=sys.stderr)
        return 2

    total = sum(stage.minutes for stage in stages)
    print(f"benchmarks: {', '.join(s.name for s in stages)} (~{total:g} min plus Pants builds)", flush=True)
    run: dict[str, Any] = {"started_at": now(), "smoke": args.smoke, "machine": machine(), "stages": []}
    for stage in stages:
        run["stages"].append(run_stage(stage, args.smoke))
        if not args.smoke:  # written after every stage: an interrupted run still has its record
            RESULTS.mkdir(parents=True, exist_ok=True)
            RUN_FILE.write_text(json.dumps(run, indent=2) + "\n")
    run["finished_at"] = now()
    failed = [stage["name"] for stage in run["stages"] if stage["exit_code"] != 0]
    if args.smoke:
        print(f"\nsmoke: {len(stages) - len(failed)} passed, {len(failed)} failed {failed or ''}")
        return 1 if failed else 0
    RUN_FILE.write_text(json.dumps(run, indent=2) + "\n")
    if not args.no_report:
        report = subprocess.run(pants_run("bench/report.py", []), cwd=ROOT, check=False).returncode
        if report != 0:
            failed.append("report")
    print(f"\nfailed: {', '.join(failed)}" if failed else "\nall benchmarks passed", flush=True)
    print(f"results: {RESULTS}/ (REPORT.md, summary.json, chart.svg, run_all.json)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
