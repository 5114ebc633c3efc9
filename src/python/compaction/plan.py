"""Pure planning of compaction: which hours, and whether each is closed (no Spark, no I/O).

Everything here is a function of plain data (the status object, the hour), so it is unit-tested without
servers; `compaction.job` does the I/O around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tickstream.lake import LakeTable, hour_starts, lake_table

HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class HourPartition:
    """One hour of one table."""

    table: LakeTable
    start: datetime

    @classmethod
    def of(cls, table: str | LakeTable, date: str, hour: str) -> HourPartition:
        """From a date (YYYY-MM-DD) and an hour (0-23)."""
        start = datetime.strptime(f"{date} {int(hour):02d}", "%Y-%m-%d %H").replace(tzinfo=UTC)
        return cls(lake_table(table), start)

    @property
    def date(self) -> str:
        """The hour's UTC date, YYYY-MM-DD."""
        return self.start.strftime("%Y-%m-%d")

    @property
    def hour(self) -> str:
        """The hour of the day, zero-padded."""
        return self.start.strftime("%H")

    @property
    def ordinal(self) -> int:
        """Hours since 1970-01-01T00Z: the value of Iceberg's `hour` partition transform for this hour."""
        return int((self.start - EPOCH) // HOUR)

    @property
    def end(self) -> datetime:
        """End (exclusive) of the hour."""
        return self.start + HOUR

    def __str__(self) -> str:
        return f"{self.table.name}/{self.date}T{self.hour}"


def partitions(tables: Sequence[str], start: datetime, end: datetime) -> list[HourPartition]:
    """Every (table, hour) with start <= hour < end, hours in order, tables in the given order per hour."""
    return [HourPartition(lake_table(t), moment) for moment in hour_starts(start, end) for t in tables]


# --- closedness ----------------------------------------------------------------------------------------


def parse_timestamp(value: str) -> datetime:
    """An ISO-8601 timestamp as written by Spark / the status object ('...Z' or with an offset)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Closedness:
    """Whether an hour is closed, and why (the message is shown to operators as is)."""

    partition: HourPartition
    closed: bool
    reason: str
    watermark: str | None


def closedness(status: dict[str, Any], partition: HourPartition, margin: timedelta) -> Closedness:
    """Closed = the watermark of the streaming query writing the table is past hour end + margin.

    The entry of a table in `_status/streaming.json` has the table's name: for `ticks` the query's
    watermark (reported after the batch that used it was committed, so no tick of a closed hour can still be
    accepted), for `bars_1m` the end of the minutes whose bars are written. Compacting an hour that is not
    closed would be safe (Iceberg commits are atomic), only wasted: streaming would add small files again.
    """
    entry = (status.get("queries") or {}).get(partition.table.name) or {}
    watermark = entry.get("watermark")
    needed = partition.end + margin
    if not watermark:
        reason = (
            f"{partition} is not known to be closed: the streaming status has no watermark for query "
            f"{partition.table.name!r}; start the streaming job (or wait for its first batch)"
        )
        return Closedness(partition, False, reason, None)
    mark = parse_timestamp(str(watermark))
    if mark < needed:
        reason = (
            f"{partition} is still open: streaming watermark {mark.isoformat()} is before hour end + margin "
            f"{needed.isoformat()}; retry later (or lower TICKSTREAM_COMPACTION_CLOSED_MARGIN_SECONDS)"
        )
        return Closedness(partition, False, reason, str(watermark))
    return Closedness(partition, True, f"{partition} is closed (watermark {watermark})", str(watermark))
