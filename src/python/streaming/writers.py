"""Commits to the lake's Iceberg tables: each micro-batch exactly once, and the bars of complete minutes.

The ticks query writes two tables per micro-batch (accepted ticks and quarantined records) from
`foreachBatch`, one Iceberg append each. Every append carries the query id and the batch id as snapshot
properties. Spark re-runs the last batch after a crash (same batch id, same offsets, same state, so the
same rows); before appending, `IcebergBatchSink` asks the table for the newest batch id this query
committed to it and skips the append if the batch is already there. Each table is checked on its own, so a
crash between the two appends of a batch commits the second one on the replay and skips the first.

Iceberg commits are atomic swaps in the catalog: a reader sees the whole append or nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming.iceberg import newest_snapshot_property
from streaming.transforms import EVENT_TIME, TABLE, bars_1m
from tickstream.lake import QUARANTINE, LakeTable
from tickstream.logs import get_logger

SNAPSHOT_QUERY_ID = "tickstream.query-id"
"""Snapshot summary property: the streaming query (checkpoint) that committed the snapshot."""
SNAPSHOT_BATCH_ID = "tickstream.batch-id"
"""Snapshot summary property: the micro-batch id that the snapshot commits."""
SNAPSHOT_BARS_UNTIL = "tickstream.bars-until"
"""Snapshot summary property of a bars append: the end of the minutes it covered (for people reading
the history; the updater reads the table's newest window_end)."""

log = get_logger("streaming.writers")


@dataclass(frozen=True)
class BatchOutput:
    """What one micro-batch committed: rows per table, quarantine reasons, tables skipped as replays."""

    epoch_id: int
    rows: dict[str, int] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)
    skipped: tuple[str, ...] = ()
    """Tables whose append this batch had already committed before a crash (replay, nothing written)."""
    write_ms: int = 0
    phases_ms: dict[str, int] = field(default_factory=dict)
    """Where the write time went: computing the batch, then each table's append."""
    max_event_time: datetime | None = None
    """The newest event time among the batch's accepted ticks (None without ticks)."""

    def rows_of(self, table: str) -> int:
        """Rows of `table` in the batch (whether appended now or by the first attempt)."""
        return self.rows.get(table, 0)


def last_committed_batch(spark: SparkSession, identifier: str, query_id: str) -> int | None:
    """The newest batch id that `query_id` committed to a table, or None (compaction's snapshots are stepped
    over)."""
    value = newest_snapshot_property(spark, identifier, SNAPSHOT_BATCH_ID, {SNAPSHOT_QUERY_ID: query_id})
    return None if value is None else int(value)


@dataclass
class IcebergBatchSink:
    """Appends each lake table's rows of a routed micro-batch (`transforms.route_*_batch`) exactly once."""

    tables: Sequence[LakeTable]
    identifier: Callable[[str], str]
    """Spark identifier (catalog.namespace.table) of a lake table name."""
    committed: dict[tuple[str, str], int] = field(default_factory=dict)
    """(query id, table) -> newest batch id this process committed; spares asking the table every batch."""

    def write(self, routed: DataFrame, query_id: str, epoch_id: int) -> BatchOutput:
        """Commit one micro-batch: per table, skip it if already committed, else append with the batch ids."""
        started = time.perf_counter()
        spark = routed.sparkSession
        batch = routed.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            counts = (
                batch.groupBy(TABLE, "reason")
                .agg(F.count(F.lit(1)).alias("count"), F.max(EVENT_TIME).alias("newest"))
                .collect()
            )
            phases_ms = {"compute": round((time.perf_counter() - started) * 1000)}
            rows: Counter[str] = Counter()
            reasons: Counter[str] = Counter()
            newest = max((_utc(row["newest"]) for row in counts if row["newest"] is not None), default=None)
            for row in counts:
                rows[row[TABLE]] += row["count"]
                if row[TABLE] == QUARANTINE.name and row["reason"] is not None:
                    reasons[row["reason"]] += row["count"]
            skipped = []
            for table in self.tables:
                if not rows[table.name]:
                    continue
                identifier = self.identifier(table.name)
                key = (query_id, table.name)
                last = self.committed.get(key)
                if last is None or last >= epoch_id:
                    last = last_committed_batch(spark, identifier, query_id)
                if last is not None and last >= epoch_id:
                    log.info(
                        "batch_already_committed", table=table.name, batch_id=epoch_id, query_id=query_id
                    )
                    skipped.append(table.name)
                    self.committed[key] = last
                    continue
                self.committed.pop(key, None)  # unknown until the append below succeeds
                appending = time.perf_counter()
                (
                    batch.where(F.col(TABLE) == table.name)
                    .select(*table.columns)
                    .writeTo(identifier)
                    .option(f"snapshot-property.{SNAPSHOT_QUERY_ID}", query_id)
                    .option(f"snapshot-property.{SNAPSHOT_BATCH_ID}", str(epoch_id))
                    .append()
                )
                self.committed[key] = epoch_id
                phases_ms[table.name] = round((time.perf_counter() - appending) * 1000)
        finally:
            batch.unpersist()
        write_ms = round((time.perf_counter() - started) * 1000)
        return BatchOutput(epoch_id, dict(rows), reasons, tuple(skipped), write_ms, phases_ms, newest)


