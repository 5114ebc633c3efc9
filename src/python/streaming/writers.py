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

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from streaming.transforms import EVENT_TIME, TABLE, bars_1m, merged_spans, new_ticks, within
from tickstream.lake import QUARANTINE, TICKS, LakeTable
from tickstream.logs import get_logger
from tickstream.spark_iceberg import newest_snapshot_property, newest_snapshot_summary, snapshot_summaries

SNAPSHOT_QUERY_ID = "tickstream.query-id"
"""Snapshot summary property: the streaming query (checkpoint) that committed the snapshot."""
SNAPSHOT_BATCH_ID = "tickstream.batch-id"
"""Snapshot summary property: the micro-batch id that the snapshot commits."""
SNAPSHOT_KAFKA_OFFSETS = "tickstream.kafka-offsets"
"""Snapshot summary property of the ticks query's appends: per Kafka partition, the offset after the last
record committed to the lake (JSON); a job started without its checkpoint resumes there."""
SNAPSHOT_LATE = "tickstream.late-ticks"
"""Snapshot summary property of a ticks append: the batch's late ticks (duplicates included)."""
SNAPSHOT_LATE_HOURS = "tickstream.late-hours"
"""Snapshot summary property of a ticks append: the hours of its late ticks (JSON list of ISO instants), whose
bars need recomputing; a restarted job picks up those its predecessor had not corrected yet."""
MAX_SPANS = 64
"""Most event-time ranges the de-duplication reads stored ticks from (more are merged)."""
SNAPSHOT_BARS_UNTIL = "tickstream.bars-until"
"""Snapshot summary property of a bars append: the end of the minutes it covered (for people reading
the history; the updater reads the table's newest window_end)."""

log = get_logger("streaming.writers")


@dataclass(frozen=True)
class BatchOutput:
    """What one micro-batch committed: rows per table, quarantine reasons, late and duplicate ticks."""

    epoch_id: int
    rows: dict[str, int] = field(default_factory=dict)
    """Rows appended per table (for a table skipped as a replay: what the first attempt appended)."""
    records: dict[str, int] = field(default_factory=dict)
    """Kafka records of the batch routed to each table (before de-duplication)."""
    reasons: Counter[str] = field(default_factory=Counter)
    skipped: tuple[str, ...] = ()
    """Tables whose append this batch had already committed before a crash (replay, nothing written)."""
    write_ms: int = 0
    phases_ms: dict[str, int] = field(default_factory=dict)
    """Where the write time went: computing the batch, then each table's append."""
    max_event_time: datetime | None = None
    """The newest event time among the batch's valid ticks (None without ticks)."""
    max_arrival: datetime | None = None
    """The newest Kafka record timestamp among the batch's valid ticks (None without ticks)."""
    late: int = 0
    """Valid ticks (duplicates included) of a minute that ended by `late_before`: it may already have its
    bar."""
    late_hours: frozenset[datetime] = frozenset()
    """The hours those late ticks belong to: their bars are recomputed (`BarsUpdater.correct`)."""
    duplicates: int = 0
    """Valid ticks not appended because their key was in the batch twice or already in the table."""
    complete_until: datetime | None = None
    """Every minute before this is complete in the ticks table (set by the sink after the batch)."""

    def rows_of(self, table: str) -> int:
        """Rows of `table` in the batch (whether appended now or by the first attempt)."""
        return self.rows.get(table, 0)


def committed_offsets(spark: SparkSession, identifiers: Sequence[str]) -> dict[int, int]:
    """Per Kafka partition, the next offset after the records committed to any of the tables (from the
    newest snapshot of each that records them); empty if none does."""
    offsets: dict[int, int] = {}
    for identifier in identifiers:
        value = newest_snapshot_property(spark, identifier, SNAPSHOT_KAFKA_OFFSETS)
        for partition, offset in json.loads(value or "{}").items():
            offsets[int(partition)] = max(offset, offsets.get(int(partition), 0))
    return offsets


def uncorrected_late_hours(spark: SparkSession, ticks: str, bars: str) -> set[datetime]:
    """Hours that received late ticks after the bars table's last commit (from the ticks table's retained
    snapshots): a job that died before correcting them hands them to its successor this way."""
    bars_commits = snapshot_summaries(spark, bars)
    last_bars_ms = next((ms for ms, _ in bars_commits), 0)
    hours: set[datetime] = set()
    for committed_ms, summary in snapshot_summaries(spark, ticks):
        if committed_ms <= last_bars_ms:
            break
        hours.update(datetime.fromisoformat(h) for h in json.loads(summary.get(SNAPSHOT_LATE_HOURS, "[]")))
    return hours


