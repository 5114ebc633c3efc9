"""The compaction job: `python -m compaction.job --table T (--date D --hour H | --from T --to T)`.

For every requested closed hour of every table (see docs/compaction.md):

1. refuse unless the hour is closed (streaming watermark in `_status/streaming.json` past its end + margin);
2. plan from the committed view of the hour (`tickstream.lake.committed_hour`): nothing there, already
   compacted (no-op), or compact the committed objects;
3. read them with Spark, checksum them, write range-partitioned, key-sorted zstd objects of about the target
   size to `compacted/<table>/date=D/hour=H/<run_id>/` (run id = hash of the inputs: a re-run after a
   crash overwrites its own objects), read those back and checksum them: any difference aborts the hour,
   deletes the new objects, keeps the old ones and exits non-zero;
4. commit with one PUT of the hour's manifest;
5. garbage-collect what the current manifest made unneeded, once the grace period has passed.

Prints one JSON report on stdout (and one log line per hour on stderr). Exit codes: 0 done (or nothing to
do), 1 failed (verification, concurrent change, error), 2 usage, 3 refused (an hour is still open).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from compaction.plan import (
    Closedness,
    HourPartition,
    HourPlan,
    Listed,
    VerificationError,
    closedness,
    garbage,
    parse_timestamp,
    partitions,
    plan_hour,
    verify,
)
from compaction.settings import CompactionSettings
from tickstream.lake import (
    BARS_1M,
    TICKS,
    LakeLocation,
    LakeObject,
    Manifest,
    committed_hour,
    compacted_hour_dir,
    list_objects,
    partition_dir,
    read_manifest,
    read_status,
    write_manifest,
)
from tickstream.logs import configure_logging, get_logger
from tickstream.settings import S3Settings

if TYPE_CHECKING:  # pyspark is imported lazily: `--check-closed` and `--gc` never start Spark
    from pyspark.sql import SparkSession

log = get_logger("compaction.job")

COMPACTABLE = (TICKS.name, BARS_1M.name)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3
FAIL_POINT_ENV = "TICKSTREAM_COMPACTION_FAIL_POINT"
"""Test hook: `after_write` SIGKILLs the job after the new objects are written, before the manifest."""
FAIL_ONCE_ENV = "TICKSTREAM_COMPACTION_FAIL_ONCE_FILE"
"""Test hook: with a fail point, fail only while this file does not exist (the failing run creates it)."""


def fail_point_armed(point: str) -> bool:
    """Whether the test hook asks to fail at `point` now (see FAIL_POINT_ENV, FAIL_ONCE_ENV)."""
    if os.environ.get(FAIL_POINT_ENV) != point:
        return False
    once = os.environ.get(FAIL_ONCE_ENV)
    if not once:
        return True
    try:
        with open(once, "x"):
            return True  # first time: created the marker, fail
    except FileExistsError:
        return False


class ConcurrentChangeError(RuntimeError):
    """The hour's manifest changed while this run compacted it."""


@dataclass
class HourReport:
    """What the job did to one hour (one log line, one entry of the JSON report)."""

    table: str
    date: str
    hour: str
    action: str
    run_id: str = ""
    files_before: int = 0
    bytes_before: int = 0
    files_after: int = 0
    bytes_after: int = 0
    rows: int = 0
    duration_s: float = 0.0
    deleted: int = 0
    error: str | None = None
    checksum: dict[str, str] = field(default_factory=dict)
    phases_s: dict[str, float] = field(default_factory=dict)


# --- reading lake state ----------------------------------------------------------------------------------


def listed(location: LakeLocation, prefix: str, recursive: bool) -> list[Listed]:
    """Objects under `prefix` with their modification times."""
    base = location.filesystem()[1]
    found = []
    for info in list_objects(location, prefix, recursive=recursive):
        modified = info.mtime or datetime.now(UTC)
        modified = modified if modified.tzinfo else modified.replace(tzinfo=UTC)
        found.append(Listed(info.path[len(base) + 1 :], int(info.size or 0), modified))
    return found


# --- one hour --------------------------------------------------------------------------------------------

Writer = Callable[..., list[LakeObject]]


