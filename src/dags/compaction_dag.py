"""
### Tickstream: hourly maintenance of the lake (`tickstream_compaction`)

One run per UTC hour (its **data interval**), scheduled when the hour is over:

1. **wait_until_closed** — a reschedule-mode sensor (no worker slot held while waiting, exponential back-off)
   that asks the compaction job whether the hour is closed for both tables (`--check-closed`: the streaming
   status in `_status/streaming.json` is past hour end + margin).
2. **compact_ticks**, **compact_bars_1m** — run the compaction job for the hour as a separate process in
   the Spark environment (the `src/python/compaction:bin` PEX, or `python -m compaction.job` in a venv
   that has it): Iceberg's `rewrite_data_files` of the hour's small files into sorted ones, then the table's
   maintenance (expire snapshots, rewrite manifests, remove orphan files). Retried with exponential
   back-off; idempotent (an already compacted hour is a no-op; a killed run left nothing committed, and
   the retry's maintenance deletes its files). The job's JSON report is the task's XCom.
3. **run_dbt** — `dbt build` of the analytics models for the interval: runs the analytics CLI (the
   `src/python/analytics:bin` PEX, or `python -m analytics.run`) as `<command> build --start <interval
   start> --end <interval end>`; incremental marts are keyed by partition, so a re-run is idempotent.

**Configuration** comes from the worker's environment only (deployment configuration, never from
Airflow Variables, which anyone with the UI's admin role could edit): `TICKSTREAM_COMPACTION_COMMAND`
(default `python -m compaction.job`), `TICKSTREAM_ANALYTICS_COMMAND` (default `python -m analytics.run`),
and the jobs' own settings (`TICKSTREAM_CATALOG_*`, `TICKSTREAM_S3_*`, `TICKSTREAM_COMPACTION_*`,
`TICKSTREAM_DBT_*`), which the jobs read from the environment they inherit.

**Backfill**: `catchup` is off (the start date is only the earliest hour allowed); backfill a range with
`airflow backfill create --dag-id tickstream_compaction --from-date ... --to-date ...`; every run touches
only its own hour. See docs/compaction.md.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, PokeReturnValue, dag, task

log = logging.getLogger(__name__)

DAG_ID = "tickstream_compaction"
TABLES = ("ticks", "bars_1m")
COMMAND = "TICKSTREAM_COMPACTION_COMMAND"
DEFAULT_COMMAND = "python -m compaction.job"
ANALYTICS_COMMAND = "TICKSTREAM_ANALYTICS_COMMAND"
DEFAULT_ANALYTICS_COMMAND = "python -m analytics.run"
EXIT_REFUSED = 3
JOB_TIMEOUT = timedelta(hours=1)
RETRY_DELAY_VARIABLE = "TICKSTREAM_COMPACTION_RETRY_DELAY_S"
DEFAULT_RETRY_DELAY = timedelta(minutes=2)
RETRY_DELAY = timedelta(
    seconds=float(os.environ.get(RETRY_DELAY_VARIABLE) or DEFAULT_RETRY_DELAY.total_seconds())
)
"""First retry delay of the compaction tasks (doubles up to 30 min): read when the DAG is parsed, because
Airflow needs it in the task's arguments."""


def command(name: str, default: str) -> list[str]:
    """The command line in environment variable `name` (deployment configuration), else `default`."""
    return shlex.split(os.environ.get(name) or default)


def hour_of(data_interval_start: datetime) -> tuple[str, str]:
    """(date, hour) of the UTC hour an interval starts in."""
    start = data_interval_start.astimezone(UTC)
    return start.strftime("%Y-%m-%d"), start.strftime("%H")


def run_command(command: list[str], label: str) -> subprocess.CompletedProcess[str]:
    """Run a job's command line (it inherits the worker's environment); log it and the end of its output."""
    log.info("running %s", shlex.join(command))
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT.total_seconds(),
        check=False,
    )
    for line in (done.stdout + done.stderr).splitlines()[-200:]:
        log.info("%s: %s", label, line)
    return done


def run_job(arguments: list[str]) -> tuple[int, dict[str, Any]]:
    """Run the compaction command with `arguments`; return its exit code and JSON report."""
    done = run_command(command(COMMAND, DEFAULT_COMMAND) + arguments, "job")
    reports = [line for line in done.stdout.splitlines() if line.startswith("{")]
    report: dict[str, Any] = json.loads(reports[-1]) if reports else {}
    return done.returncode, report


@task.sensor(
    mode="reschedule",
    poke_interval=120,
    exponential_backoff=True,
    max_wait=timedelta(minutes=20),
    timeout=timedelta(hours=12).total_seconds(),
)
def wait_until_closed(data_interval_start: datetime | None = None) -> PokeReturnValue:
    """Done when both tables' hour is closed; reschedules while open; fails on any other error."""
    assert data_interval_start is not None
    date, hour = hour_of(data_interval_start)
    code, report = run_job(["--check-closed", "--table", "all", "--date", date, "--hour", hour])
    if code == EXIT_REFUSED:
        log.info("not closed yet: %s", report.get("error"))
        return PokeReturnValue(is_done=False)
    if code != 0:
        raise RuntimeError(f"closedness check failed (exit {code}): {report.get('error', report)}")
    return PokeReturnValue(is_done=True, xcom_value=report.get("closed"))


@task(
    retries=4,
    retry_delay=RETRY_DELAY,
    retry_exponential_backoff=2.0,
    max_retry_delay=timedelta(minutes=30),
    execution_timeout=JOB_TIMEOUT + timedelta(minutes=5),
)
def compact(table: str, data_interval_start: datetime | None = None) -> dict[str, Any]:
    """Compact one table's hour; raise (and so retry) unless the job exits 0."""
    assert data_interval_start is not None
    date, hour = hour_of(data_interval_start)
    code, report = run_job(["--table", table, "--date", date, "--hour", hour])
    if code != 0:
        raise RuntimeError(
            f"compaction of {table} {date} {hour}h failed (exit {code}): {report.get('error') or report}"
        )
    return report


@task(
    retries=2,
    retry_delay=timedelta(minutes=5),
    retry_exponential_backoff=2.0,
    execution_timeout=JOB_TIMEOUT,
    max_active_tis_per_dag=1,  # one dbt process at a time: the incremental marts share one DuckDB file
)
def run_dbt(data_interval_start: datetime | None = None, data_interval_end: datetime | None = None) -> str:
    """`dbt build` of the analytics models for the interval, as a separate process (the analytics CLI)."""
    assert data_interval_start is not None and data_interval_end is not None
    analytics = [
        *command(ANALYTICS_COMMAND, DEFAULT_ANALYTICS_COMMAND),
        "build",
        "--start",
        data_interval_start.astimezone(UTC).isoformat(),
        "--end",
        data_interval_end.astimezone(UTC).isoformat(),
    ]
    done = run_command(analytics, "dbt")
    if done.returncode != 0:
        raise RuntimeError(
            f"dbt build for {data_interval_start}..{data_interval_end} failed (exit {done.returncode})"
        )
    return "built"


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=2,
    dagrun_timeout=timedelta(hours=14),
    default_args={"owner": "tickstream", "retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["tickstream", "lake", "compaction"],
    doc_md=__doc__,
)
def tickstream_compaction() -> None:
    """Wait for the hour to close, compact and maintain both tables, then build the hour's analytics."""
    closed = wait_until_closed()
    compacted = [compact.override(task_id=f"compact_{table}")(table=table) for table in TABLES]
    closed >> compacted >> run_dbt()


tickstream_compaction()