@dataclass(frozen=True)
class BatchSummary:
    """One pass over a routed micro-batch: what the commit, the de-duplication and the status need."""

    rows: Counter[str]
    reasons: Counter[str]
    spans: list[tuple[datetime, datetime]]
    """Per hour of valid ticks: their earliest and newest event time (where stored duplicates can be)."""
    late: int
    """Valid ticks of a minute complete by `late_before`, duplicates included."""
    late_hours: frozenset[datetime]
    max_event_time: datetime | None
    max_arrival: datetime | None
    next_offsets: dict[int, int]
    """Per Kafka partition: the offset after the batch's last record."""

    @classmethod
    def of(cls, batch: DataFrame, late_before: datetime | None) -> BatchSummary:
        """Aggregate the batch once (grouped by table, reason, minute and Kafka partition) and collect it.

        A valid tick is late when its minute is complete (it ends by `late_before`), so its bar may already
        be written. Lateness is decided here from the minutes, not by a comparison in the query: a literal
        that changes every batch would give every batch's query new generated code, which the JVM then
        compiles again (measured: the JIT compiler was the job's largest CPU consumer, docs/streaming.md).
        """
        groups = (
            batch.groupBy(
                TABLE, "reason", F.date_trunc("minute", F.col(EVENT_TIME)).alias("minute"), "kafka_partition"
            )
            .agg(
                F.count(F.lit(1)).alias("count"),
                F.min(EVENT_TIME).alias("first"),
                F.max(EVENT_TIME).alias("newest"),
                F.max("kafka_ts").alias("arrived"),
                F.max("kafka_offset").alias("last_offset"),
            )
            .collect()
        )
        complete_before = floor_minute(late_before) if late_before is not None else None
        rows: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        spans: dict[datetime, tuple[datetime, datetime]] = {}
        late = 0
        late_hours: set[datetime] = set()
        next_offsets: dict[int, int] = {}
        for row in groups:
            rows[row[TABLE]] += row["count"]
            next_offsets[row["kafka_partition"]] = max(
                row["last_offset"] + 1, next_offsets.get(row["kafka_partition"], 0)
            )
            if row[TABLE] == QUARANTINE.name:
                reasons[row["reason"]] += row["count"]
                continue
            minute, first, newest = _utc(row["minute"]), _utc(row["first"]), _utc(row["newest"])
            hour = minute.replace(minute=0)
            known = spans.get(hour, (first, newest))
            spans[hour] = (min(known[0], first), max(known[1], newest))
            if complete_before is not None and minute < complete_before:
                late += row["count"]
                late_hours.add(hour)
        valid = [row for row in groups if row[TABLE] != QUARANTINE.name]
        return cls(
            rows,
            reasons,
            sorted(spans.values()),
            late,
            frozenset(late_hours),
            max((_utc(row["newest"]) for row in valid), default=None),
            max((_utc(row["arrived"]) for row in valid), default=None),
            next_offsets,
        )