def compact(
    spark: SparkSession,
    location: LakeLocation,
    plan: HourPlan,
    write: Writer | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[Manifest, dict[str, float]]:
    """Rewrite, verify and commit one planned hour; return the published manifest and phase timings (s)."""
    from pyspark import StorageLevel

    from compaction import spark_io

    spec, date, hour = plan.partition.spec, plan.partition.date, plan.partition.hour
    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        phases[name] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()

    keys = [o.key for o in plan.inputs]
    schema = spark_io.table_schema(location, keys[0])
    # read the small objects once: the checksum pass fills the cache, the write reads from it
    frame = spark_io.read_objects(spark, location, keys, schema).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        before = spark_io.checksum(frame, spec)
        lap("read_checksum_s")
        written = (write or spark_io.write_sorted)(frame, spec, location, plan.output_dir, plan.files, schema)
        lap("write_s")
    finally:
        frame.unpersist()
    if fail_point_armed("after_write"):
        log.warning("fail_point", point="after_write", partition=str(plan.partition))
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        if not written:
            raise VerificationError(f"{plan.partition}: no compacted object was written")
        after = spark_io.checksum(
            spark_io.read_objects(spark, location, [o.key for o in written], schema), spec
        )
        verify(plan.partition, before, after, sum(o.rows or 0 for o in written))
        lap("verify_s")
        current = read_manifest(location, spec, date, hour)
        if (current.run_id if current else None) != (plan.previous.run_id if plan.previous else None):
            raise ConcurrentChangeError(
                f"{plan.partition}: the manifest changed while compacting (another compaction run?); "
                "nothing was published, re-run to fold in its result"
            )
    except Exception:
        delete_keys(location, [o.key for o in written if o.key.startswith(plan.output_dir + "/")])
        raise
    stamp = now().astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    manifest = Manifest(
        table=spec.name,
        date=date,
        hour=hour,
        run_id=plan.run_id,
        created_at=stamp,
        objects=tuple(written),
        rows=int(before["rows"]),
        checksum=before,
        replaced=plan.replaced,
    )
    write_manifest(location, manifest)
    lap("commit_s")
    return manifest, phases


def delete_keys(location: LakeLocation, keys: Sequence[str]) -> int:
    """Delete objects (missing ones are fine); return how many were asked for."""
    filesystem, _ = location.filesystem()
    for key in keys:
        with contextlib.suppress(FileNotFoundError):
            filesystem.delete_file(location.path(key))
    return len(keys)


def collect_garbage(location: LakeLocation, partition: HourPartition, grace: timedelta, now: datetime) -> int:
    """Delete what no reader of this hour needs any more (see `compaction.plan.garbage`)."""
    spec, date, hour = partition.spec, partition.date, partition.hour
    manifest = read_manifest(location, spec, date, hour)
    stream = listed(location, partition_dir(spec, date, hour), recursive=False)
    compacted = listed(location, compacted_hour_dir(spec, date, hour), recursive=True)
    found = garbage(partition, manifest, stream, compacted, now, grace)
    if found.keys:
        log.info(
            "garbage_collected",
            partition=str(partition),
            replaced_stream=len(found.replaced_stream),
            superseded=len(found.superseded),
        )
    return delete_keys(location, found.keys)


def compact_hour(
    location: LakeLocation,
    partition: HourPartition,
    settings: CompactionSettings,
    spark: Callable[[], SparkSession],
) -> HourReport:
    """Plan, compact (if needed) and garbage-collect one closed hour."""
    started = time.perf_counter()
    committed = committed_hour(location, partition.spec, partition.date, partition.hour)
    plan = plan_hour(partition, committed, settings.target_bytes)
    report = HourReport(
        partition.spec.name,
        partition.date,
        partition.hour,
        plan.action,
        plan.run_id,
        files_before=len(plan.inputs),
        bytes_before=plan.input_bytes,
    )
    if plan.action == "compact":
        manifest, phases = compact(spark(), location, plan)
        report.files_after = len(manifest.objects)
        report.bytes_after = sum(o.bytes for o in manifest.objects)
        report.rows = manifest.rows
        report.checksum = manifest.checksum
        report.phases_s = phases
    elif plan.action == "noop" and plan.previous is not None:
        report.files_after, report.rows = len(plan.previous.objects), plan.previous.rows
        report.bytes_after = plan.input_bytes
    grace = timedelta(seconds=settings.grace_seconds)
    report.deleted = collect_garbage(location, partition, grace, datetime.now(UTC))
    report.duration_s = round(time.perf_counter() - started, 3)
    return report


# --- the run ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A validated command line."""

    settings: CompactionSettings
    location: LakeLocation
    partitions: tuple[HourPartition, ...]
    mode: str  # compact | gc | check-closed


def spark_session_factory(settings: CompactionSettings, s3: S3Settings) -> Callable[[], SparkSession]:
    """A function that starts the SparkSession on first use (no-op and GC runs never start one)."""
    session: list[SparkSession] = []

    def get() -> SparkSession:
        if not session:
            from streaming.settings import StreamingSettings
            from streaming.spark_session import (
                MissingJarsError,
                build_spark_session,
                cached_connector_jars,
                spark_conf,
            )

            jars = [j for j in settings.jars.split(",") if j]
            if not jars:  # objects are read and written with pyarrow: s3a jars are optional
                with contextlib.suppress(MissingJarsError):
                    jars = [str(j) for j in cached_connector_jars()]
            base = StreamingSettings(
                master=settings.master,
                app_name="tickstream-compaction",
                driver_memory=settings.driver_memory,
                shuffle_partitions=4,
            )
            conf = spark_conf(base, s3, jars)
            conf["spark.sql.execution.arrow.maxRecordsPerBatch"] = "100000"
            conf["spark.sql.adaptive.enabled"] = "false"  # exactly `files` range partitions, never coalesced
            session.append(build_spark_session(conf))
            session[0].sparkContext.setLogLevel("WARN")
        return session[0]

    get.session = session  # type: ignore[attr-defined]
    return get


def check_closed(
    location: LakeLocation, settings: CompactionSettings, hours: Sequence[HourPartition]
) -> list[Closedness]:
    """Closedness of every hour by the streaming status (watermark past hour end + the closed margin)."""
    status = read_status(location)
    margin = timedelta(seconds=settings.closed_margin_seconds)
    return [closedness(status, partition, margin) for partition in hours]


def run(request: Request) -> tuple[int, dict[str, Any]]:
    """Execute a request; return the exit code and the JSON report."""
    started = time.perf_counter()
    result: dict[str, Any] = {"mode": request.mode, "lake": request.location.root, "hours": []}
    if request.mode in ("compact", "check-closed"):
        checks = check_closed(request.location, request.settings, request.partitions)
        result["closed"] = [
            {"partition": str(c.partition), "closed": c.closed, "reason": c.reason} for c in checks
        ]
        open_hours = [c for c in checks if not c.closed]
        for check in open_hours:
            log.warning("partition_open", partition=str(check.partition), reason=check.reason)
        if open_hours:
            result["status"] = "refused"
            result["error"] = "; ".join(c.reason for c in open_hours)
            return EXIT_REFUSED, result
        if request.mode == "check-closed":
            result["status"] = "closed"
            return EXIT_OK, result
    spark = spark_session_factory(request.settings, request.location.s3 or S3Settings())
    code = EXIT_OK
    try:
        for partition in request.partitions:
            if request.mode == "gc":
                grace = timedelta(seconds=request.settings.grace_seconds)
                deleted = collect_garbage(request.location, partition, grace, datetime.now(UTC))
                result["hours"].append({"partition": str(partition), "deleted": deleted})
                continue
            try:
                report = compact_hour(request.location, partition, request.settings, spark)
            except (VerificationError, ConcurrentChangeError) as exc:
                report = HourReport(
                    partition.spec.name, partition.date, partition.hour, "failed", error=str(exc)
                )
            except Exception as exc:
                log.exception("hour_failed", partition=str(partition))
                report = HourReport(
                    partition.spec.name, partition.date, partition.hour, "failed", error=repr(exc)
                )
            fields = asdict(report)
            fields.pop("checksum")
            if report.error:
                log.error("hour_failed", **fields)
                result["hours"].append(asdict(report))
                code = EXIT_FAILED
                break
            log.info("hour_compacted" if report.action == "compact" else f"hour_{report.action}", **fields)
            result["hours"].append(asdict(report))
    finally:
        for session in getattr(spark, "session", []):
            session.stop()
    result["status"] = "failed" if code else "ok"
    result["duration_s"] = round(time.perf_counter() - started, 3)
    return code, result


# --- command line ----------------------------------------------------------------------------------------


def hour_arg(value: str) -> datetime:
    """An hour as YYYY-MM-DDTHH (or any ISO timestamp), UTC unless it says otherwise."""
    try:
        return parse_timestamp(value if len(value) > 13 else f"{value}:00")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DDTHH[:MM...], got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The CLI."""
    parser = argparse.ArgumentParser(
        prog="python -m compaction.job",
        description="Compact closed hours of the lake into few large objects, committed by a manifest.",
        epilog="Options override TICKSTREAM_COMPACTION_* variables; see docs/compaction.md.",
    )
    parser.add_argument("--table", required=True, choices=[*COMPACTABLE, "all"], help="table to compact")
    parser.add_argument("--date", help="date of one hour (YYYY-MM-DD), with --hour")
    parser.add_argument("--hour", help="hour (0-23) of --date")
    parser.add_argument("--from", dest="start", type=hour_arg, help="first hour of a range (YYYY-MM-DDTHH)")
    parser.add_argument("--to", dest="end", type=hour_arg, help="end of a range, exclusive (YYYY-MM-DDTHH)")
    parser.add_argument("--lake-root", help="s3://bucket[/prefix] or a local directory (default: the bucket)")
    parser.add_argument("--master", help=CompactionSettings.model_fields["master"].description)
    parser.add_argument(
        "--target-file-mb", type=int, help=CompactionSettings.model_fields["target_file_mb"].description
    )
    parser.add_argument(
        "--grace-seconds", type=int, help=CompactionSettings.model_fields["grace_seconds"].description
    )
    parser.add_argument(
        "--closed-margin-seconds",
        type=int,
        help=CompactionSettings.model_fields["closed_margin_seconds"].description,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--gc", action="store_true", help="only delete objects past their grace period")
    mode.add_argument(
        "--check-closed", action="store_true", help="only check closedness: exit 0 closed, 3 open"
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> Request:
    """A validated request; usage errors exit with code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {
        name: value
        for name in ("master", "target_file_mb", "grace_seconds", "closed_margin_seconds")
        if (value := getattr(args, name)) is not None
    }
    try:
        settings = CompactionSettings(**overrides)
    except ValidationError as exc:
        parser.error("invalid setting: " + "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors()))
    if (args.date is None) != (args.hour is None):
        parser.error("--date and --hour go together")
    if (args.start is None) != (args.end is None):
        parser.error("--from and --to go together")
    if (args.date is None) == (args.start is None):
        parser.error("give either --date D --hour H or --from T --to T")
    if args.date is not None:
        try:
            start = HourPartition.of(TICKS, args.date, args.hour).start
        except ValueError:
            parser.error(f"invalid --date/--hour: {args.date} {args.hour}")
        end = start + timedelta(hours=1)
    else:
        start, end = args.start, args.end
        if end <= start:
            parser.error("--to must be after --from")
    tables = list(COMPACTABLE) if args.table == "all" else [args.table]
    s3 = S3Settings()
    root = args.lake_root or settings.lake_root
    location = LakeLocation(root, s3) if root else LakeLocation.for_bucket(s3)
    mode = "gc" if args.gc else "check-closed" if args.check_closed else "compact"
    return Request(settings, location, tuple(partitions(tables, start, end)), mode)


def finish(code: int, result: dict[str, Any]) -> int:
    """Say a refusal on stderr, print the JSON report on stdout; return the exit code."""
    if code == EXIT_REFUSED:
        print(f"refused: {result['error']}", file=sys.stderr)
    print(json.dumps(result, sort_keys=True))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; prints the JSON report and returns the exit code."""
    request = parse_args(argv)
    configure_logging()
    logging.getLogger("py4j").setLevel(logging.WARNING)
    return finish(*run(request))


if __name__ == "__main__":
    sys.exit(main())
