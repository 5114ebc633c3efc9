"""The lake layout contract in code: table prefixes, columns, object names (see docs/lake.md).

Pure Python plus pyarrow: the streaming job, the compaction job, the dashboard and tests all name objects
through this module, so a path is never spelled twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs

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
TABLES: dict[str, TableSpec] = {spec.name: spec for spec in (TICKS, BARS_1M, QUARANTINE)}

_OBJECT_NAME = re.compile(r"^part-(?P<query>[0-9a-f]{8})-e(?P<epoch>\d{12})\.parquet$")


def partition_dir(spec: TableSpec, date: str, hour: str) -> str:
    """Key prefix of one hour of a table, e.g. stream/ticks/date=2024-03-01/hour=09."""
    return f"{spec.prefix}/date={date}/hour={hour}"


def object_name(query_id: str, epoch_id: int) -> str:
    """File name of a micro-batch's object in one hour partition.

    Derived only from the streaming query's id (stable across restarts from the same checkpoint) and the
    epoch (batch) id, so a replayed batch overwrites exactly the objects its first attempt wrote.
    """
    if epoch_id < 0:
        raise ValueError(f"epoch_id must be >= 0, got {epoch_id}")
    short_id = query_id.replace("-", "")[:8].lower()
    if not re.fullmatch(r"[0-9a-f]{8}", short_id):
        raise ValueError(f"query_id must be a UUID, got {query_id!r}")
    return f"part-{short_id}-e{epoch_id:012d}.parquet"


def object_key(spec: TableSpec, date: str, hour: str, query_id: str, epoch_id: int) -> str:
    """Full key (without bucket) of a micro-batch's object for one hour of a table."""
    return f"{partition_dir(spec, date, hour)}/{object_name(query_id, epoch_id)}"


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
