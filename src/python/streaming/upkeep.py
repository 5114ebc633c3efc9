"""The streaming job's upkeep, run from the supervisor's loop beside the ticks query (never on its path): the
1-minute bars of completed minutes and of hours that received late ticks (`BarsSchedule`), and the expiry of
old snapshots (`SnapshotExpiry`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from pyspark.sql import SparkSession

from streaming.settings import StreamingSettings
from streaming.sink import LakeSink
from streaming.status import StatusBook
from streaming.supervisor import error_summary
from streaming.writers import BarsUpdater
from tickstream.lake import TABLES
from tickstream.logs import get_logger
from tickstream.settings import CatalogSettings
from tickstream.spark_iceberg import expire_snapshots

RETAIN_SNAPSHOTS = 10
"""Snapshots every table keeps whatever their age (the newest ones)."""
CORRECTION_SPACING_S = 5.0
"""Least time between two recomputations of the bars of hours that received late ticks."""

log = get_logger("streaming.job")


class BarsSchedule:
    """Keeps `bars_1m` up to date from the supervisor's loop: appends the bars of completed minutes at most
    every `bars_trigger_seconds`, and recomputes the bars of hours that received late ticks within
    `CORRECTION_SPACING_S` of their commit.

    Off the ticks query's path: a bars update (reading ticks back) never delays a commit. A failed update
    (S3 down) is logged and retried at the next round; the bars are caught up then.
    """

    def __init__(
        self,
        spark: SparkSession,
        bars: BarsUpdater,
        sink: LakeSink,
        book: StatusBook,
        every_s: float,
        correction_every_s: float = CORRECTION_SPACING_S,
    ) -> None:
        """Update `bars` up to `sink.complete_until`; report to `book`."""
        self.spark, self.bars, self.sink, self.book, self.every_s = spark, bars, sink, book, every_s
        self.correction_every_s = correction_every_s
        self._due = 0.0
        self._correction_due = 0.0
        self._reported: tuple[str, int] | None = None

    def maybe_run(self) -> None:
        """Correct the hours with late ticks if any are waiting, then append newly complete minutes if due."""
        complete_until = self.sink.complete_until
        if complete_until is None:
            return
        try:
            if time.monotonic() >= self._correction_due:
                self._correction_due = time.monotonic() + self.correction_every_s
                self.correct()
            if time.monotonic() >= self._due:
                self._due = time.monotonic() + self.every_s
                output = self.bars.update(self.spark, complete_until)
                if output is not None:
                    self.book.record_bars(output)
        except Exception as exc:
            log.warning("bars_update_failed", error=error_summary(exc))
            self.book.record_bars_failure(error_summary(exc))
            self._due = self._correction_due = time.monotonic()  # retry at the next round

    def correct(self) -> None:
        """Recompute the bars of the hours that received late ticks (given back if it fails), and report
        the last batch the bars now agree with (`bars_1m.corrected_through_batch` in the status)."""
        hours, through = self.sink.take_late_hours()
        if hours:
            try:
                corrected = self.bars.correct(self.spark, hours)
            except Exception:
                self.sink.give_back(hours)
                raise
            if corrected is not None:
                log.info(
                    "bars_corrected", hours=len(hours), rows=corrected.rows, duration_ms=corrected.write_ms
                )
                self.book.record_bars_correction(corrected, len(hours))
        if through is not None and through != self._reported:
            self.book.record_bars_consistent(*through)
            self._reported = through


class SnapshotExpiry:
    """Expires the lake tables' old snapshots every so often, so each commit's metadata stays small.

    Every append adds a snapshot to the table's metadata file, which every commit rewrites and every
    reader parses: at one commit per second an hour of snapshots is megabytes. Run from the supervisor's
    loop (not a batch), so a slow expiry never delays a commit.
    """

    def __init__(self, spark: SparkSession, catalog: CatalogSettings, settings: StreamingSettings) -> None:
        """Expire snapshots older than `settings.snapshot_retention_s`, every third of that."""
        self.spark = spark
        self.catalog = catalog
        self.retention = timedelta(seconds=settings.snapshot_retention_s)
        self._due = time.monotonic() + settings.snapshot_retention_s / 3

    def maybe_run(self) -> None:
        """Expire if due; an error is logged, not raised (the next round tries again)."""
        if time.monotonic() < self._due:
            return
        self._due = time.monotonic() + self.retention.total_seconds() / 3
        older_than = datetime.now(UTC) - self.retention
        for table in TABLES:
            try:
                counts = expire_snapshots(self.spark, self.catalog, table, older_than, RETAIN_SNAPSHOTS)
                log.info("snapshots_expired", table=table, **counts)
            except Exception as exc:  # e.g. S3 down: the stream's own restart logic handles outages
                log.warning("snapshot_expiry_failed", table=table, error=error_summary(exc))