MINUTE = timedelta(minutes=1)


def floor_minute(moment: datetime) -> datetime:
    """The start of the UTC minute holding `moment`."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


@dataclass(frozen=True)
class BarsOutput:
    """One update of the bars table: the minutes [start, end) it covered and the bars it appended."""

    start: datetime
    end: datetime
    rows: int
    write_ms: int


@dataclass
class BarsUpdater:
    """Appends the 1-minute bars of every minute the ticks table holds completely, each minute once.

    A minute is complete when the ticks query's watermark has passed its end: no tick of it can be accepted
    any more. The bars of [through, until) are computed from the committed ticks (`transforms.bars_1m`, the
    same function as rebuilds) and appended in one commit. `through` is read back from the bars table
    itself: the newest `window_end` (a minute in [that, until) without a bar had no tick), so a crash
    between the append and the next update neither repeats nor skips a minute.
    """

    ticks: str
    bars: str
    """Spark identifiers of the ticks and bars tables."""
    through: datetime | None = None
    """Every complete minute before this has its bars (None: not read from the table yet)."""

    def read_through(self, spark: SparkSession) -> datetime | None:
        """Where the bars table ends (the newest window_end), else the first tick's minute, else None.

        Read from the tables' file statistics (Iceberg's `files` metadata table): no data file is opened.
        """
        newest = _bound(spark, self.bars, "window_end", "upper_bound", F.max)
        if newest is not None:
            return newest
        first = _bound(spark, self.ticks, EVENT_TIME, "lower_bound", F.min)
        return floor_minute(first) if first is not None else None

    def update(self, spark: SparkSession, complete_until: datetime) -> BarsOutput | None:
        """Append the bars of the complete minutes not yet in the bars table; None if there are none."""
        until = floor_minute(complete_until)
        if self.through is None:
            self.through = self.read_through(spark)
        if self.through is None or until <= self.through:
            return None
        started = time.perf_counter()
        start = self.through
        ticks = spark.table(self.ticks).where((F.col(EVENT_TIME) >= start) & (F.col(EVENT_TIME) < until))
        bars = bars_1m(ticks).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            rows = bars.count()
            if rows:
                bars.writeTo(self.bars).option(
                    f"snapshot-property.{SNAPSHOT_BARS_UNTIL}", until.isoformat()
                ).append()
        except Exception:
            self.through = None  # unknown whether the append landed: read it back next time
            raise
        finally:
            bars.unpersist()
        self.through = until
        return BarsOutput(start, until, rows, round((time.perf_counter() - started) * 1000))


def _bound(
    spark: SparkSession, table: str, column: str, bound: str, pick: Callable[..., Column]
) -> datetime | None:
    """The min or max of a column's lower or upper bounds over a table's live data files (None if empty)."""
    files = spark.table(f"{table}.files")
    value = files.agg(pick(F.col(f"readable_metrics.{column}.{bound}"))).collect()[0][0]
    return None if value is None else _utc(value)


def _utc(moment: datetime) -> datetime:
    """A timestamp collected from Spark (naive in the session's UTC zone, or aware) as an aware UTC one."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
