"""Pure planning of compaction: which hours, closed or not, what to rewrite and delete (no Spark, no I/O).

Everything here is a function of plain data (the status object, the committed view of an hour, listings),
so it is unit-tested without servers; `compaction.job` does the I/O around it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from tickstream.lake import (
    CommittedHour,
    LakeObject,
    Manifest,
    TableSpec,
    compacted_dir,
    compacted_hour_dir,
    hour_starts,
    table_spec,
)

PLAN_VERSION = "1"
"""Part of every run id: bump when the output of the same inputs changes (layout, sort, encoding)."""
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class HourPartition:
    """One hour of one table."""

    spec: TableSpec
    start: datetime

    @classmethod
    def of(cls, table: str | TableSpec, date: str, hour: str) -> HourPartition:
        """From the path values (date=YYYY-MM-DD, hour=HH)."""
        start = datetime.strptime(f"{date} {int(hour):02d}", "%Y-%m-%d %H").replace(tzinfo=UTC)
        return cls(table_spec(table), start)

    @property
    def date(self) -> str:
        """The `date=` path value."""
        return self.start.strftime("%Y-%m-%d")

    @property
    def hour(self) -> str:
        """The `hour=` path value (zero-padded)."""
        return self.start.strftime("%H")

    @property
    def end(self) -> datetime:
        """End (exclusive) of the hour."""
        return self.start + HOUR

    def __str__(self) -> str:
        return f"{self.spec.name}/date={self.date}/hour={self.hour}"


def partitions(tables: Sequence[str], start: datetime, end: datetime) -> list[HourPartition]:
    """Every (table, hour) with start <= hour < end, hours in order, tables in the given order per hour."""
    return [HourPartition(table_spec(t), moment) for moment in hour_starts(start, end) for t in tables]


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

    The query of a table has the table's name in `_status/streaming.json`; its watermark is reported after
    the batch that used it was written, so no object with rows of a closed hour can still appear (a tick
    that old is dropped as late), unless the streaming job is restarted from an older checkpoint.
    """
    entry = (status.get("queries") or {}).get(partition.spec.name) or {}
    watermark = entry.get("watermark")
    needed = partition.end + margin
    if not watermark:
        reason = (
            f"{partition} is not known to be closed: the streaming status has no watermark for query "
            f"{partition.spec.name!r}; start the streaming job (or wait for its first batch)"
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


# --- what to rewrite -----------------------------------------------------------------------------------

Action = Literal["compact", "noop", "empty"]


@dataclass(frozen=True)
class HourPlan:
    """What one run does to one hour."""

    partition: HourPartition
    action: Action
    inputs: tuple[LakeObject, ...]
    replaced: tuple[str, ...]
    run_id: str
    files: int
    previous: Manifest | None

    @property
    def input_bytes(self) -> int:
        """Bytes of every input object."""
        return sum(o.bytes for o in self.inputs)

    @property
    def output_dir(self) -> str:
        """Key prefix of this run's compacted objects."""
        return compacted_dir(self.partition.spec, self.partition.date, self.partition.hour, self.run_id)


def run_id_for(inputs: Iterable[LakeObject], target_bytes: int) -> str:
    """A run id that is a function of the inputs and the output layout only.

    A re-run after a crash recomputes the same id and overwrites the same objects, so a half-written run
    never leaves a second copy next to the finished one.
    """
    digest = hashlib.sha256(f"v{PLAN_VERSION}|{target_bytes}".encode())
    for item in sorted(inputs, key=lambda o: o.key):
        digest.update(f"\n{item.key}|{item.bytes}".encode())
    return "r" + digest.hexdigest()[:16]


def output_files(input_bytes: int, target_bytes: int) -> int:
    """Number of compacted objects: input bytes / target, at least one.

    Sorted, zstd-compressed large objects are smaller than the sum of the small ones, so objects end up
    somewhat below the target: never above it by more than the key-range skew.
    """
    return max(1, math.ceil(input_bytes / target_bytes))


def plan_hour(partition: HourPartition, committed: CommittedHour, target_bytes: int) -> HourPlan:
    """Decide what to do with one hour, from its committed view (`tickstream.lake.committed_hour`).

    * no manifest, no streaming objects: `empty`;
    * a manifest and no streaming objects outside it: `noop` (already compacted);
    * otherwise `compact` every committed object (the manifest's objects plus streaming objects not yet
      folded in); the new manifest replaces the union of the old one's `replaced` and those objects.
    """
    manifest = committed.manifest
    if manifest is None and not committed.stream:
        return HourPlan(partition, "empty", (), (), "", 0, None)
    if manifest is not None and not committed.stream:
        return HourPlan(partition, "noop", committed.objects, manifest.replaced, manifest.run_id, 0, manifest)
    inputs = committed.objects
    replaced = tuple(sorted(set(manifest.replaced if manifest else ()) | {o.key for o in committed.stream}))
    input_bytes = sum(o.bytes for o in inputs)
    return HourPlan(
        partition,
        "compact",
        inputs,
        replaced,
        run_id_for(inputs, target_bytes),
        output_files(input_bytes, target_bytes),
        manifest,
    )


# --- verification --------------------------------------------------------------------------------------


class VerificationError(RuntimeError):
    """The compacted objects do not hold exactly the rows of the objects they would replace."""


def verify(
    partition: HourPartition, before: dict[str, str], after: dict[str, str], written_rows: int
) -> None:
    """Raise VerificationError unless every checksum matches and the writers' row counts add up."""
    problems = [
        f"{name}: before {before.get(name)!r}, after {after.get(name)!r}"
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]
    if str(written_rows) != before.get("rows"):
        problems.append(f"rows reported by the writers: {written_rows}, expected {before.get('rows')}")
    if problems:
        raise VerificationError(
            f"{partition}: compacted output differs from its input: " + "; ".join(problems)
        )


# --- garbage collection --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    """An object found by a listing, with its last modification time."""

    key: str
    bytes: int
    modified: datetime


@dataclass(frozen=True)
class Garbage:
    """Objects of one hour that no reader needs any more."""

    replaced_stream: tuple[str, ...]
    superseded: tuple[str, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """Everything to delete."""
        return self.replaced_stream + self.superseded


def garbage(
    partition: HourPartition,
    manifest: Manifest | None,
    stream: Sequence[Listed],
    compacted: Sequence[Listed],
    now: datetime,
    grace: timedelta,
) -> Garbage:
    """What may be deleted now, keeping everything a reader may still use.

    * streaming objects listed as replaced by the current manifest, once it is older than `grace` (a
      reader that listed the hour before the switch may still read them until then);
    * compacted objects not in the current manifest (superseded runs, runs that crashed or failed
      verification) once both the manifest and the object are older than `grace` (a reader may still
      follow the previous manifest; a run may still be writing). Without a manifest, crashed runs' objects
      older than `grace` go.
    """
    compacted_prefix = compacted_hour_dir(partition.spec, partition.date, partition.hour) + "/"
    if manifest is None:
        orphans = tuple(
            c.key for c in compacted if c.key.startswith(compacted_prefix) and now - c.modified >= grace
        )
        return Garbage((), orphans)
    if now - parse_timestamp(manifest.created_at) < grace:
        return Garbage((), ())
    replaced = set(manifest.replaced)
    live = {o.key for o in manifest.objects}
    return Garbage(
        tuple(s.key for s in stream if s.key in replaced),
        tuple(
            c.key
            for c in compacted
            if c.key.startswith(compacted_prefix) and c.key not in live and now - c.modified >= grace
        ),
    )
