"""What a table's Iceberg metadata says about its data files, without opening one (pyiceberg).

A snapshot's manifest list names its manifests; each manifest lists data files with their hour partition,
row count, size, column bounds and the snapshot that added them. Manifests are immutable, so `FileIndex`
reads each once per process: a refresh reads the table's metadata file, its manifest list and only the
manifests committed since (a streaming commit adds one). From that:

- `DataFile`s overlapping a time interval (the live edge reads just those with DuckDB),
- per hour partition: files, the commits that added them, rows, bytes, the newest value (`HourFiles`),
- the retained snapshots with operation `replace`, i.e. compactions (`Rewrite`).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pyiceberg.conversions import from_bytes
from pyiceberg.io import FileIO
from pyiceberg.manifest import ManifestContent, ManifestFile
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Operation
from pyiceberg.transforms import HourTransform
from pyiceberg.types import TimestamptzType

from dashboard.bars import from_us
from dashboard.errors import SourceUnavailable
from tickstream.lake import LakeTable

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def hour_ordinal(hour: datetime) -> int:
    """Iceberg's `hour` transform of an instant: hours since the epoch."""
    return int((hour - EPOCH).total_seconds() // 3600)


def hour_start(ordinal: int) -> datetime:
    """The UTC hour an `hour` transform value stands for."""
    return EPOCH + timedelta(hours=ordinal)


@dataclass(frozen=True)
class DataFile:
    """One live data file of a snapshot, as its manifest entry describes it."""

    path: str
    hour: int | None
    """Its partition: hours since the epoch of the partition column."""
    rows: int
    bytes: int
    added_by: int
    """The snapshot that added it."""
    lower_us: int | None
    upper_us: int | None
    """Bounds of the partition column in the file, µs since the epoch (None if not recorded)."""


@dataclass(frozen=True)
class HourFiles:
    """The data files of one hour partition of a table in its current snapshot."""

    table: str
    hour: datetime
    files: int
    commits: int
    """Snapshots that added the hour's live files: 1 after a compaction (or one write), else one per batch."""
    rows: int
    bytes: int
    newest: datetime | None
    """Largest value of the partition column in the hour (the files' upper bounds; None if not recorded)."""
    added_by: frozenset[int]


@dataclass(frozen=True)
class Rewrite:
    """A retained snapshot with operation `replace` (a compaction): when, and files removed and added."""

    at: datetime
    snapshot_id: int
    files_before: int
    files_after: int


@dataclass(frozen=True)
class TableFiles:
    """Files per hour (from some hour on) of a table, its whole hour range, and the retained compactions."""

    table: str
    hours: list[HourFiles]
    oldest_hour: datetime | None
    newest_hour: datetime | None
    rewrites: list[Rewrite]
    """Newest first. Snapshots expire (the streaming job keeps ~15 minutes), so older ones are gone."""


@dataclass(frozen=True)
class Snapshot:
    """The live data files of a table's current snapshot; `deletes` if it has delete files too."""

    files: list[DataFile]
    deletes: bool


class FileIndex:
    """Manifest entries by manifest path, per table: each manifest is read once (a few in parallel).

    Only the manifests of the newest snapshot read are kept, so memory follows the table's current size.
    """

    def __init__(self, threads: int = 8) -> None:
        """An empty index."""
        self._manifests: dict[str, dict[str, tuple[DataFile, ...]]] = {}
        self._lock = threading.Lock()
        self._threads = threads

    def snapshot(self, table: Table, spec: LakeTable) -> Snapshot:
        """The live data files of the table's current snapshot."""
        fields = table.spec().fields
        if len(fields) != 1 or not isinstance(fields[0].transform, HourTransform):
            raise SourceUnavailable(f"the {spec.name} table is not partitioned by hour as docs/lake.md says")
        current = table.current_snapshot()
        if current is None:
            return Snapshot([], False)
        manifests = current.manifests(table.io)
        data = [m for m in manifests if m.content == ManifestContent.DATA]
        field_id = table.schema().find_field(spec.partition_column).field_id
        with self._lock:
            known = dict(self._manifests.get(spec.name, {}))
        missing = [m for m in data if m.manifest_path not in known]
        if missing:
            with ThreadPoolExecutor(max_workers=min(self._threads, len(missing))) as pool:
                read = pool.map(lambda m: (m.manifest_path, _entries(m, table.io, field_id)), missing)
                known.update(read)
        kept = {m.manifest_path: known[m.manifest_path] for m in data}
        with self._lock:
            self._manifests[spec.name] = kept
        return Snapshot([f for m in data for f in kept[m.manifest_path]], len(data) < len(manifests))


def _entries(manifest: ManifestFile, io: FileIO, field_id: int) -> tuple[DataFile, ...]:
    files = []
    for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
        data = entry.data_file
        lower = (data.lower_bounds or {}).get(field_id)
        upper = (data.upper_bounds or {}).get(field_id)
        files.append(
            DataFile(
                path=data.file_path,
                hour=data.partition[0],
                rows=data.record_count,
                bytes=data.file_size_in_bytes,
                added_by=int(entry.snapshot_id or manifest.added_snapshot_id or 0),
                lower_us=int(from_bytes(TimestamptzType(), lower)) if lower is not None else None,
                upper_us=int(from_bytes(TimestamptzType(), upper)) if upper is not None else None,
            )
        )
    return tuple(files)


def overlapping(files: Sequence[DataFile], start_us: int, end_us: int) -> list[DataFile]:
    """Files that may hold a partition-column value in [start, end) (files without bounds: by their hour)."""
    first, last = start_us // 3_600_000_000, (end_us - 1) // 3_600_000_000

    def may_hold(f: DataFile) -> bool:
        if f.lower_us is not None and f.upper_us is not None:
            return f.upper_us >= start_us and f.lower_us < end_us
        return f.hour is None or first <= f.hour <= last

    return [f for f in files if may_hold(f)]


def rewrites(table: Table) -> list[Rewrite]:
    """The table's retained snapshots with operation `replace`, newest first."""
    found = [
        Rewrite(
            at=datetime.fromtimestamp(s.timestamp_ms / 1000, tz=UTC),
            snapshot_id=s.snapshot_id,
            files_before=int(s.summary.get("deleted-data-files") or 0),
            files_after=int(s.summary.get("added-data-files") or 0),
        )
        for s in table.metadata.snapshots
        if s.summary is not None and s.summary.operation == Operation.REPLACE
    ]
    return sorted(found, key=lambda r: r.at, reverse=True)


def table_files(name: str, files: Sequence[DataFile], since: datetime, found: list[Rewrite]) -> TableFiles:
    """Per hour partition from `since` on: files, commits that added them, rows, bytes, newest value."""
    by_hour: dict[int, list[DataFile]] = defaultdict(list)
    for f in files:
        if f.hour is not None:
            by_hour[f.hour].append(f)
    first = hour_ordinal(since)
    hours = []
    for ordinal, group in sorted(by_hour.items()):
        if ordinal < first:
            continue
        uppers = [f.upper_us for f in group]
        added_by = frozenset(f.added_by for f in group)
        hours.append(
            HourFiles(
                table=name,
                hour=hour_start(ordinal),
                files=len(group),
                commits=len(added_by),
                rows=sum(f.rows for f in group),
                bytes=sum(f.bytes for f in group),
                newest=from_us(max(u for u in uppers if u is not None)) if None not in uppers else None,
                added_by=added_by,
            )
        )
    ordinals = sorted(by_hour)
    return TableFiles(
        name,
        hours,
        hour_start(ordinals[0]) if ordinals else None,
        hour_start(ordinals[-1]) if ordinals else None,
        found,
    )