@dataclass
class IcebergBatchSink:
    """Commits each micro-batch once: its new ticks to `ticks`, its rejected records to `quarantine`.

    Ticks are de-duplicated against the table itself (`transforms.new_ticks`, reading only the files whose
    event times overlap the batch's), so no tick is dropped for being late and none is stored twice.
    Every append records the Kafka offsets committed so far (`SNAPSHOT_KAFKA_OFFSETS`), from which a new
    checkpoint resumes (`committed_offsets`).
    """

    tables: Sequence[LakeTable]
    """The tables a batch is routed to (`TICKS` and `QUARANTINE`)."""
    identifier: Callable[[str], str]
    """Spark identifier (catalog.namespace.table) of a lake table name."""
    offsets: dict[int, int] = field(default_factory=dict)
    """Per Kafka partition, the offset after the last record committed (merged into every append)."""
    committed: dict[tuple[str, str], int] = field(default_factory=dict)
    """(query id, table) -> newest batch id this process committed; spares asking the table every batch."""

    def write(
        self, routed: DataFrame, query_id: str, epoch_id: int, late_before: datetime | None = None
    ) -> BatchOutput:
        """Commit one micro-batch: per table, skip it if already committed, else append with the batch ids.

        `late_before`: ticks of the minutes complete by this instant are counted late and their hours
        reported for bars corrections.
        """
        started = time.perf_counter()
        spark = routed.sparkSession
        batch = routed.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            summary = BatchSummary.of(batch, late_before)
            phases_ms = {"compute": round((time.perf_counter() - started) * 1000)}
            for partition, offset in summary.next_offsets.items():
                self.offsets[partition] = max(offset, self.offsets.get(partition, 0))
            written = dict(summary.rows)
            late = summary.late
            skipped = []
            for table in self.tables:
                if not summary.rows[table.name]:
                    continue
                identifier = self.identifier(table.name)
                committed = self._committed_summary(spark, identifier, table.name, query_id, epoch_id)
                if committed is not None:
                    log.info(
                        "batch_already_committed", table=table.name, batch_id=epoch_id, query_id=query_id
                    )
                    skipped.append(table.name)
                    # what the first attempt committed, as it recorded it
                    written[table.name] = int(committed.get("added-records", summary.rows[table.name]))
                    late = int(committed.get(SNAPSHOT_LATE, late))
                    continue
                appending = time.perf_counter()
                rows = batch.where(F.col(TABLE) == table.name).select(*table.columns)
                counted = Observation(f"{table.name}_{epoch_id}")
                if table.name == TICKS.name:
                    stored = spark.table(identifier).where(within(merged_spans(summary.spans, MAX_SPANS)))
                    rows = new_ticks(rows, stored)
                (
                    rows.observe(counted, F.count(F.lit(1)).alias("rows"))
                    .writeTo(identifier)
                    .option(f"snapshot-property.{SNAPSHOT_QUERY_ID}", query_id)
                    .option(f"snapshot-property.{SNAPSHOT_BATCH_ID}", str(epoch_id))
                    .option(f"snapshot-property.{SNAPSHOT_KAFKA_OFFSETS}", json.dumps(self.offsets))
                    .option(f"snapshot-property.{SNAPSHOT_LATE}", str(summary.late))
                    .option(
                        f"snapshot-property.{SNAPSHOT_LATE_HOURS}",
                        json.dumps(sorted(h.isoformat() for h in summary.late_hours)),
                    )
                    .append()
                )
                self.committed[(query_id, table.name)] = epoch_id
                written[table.name] = int(counted.get["rows"])
                phases_ms[table.name] = round((time.perf_counter() - appending) * 1000)
        finally:
            batch.unpersist()
        duplicates = summary.rows[TICKS.name] - written.get(TICKS.name, 0)
        return BatchOutput(
            epoch_id,
            written,
            dict(summary.rows),
            summary.reasons,
            tuple(skipped),
            round((time.perf_counter() - started) * 1000),
            phases_ms,
            summary.max_event_time,
            summary.max_arrival,
            late,
            summary.late_hours,
            duplicates,
        )

    def _committed_summary(
        self, spark: SparkSession, identifier: str, table: str, query_id: str, epoch_id: int
    ) -> dict[str, str] | None:
        """The summary of the snapshot in which `query_id` already committed batch `epoch_id` to the table
        (a replay after a crash), else None."""
        key = (query_id, table)
        last = self.committed.get(key)
        if last is not None and last < epoch_id:
            return None  # this process committed the batch before: the usual case, no lookup
        self.committed.pop(key, None)  # unknown until the append succeeds
        summary = newest_snapshot_summary(
            spark, identifier, {SNAPSHOT_QUERY_ID: query_id, SNAPSHOT_BATCH_ID: str(epoch_id)}
        )
        if summary is not None:
            self.committed[key] = epoch_id
        return summary


MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


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

    def correct(self, spark: SparkSession, hours: Iterable[datetime]) -> BarsOutput | None:
        """Recompute the bars of the given hours (hours that received late ticks) from the stored ticks, up to
        where the bars table ends, and replace those hours' bars in one commit; None if no hour has bars yet.

        Each hour is a partition of the bars table: the new bars replace the hour's partition whole
        (`overwritePartitions`), so a minute whose ticks arrived late is not left with its first bar.
        """
        if self.through is None:
            self.through = self.read_through(spark)
        through = self.through
        wanted = sorted(hour for hour in hours if through is not None and hour < through)
        if through is None or not wanted:
            return None
        started = time.perf_counter()
        spans = merged_spans(((hour, min(hour + HOUR, through)) for hour in wanted), MAX_SPANS)
        ticks = (
            spark.table(self.ticks)
            .where(within(spans))
            .where(
                F.date_trunc("hour", F.col(EVENT_TIME)).isin(wanted) & (F.col(EVENT_TIME) < F.lit(through))
            )
        )
        # one task: one file per hour (bars are few; several tasks would each write a file into every hour)
        bars = bars_1m(ticks).coalesce(1).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            rows = bars.count()
            if rows:
                bars.writeTo(self.bars).overwritePartitions()
        finally:
            bars.unpersist()
        return BarsOutput(
            wanted[0], min(wanted[-1] + HOUR, through), rows, round((time.perf_counter() - started) * 1000)
        )

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
