"""The lake layout contract in code: table prefixes, columns, object names (see docs/lake.md).

Pure Python plus pyarrow: the streaming job, the compaction job, the dashboard and tests all name objects
through this module, so a path is never spelled twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tickstream.settings import S3Settings

STATUS_KEY = "_status/streaming.json"
"""Object holding the streaming job's per-query progress (see `streaming.status`)."""
COMPACTED_PREFIX = "compacted"
"""Reserved for the compaction job: compacted/<table>/date=/hour=/<run_id>/*.parquet."""
MANIFESTS_PREFIX = "_manifests/compacted"
"""Reserved for the compaction job: _manifests/compacted/<table>/date=D/hour=H.json."""
PARQUET_COMPRESSION = "zstd"


@dataclass(frozen=True)
class TableSpec:
    """One table of the lake: where its objects live and how rows are ordered inside an object."""

    name: str
    prefix: str
    sort_keys: tuple[str, ...]


TICKS = TableSpec("ticks", "stream/ticks", ("symbol", "ts_us", "seq"))
BARS_1M = TableSpec("bars_1m", "stream/bars_1m", ("symbol", "window_start"))
QUARANTINE = TableSpec("quarantine", "quarantine", ("kafka_partition", "kafka_offset"))
BAR_PARTIALS = TableSpec("bar_partials", "stream/_bar_partials", ("symbol", "window_start"))
"""Internal: per micro-batch partial bars, the bars query's input; deleted once the bars query read them."""

# Arrow schemas of the ticks and bars_1m objects (docs/lake.md): for non-Spark writers and test lakes.
TICKS_ARROW_SCHEMA = pa.schema(
    [
        ("schema_version", pa.int32()),
        ("symbol", pa.string()),
        ("seq", pa.int64()),
        ("ts_us", pa.int64()),
        ("price", pa.float64()),
        ("bid", pa.float64()),
        ("ask", pa.float64()),
        ("size", pa.int64()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
    ]
)
BARS_1M_ARROW_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("window_start", pa.timestamp("us", tz="UTC")),
        ("window_end", pa.timestamp("us", tz="UTC")),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.int64()),
        ("vwap", pa.float64()),
        ("trade_count", pa.int64()),
    ]
)
QUERY_ID = "8a04952a-0000-4000-8000-000000000000"
TABLES: dict[str, TableSpec] = {spec.name: spec for spec in (TICKS, BARS_1M, QUARANTINE, BAR_PARTIALS)}

_OBJECT_NAME = re.compile(r"^part-(?P<query>[0-9a-f]{8})-e(?P<epoch>\d{12})(-p(?P<task>\d{3}))?\.parquet$")


def partition_dir(spec: TableSpec, date: str, hour: str) -> str:
    """Key prefix of one hour of a table, e.g. stream/ticks/date=2024-03-01/hour=09."""
    return f"{spec.prefix}/date={date}/hour={hour}"


def object_name(query_id: str, epoch_id: int, task: int | None = None) -> str:
    """File name of a micro-batch's object in one hour partition: part-<query>-e<epoch>[-p<task>].parquet.

    Derived only from the streaming query's id (stable across restarts from the same checkpoint), the
    epoch (batch) id and the index of the Spark partition that wrote it (the partitioning of a stateful
    query's output is fixed by its checkpoint), so a replayed batch overwrites exactly the objects its
    first attempt wrote.
    """
    if epoch_id < 0:
        raise ValueError(f"epoch_id must be >= 0, got {epoch_id}")
    if task is not None and not 0 <= task <= 999:
        raise ValueError(f"task must be in [0, 999], got {task}")
    short_id = query_id.replace("-", "")[:8].lower()
    if not re.fullmatch(r"[0-9a-f]{8}", short_id):
        raise ValueError(f"query_id must be a UUID, got {query_id!r}")
    suffix = "" if task is None else f"-p{task:03d}"
    return f"part-{short_id}-e{epoch_id:012d}{suffix}.parquet"


def object_key(
    spec: TableSpec, date: str, hour: str, query_id: str, epoch_id: int, task: int | None = None
) -> str:
    """Full key (without bucket) of a micro-batch's object for one hour of a table."""
    return f"{partition_dir(spec, date, hour)}/{object_name(query_id, epoch_id, task)}"


