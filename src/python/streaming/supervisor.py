"""The streaming job's supervisor: runs the query until stopped, restarts it with back-off when it fails, and
runs the upkeep (bars updates, snapshot expiry) between its checks."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Protocol

from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from streaming.settings import StreamingSettings
from tickstream.lake import TICKS
from tickstream.logs import get_logger

SUPERVISE_POLL_S = 0.5
"""How often the supervisor looks at the queries."""

log = get_logger("streaming.job")


class Upkeep(Protocol):
    """Work the supervisor's loop does beside the query (bars updates, snapshot expiry)."""

    def maybe_run(self) -> None:
        """Do the work if it is due; never raise."""


class StopFlag:
    """Set by SIGINT/SIGTERM (or a deadline); the main loop then stops the queries gracefully."""

    def __init__(self) -> None:
        """Not set."""
        self.reason: str | None = None

    def install(self) -> None:
        """Turn SIGINT and SIGTERM into a graceful stop."""

        def handle(signum: int, frame: FrameType | None) -> None:
            self.reason = signal.Signals(signum).name

        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)


def error_summary(error: object) -> str | None:
    """The telling line of a query's exception: the last line of a Python traceback, else the first line."""
    lines = [line.strip() for line in str(error or "").splitlines() if line.strip()]
    if not lines:
        return None
    return lines[-1][:500] if "Traceback" in lines[0] else lines[0][:500]


def restart_delay_s(failures: int, first_s: float, max_s: float) -> float:
    """Back-off before restarting a query that failed `failures` times in a row: doubling, capped."""
    return float(min(max_s, first_s * 2 ** max(0, failures - 1)))


def supervise(
    spark: SparkSession,
    start: Callable[[], StreamingQuery],
    stop: StopFlag,
    deadline: float | None,
    settings: StreamingSettings,
    upkeep: Sequence[Upkeep] = (),
) -> int:
    """Run the query until a stop is requested (exit code 0); restart it from its checkpoint if it fails.

    The query fails when Kafka or the lake is unreachable (a restart, a network cut) or a batch breaks; it
    is restarted after a doubling back-off (`restart_delay_s`), so the job recovers on its own once the
    outage ends, and the failed batch is replayed (and skipped where it had been committed). A query that
    fails `max_restarts` times in a row (if set) ends the job with exit code 1. Between checks, while the
    query runs, the loop runs the upkeep (bars updates, snapshot expiry) in the low-priority scheduler pool.
    """
    query = start()
    failures = 0
    next_start: float | None = None
    code = 0
    while stop.reason is None:
        if query.isActive:
            if query.lastProgress is not None and query.lastProgress.get("numInputRows", 0) > 0:
                failures = 0  # it works again
            for task in upkeep:
                task.maybe_run()
        elif next_start is None:
            failures += 1
            delay = restart_delay_s(failures, settings.restart_delay_s, settings.restart_max_delay_s)
            log.error(
                "query_failed",
                query=query.name,
                error=error_summary(query.exception()),
                consecutive_failures=failures,
                restart_in_s=delay,
            )
            if settings.max_restarts is not None and failures > settings.max_restarts:
                stop.reason = f"query {query.name} failed {failures} times in a row"
                code = 1
                break
            next_start = time.monotonic() + delay
        elif time.monotonic() >= next_start:
            next_start = None
            try:
                query = start()
                log.info("query_restarted", query=query.name)
            except Exception as exc:  # e.g. the checkpoint store is unreachable too: try again later
                log.error("query_restart_failed", query=TICKS.name, error=str(exc).splitlines()[0])
                next_start = time.monotonic() + settings.restart_max_delay_s
        if deadline is not None and time.monotonic() >= deadline:
            stop.reason = "run_seconds elapsed"
        time.sleep(SUPERVISE_POLL_S)
    for active in spark.streams.active:
        try:
            active.stop()
        except StreamingQueryException as exc:
            log.warning("query_stop_failed", error=str(exc).splitlines()[0])
    spark.stop()
    log.info("stopped", reason=stop.reason, exit_code=code)
    return code