def epoch_of(key: str) -> int | None:
    """The epoch id encoded in an object key written by the streaming job, or None for other keys."""
    match = _OBJECT_NAME.match(key.rsplit("/", 1)[-1])
    return int(match["epoch"]) if match else None


def date_hour(ts_us: int) -> tuple[str, str]:
    """The (date, hour) partition values, in UTC, of an epoch-microsecond timestamp."""
    moment = datetime.fromtimestamp(ts_us / 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%H")


@dataclass(frozen=True)
class LakeLocation:
    """Where the lake is: `s3://bucket[/prefix]` (with S3 settings) or a local directory (tests).

    Picklable, so Spark ships it to executors, which build their own pyarrow filesystem from it.
    """

    root: str
    s3: S3Settings | None = None

    @classmethod
    def for_bucket(cls, s3: S3Settings) -> LakeLocation:
        """The lake in the configured bucket."""
        return cls(root=f"s3://{s3.bucket}", s3=s3)

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem and the base path inside it that keys are appended to."""
        parsed = urlparse(self.root)
        if parsed.scheme == "s3":
            if self.s3 is None:
                raise ValueError(f"{self.root} needs S3 settings")
            return s3_filesystem(self.s3), f"{parsed.netloc}{parsed.path}".rstrip("/")
        if parsed.scheme in ("", "file"):
            return pafs.LocalFileSystem(), parsed.path.rstrip("/") or "/"
        raise ValueError(f"unsupported lake root {self.root!r}: use s3://bucket or a local path")

    def path(self, key: str) -> str:
        """Path of `key` inside `filesystem()`."""
        return f"{self.filesystem()[1]}/{key}"

    def hadoop_url(self, key: str) -> str:
        """URL of `key` for Spark's own readers (Hadoop's s3a client; local: the file path)."""
        parsed = urlparse(self.root)
        if parsed.scheme == "s3":
            return f"s3a://{parsed.netloc}{parsed.path.rstrip('/')}/{key}"
        return f"{self.filesystem()[1]}/{key}"

    def url(self, key: str) -> str:
        """URL of `key` for readers given whole URLs (DuckDB: s3://bucket/key; local: the file path)."""
        return f"{self.root.rstrip('/')}/{key}"


def parquet_bytes(rows: pa.Table) -> pa.Buffer:
    """Rows encoded in memory as one lake Parquet object (PARQUET_COMPRESSION), ready for put_object."""
    sink = pa.BufferOutputStream()
    pq.write_table(rows, sink, compression=PARQUET_COMPRESSION)
    return sink.getvalue()


def put_object(filesystem: pafs.FileSystem, path: str, payload: bytes | pa.Buffer) -> None:
    """Write one whole object atomically: a single S3 PUT (or multipart completion); locally a rename."""
    if isinstance(filesystem, pafs.LocalFileSystem):
        parent = path.rsplit("/", 1)[0]
        filesystem.create_dir(parent, recursive=True)
        temporary = f"{parent}/.{path.rsplit('/', 1)[1]}.tmp"
        with filesystem.open_output_stream(temporary) as out:
            out.write(payload)
        filesystem.move(temporary, path)
        return
    with filesystem.open_output_stream(path) as out:
        out.write(payload)


def read_status(location: LakeLocation, attempts: int = 5) -> dict[str, Any]:
    """The streaming job's status object (`STATUS_KEY`), or {} if absent.

    pyarrow reads an object with a HEAD then ranged GETs, so a read racing the job's next PUT can mix two
    versions; such a read does not parse and is retried (the last failure is raised).
    """
    filesystem, base = location.filesystem()
    for attempt in range(attempts):
        try:
            with filesystem.open_input_stream(f"{base}/{STATUS_KEY}") as stream:
                loaded = json.loads(stream.read())
            return loaded if isinstance(loaded, dict) else {}
        except FileNotFoundError:
            return {}
        except ValueError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
    return {}


def s3_filesystem(s3: S3Settings) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem for the configured endpoint, keys and addressing style."""
    endpoint = urlparse(s3.endpoint_url) if s3.endpoint_url else None
    return pafs.S3FileSystem(
        access_key=s3.access_key_id,
        secret_key=s3.secret_access_key,
        region=s3.region,
        endpoint_override=endpoint.netloc if endpoint else None,
        scheme=endpoint.scheme if endpoint else "https",
        force_virtual_addressing=not s3.path_style,
        allow_bucket_creation=False,
        allow_bucket_deletion=False,
    )


# --- compacted hours: manifests and the reader rule ------------------------------------------------------

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class LakeObject:
    """One Parquet object of the lake: its key (relative to the lake root), size and, if known, row count."""

    key: str
    bytes: int
    rows: int | None = None


@dataclass(frozen=True)
class Manifest:
    """The commit record of a compacted hour: `_manifests/compacted/<table>/date=D/hour=H.json`.

    `replaced` is cumulative: every streaming key whose rows are inside `objects` (also those folded in by
    earlier runs of the hour), so a reader adds exactly the streaming objects that are not in it.
    """

    table: str
    date: str
    hour: str
    run_id: str
    created_at: str
    objects: tuple[LakeObject, ...]
    rows: int
    checksum: dict[str, str]
    replaced: tuple[str, ...]
    version: int = MANIFEST_VERSION

    @property
    def replaced_fingerprint(self) -> str:
        """sha256 of the sorted replaced keys (for logs and quick comparison)."""
        return keys_fingerprint(self.replaced)

    def to_json(self) -> bytes:
        """The manifest object's bytes (stable key order)."""
        body = {
            "version": self.version,
            "table": self.table,
            "date": self.date,
            "hour": self.hour,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "rows": self.rows,
            "checksum": dict(sorted(self.checksum.items())),
            "objects": [{"key": o.key, "bytes": o.bytes, "rows": o.rows} for o in self.objects],
            "replaced_fingerprint": self.replaced_fingerprint,
            "replaced": sorted(self.replaced),
        }
        return json.dumps(body, indent=1).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> Manifest:
        """Parse a manifest object; ValueError if it is not one this code understands."""
        body = json.loads(payload)
        if not isinstance(body, dict) or body.get("version") != MANIFEST_VERSION:
            raise ValueError(f"not a version-{MANIFEST_VERSION} compaction manifest")
        return cls(
            table=str(body["table"]),
            date=str(body["date"]),
            hour=str(body["hour"]),
            run_id=str(body["run_id"]),
            created_at=str(body["created_at"]),
            objects=tuple(LakeObject(str(o["key"]), int(o["bytes"]), o.get("rows")) for o in body["objects"]),
            rows=int(body["rows"]),
            checksum={str(k): str(v) for k, v in body["checksum"].items()},
            replaced=tuple(str(k) for k in body["replaced"]),
        )


@dataclass(frozen=True)
class CommittedHour:
    """What a reader must read for one hour of a table: compacted objects (if any) plus unreplaced stream."""

    manifest: Manifest | None
    compacted: tuple[LakeObject, ...]
    stream: tuple[LakeObject, ...]

    @property
    def objects(self) -> tuple[LakeObject, ...]:
        """Every object to read, compacted first."""
        return self.compacted + self.stream

    @property
    def keys(self) -> list[str]:
        """Keys of every object to read."""
        return [o.key for o in self.objects]


def keys_fingerprint(keys: Iterable[str]) -> str:
    """sha256 (hex) of a set of keys, independent of their order."""
    digest = hashlib.sha256()
    for key in sorted(set(keys)):
        digest.update(key.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def table_spec(table: str | TableSpec) -> TableSpec:
    """The TableSpec of a table name (or the spec itself)."""
    if isinstance(table, TableSpec):
        return table
    try:
        return TABLES[table]
    except KeyError:
        raise ValueError(f"unknown table {table!r}; choose from {', '.join(TABLES)}") from None


def compacted_hour_dir(spec: TableSpec, date: str, hour: str) -> str:
    """Key prefix of every compaction run of one hour: compacted/<table>/date=D/hour=H."""
    return f"{COMPACTED_PREFIX}/{spec.name}/date={date}/hour={hour}"


def compacted_dir(spec: TableSpec, date: str, hour: str, run_id: str) -> str:
    """Key prefix of one compaction run's objects: compacted/<table>/date=D/hour=H/<run_id>."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", run_id):
        raise ValueError(f"run_id must be [A-Za-z0-9_-]+, got {run_id!r}")
    return f"{compacted_hour_dir(spec, date, hour)}/{run_id}"


def manifest_key(spec: TableSpec, date: str, hour: str) -> str:
    """Key of the manifest that commits a compacted hour."""
    return f"{MANIFESTS_PREFIX}/{spec.name}/date={date}/hour={hour}.json"


def list_objects(location: LakeLocation, prefix: str, recursive: bool = False) -> list[pafs.FileInfo]:
    """Files under `prefix` (relative to the lake root), sorted by path; empty if the prefix is absent."""
    filesystem, base = location.filesystem()
    selector = pafs.FileSelector(f"{base}/{prefix}", allow_not_found=True, recursive=recursive)
    infos = [info for info in filesystem.get_file_info(selector) if info.type == pafs.FileType.File]
    return sorted(infos, key=lambda info: info.path)


def stream_objects(location: LakeLocation, table: str | TableSpec, date: str, hour: str) -> list[LakeObject]:
    """Every streaming object of one hour (named by `object_name`), sorted by key."""
    spec = table_spec(table)
    prefix = partition_dir(spec, date, hour)
    return [
        LakeObject(f"{prefix}/{info.base_name}", int(info.size or 0))
        for info in list_objects(location, prefix)
        if epoch_of(info.base_name) is not None
    ]


def read_manifest(
    location: LakeLocation, table: str | TableSpec, date: str, hour: str, attempts: int = 5
) -> Manifest | None:
    """The manifest of a compacted hour, or None if the hour was never compacted.

    A read racing a re-compaction's PUT may mix two versions (pyarrow reads with HEAD + ranged GETs); such
    a read does not parse and is retried.
    """
    spec = table_spec(table)
    filesystem, base = location.filesystem()
    path = f"{base}/{manifest_key(spec, date, hour)}"
    for attempt in range(attempts):
        try:
            with filesystem.open_input_stream(path) as stream:
                manifest = Manifest.from_json(stream.read())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
            continue
        if (manifest.table, manifest.date, manifest.hour) != (spec.name, date, hour):
            raise ValueError(f"manifest {path} describes {manifest.table}/{manifest.date}/{manifest.hour}")
        return manifest
    return None


def write_manifest(location: LakeLocation, manifest: Manifest) -> str:
    """Publish a manifest with one PUT (the atomic switch of its hour); return its key."""
    key = manifest_key(table_spec(manifest.table), manifest.date, manifest.hour)
    filesystem, base = location.filesystem()
    put_object(filesystem, f"{base}/{key}", manifest.to_json())
    return key


def committed_hour(location: LakeLocation, table: str | TableSpec, date: str, hour: str) -> CommittedHour:
    """THE reader rule (docs/lake.md, "Reading the lake"), with the manifest and object sizes.

    For an hour with a manifest: exactly the manifest's objects, plus streaming objects of the hour that
    the manifest does not list as replaced (arrived after compaction; the next compaction folds them in).
    Without a manifest: the hour's streaming objects. The manifest is read before the listing, so a
    compaction committing in between is seen as "not yet compacted", whose objects stay for the grace period.
    """
    manifest = read_manifest(location, table, date, hour)
    stream = stream_objects(location, table, date, hour)
    if manifest is None:
        return CommittedHour(None, (), tuple(stream))
    replaced = set(manifest.replaced)
    late = tuple(o for o in stream if o.key not in replaced)
    return CommittedHour(manifest, manifest.objects, late)


def committed_objects(location: LakeLocation, table: str | TableSpec, date: str, hour: str) -> list[str]:
    """Keys (relative to the lake root) a reader must read for one hour of a table: see `committed_hour`."""
    return committed_hour(location, table, date, hour).keys


def hour_starts(start: datetime, end: datetime) -> list[datetime]:
    """UTC hour starts h with start <= h < end, `start` rounded down to its hour."""
    current = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = []
    while current < end:
        hours.append(current)
        current += timedelta(hours=1)
    return hours


def committed_objects_between(
    location: LakeLocation, table: str | TableSpec, start: datetime, end: datetime
) -> list[str]:
    """`committed_objects` of every hour from the one holding `start` up to (excluding) `end`, in order."""
    keys: list[str] = []
    for moment in hour_starts(start, end):
        keys.extend(committed_objects(location, table, moment.strftime("%Y-%m-%d"), moment.strftime("%H")))
    return keys
