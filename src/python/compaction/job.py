"""The compaction job: `python -m compaction.job --table T (--date D --hour H | --from T --to T)`.

Iceberg maintenance of the lake's tables (docs/compaction.md; the operations: `compaction.maintenance`):

1. refuse unless every requested hour is closed (the streaming status in `_status/streaming.json` shows its
   watermark past the hour's end + margin): compacting an open hour is safe but wasted;
2. per hour, rewrite the small data files the stream appended into few sorted ones of about the target size
   (Iceberg's `rewrite_data_files`, sort strategy, filtered to the hour): one atomic commit that readers see
   whole or not at all; an hour already compacted has no file to rewrite and is left as it is;
3. per table, maintenance: expire old snapshots (deleting the files only they referenced), merge the
   manifests, and delete orphan files (of commits that crashed) older than a safety age.

Streaming appends to the same tables meanwhile: Iceberg retries a commit that raced another.
Prints one JSON report on stdout (and log lines on stderr). Exit codes: 0 done (or nothing to do),
1 failed, 2 usage, 3 refused (an hour is still open).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from compaction.maintenance import HourReport, compact_hour, compact_span, maintain_table
from compaction.plan import Closedness, HourPartition, closedness, parse_timestamp, partitions
from compaction.settings import CompactionSettings
from tickstream.commands import command_app, load_settings, usage_error
from tickstream.lake import BARS_1M, TICKS, LakeLocation, read_status
from tickstream.logs import configure_logging, get_logger
from tickstream.settings import CatalogSettings, PathsSettings, S3Settings

if TYPE_CHECKING:  # pyspark is imported lazily: `--check-closed` never starts Spark
    from pyspark.sql import SparkSession

log = get_logger("compaction.job")

COMPACTABLE = (TICKS.name, BARS_1M.name)
MAX_LISTED_HOURS = 48
"""The report lists every hour's closedness up to this many hours; beyond, only the open ones."""
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


# --- the run ---------------------------------------------------------------------------------------------


def error_line(exc: BaseException) -> str:
    """The telling line of an error: a Java exception's own message (not py4j's wrapper), else repr."""
    java = getattr(exc, "java_exception", None)
    text = str(java) if java is not None else repr(exc)
    return text.splitlines()[0][:500] if text else repr(exc)[:500]


@dataclass(frozen=True)
class Request:
    """A validated command line."""

    settings: CompactionSettings
    catalog: CatalogSettings
    s3: S3Settings
    paths: PathsSettings
    status_location: LakeLocation
    partitions: tuple[HourPartition, ...]
    mode: str  # compact | check-closed
    maintain: bool = True
    only_dirty: bool = False
    """The whole range at once (`compact_span`): bars corrected where they differ from their ticks, hours
    holding several files rewritten, the others left alone (a replay's hours, late ticks into old hours)."""


@dataclass
class SparkOnDemand:
    """Starts the job's SparkSession on first use (a refused or check-only run never starts one)."""

    settings: CompactionSettings
    s3: S3Settings
    catalog: CatalogSettings
    paths: PathsSettings
    app_name: str = "tickstream-compaction"
    session: list[SparkSession] = field(default_factory=list)

    def __call__(self) -> SparkSession:
        """The session, started on the first call."""
        if not self.session:
            from tickstream.spark import base_conf, build_spark_session, cached_connector_jars

            jars = [j for j in self.settings.jars.split(",") if j] or [
                str(j) for j in cached_connector_jars(self.paths)
            ]
            conf = base_conf(
                self.settings.master, self.app_name, self.settings.driver_memory, self.s3, self.catalog, jars
            )
            conf["spark.sql.shuffle.partitions"] = "4"
            self.session.append(build_spark_session(conf))
            self.session[0].sparkContext.setLogLevel("WARN")
        return self.session[0]

    def stop(self) -> None:
        """Stop the session if it was started."""
        for session in self.session:
            session.stop()
        self.session.clear()


def check_closed(
    location: LakeLocation, settings: CompactionSettings, hours: Sequence[HourPartition]
) -> list[Closedness]:
    """Closedness of every hour by the streaming status (watermark past hour end + the closed margin)."""
    status = read_status(location)
    margin = timedelta(seconds=settings.closed_margin_seconds)
    return [closedness(status, partition, margin) for partition in hours]


def run(request: Request, spark: Callable[[], SparkSession] | None = None) -> tuple[int, dict[str, Any]]:
    """Execute a request; return the exit code and the JSON report."""
    started = time.perf_counter()
    result: dict[str, Any] = {"mode": request.mode, "catalog": request.catalog.name, "hours": []}
    checks = check_closed(request.status_location, request.settings, request.partitions)
    result["closed"] = [
        {"partition": str(c.partition), "closed": c.closed, "reason": c.reason}
        for c in checks
        if not c.closed or len(checks) <= MAX_LISTED_HOURS
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
    session = spark or SparkOnDemand(request.settings, request.s3, request.catalog, request.paths)
    code = EXIT_OK
    try:
        hours = request.partitions
        if request.only_dirty:
            span_tables = sorted({p.table for p in hours}, key=lambda t: COMPACTABLE.index(t.name))
            start, end = min(p.start for p in hours), max(p.end for p in hours)
            result["span"] = compact_span(
                session(), request.catalog, span_tables, start, end, request.settings
            )
            log.info("span_compacted", **result["span"])
            hours = ()
        for partition in hours:
            try:
                report = compact_hour(session(), request.catalog, partition, request.settings)
            except Exception as exc:
                log.exception("hour_failed", partition=str(partition), error=error_line(exc))
                report = HourReport(
                    partition.table.name, partition.date, partition.hour, "failed", error=error_line(exc)
                )
                code = EXIT_FAILED
            log.info(f"hour_{report.action}", **asdict(report))
            result["hours"].append(asdict(report))
            if code:
                break
        if not code and request.maintain:
            now = datetime.now(UTC)
            tables = sorted({p.table.name for p in request.partitions})
            result["maintenance"] = []
            for table in tables:
                maintained = maintain_table(session(), request.catalog, table, request.settings, now)
                log.info("table_maintained", **maintained)
                result["maintenance"].append(maintained)
    except Exception as exc:
        log.exception("maintenance_failed", error=error_line(exc))
        result["error"] = error_line(exc)
        code = EXIT_FAILED
    finally:
        if isinstance(session, SparkOnDemand):
            session.stop()
    result["status"] = "failed" if code else "ok"
    result["duration_s"] = round(time.perf_counter() - started, 3)
    return code, result


# --- command line ----------------------------------------------------------------------------------------


def hour_arg(value: str, option: str) -> datetime:
    """An hour as YYYY-MM-DDTHH (or any ISO timestamp), UTC unless it says otherwise; a usage error else."""
    try:
        return parse_timestamp(value if len(value) > 13 else f"{value}:00")
    except ValueError:
        raise usage_error(f"{option}: expected YYYY-MM-DDTHH[:MM...], got {value!r}") from None


def build_request(
    table: str,
    date: str | None = None,
    hour: str | None = None,
    start: str | None = None,
    end: str | None = None,
    lake_root: str | None = None,
    maintain: bool = True,
    only_dirty: bool = False,
    check_only: bool = False,
    **overrides: Any,
) -> Request:
    """The validated request of a command line (`overrides`: CompactionSettings values); a usage error
    (exit 2, one line) otherwise."""
    settings = load_settings(CompactionSettings, **overrides)
    if table not in (*COMPACTABLE, "all"):
        raise usage_error(f"--table: choose from {', '.join((*COMPACTABLE, 'all'))}, not {table!r}")
    if (date is None) != (hour is None):
        raise usage_error("--date and --hour go together")
    if (start is None) != (end is None):
        raise usage_error("--from and --to go together")
    if (date is None) == (start is None):
        raise usage_error("give either --date D --hour H or --from T --to T")
    if date is not None and hour is not None:
        try:
            first = HourPartition.of(TICKS, date, hour).start
        except ValueError:
            raise usage_error(f"invalid --date/--hour: {date} {hour}") from None
        last = first + timedelta(hours=1)
    else:
        first, last = hour_arg(start or "", "--from"), hour_arg(end or "", "--to")
        if last <= first:
            raise usage_error("--to must be after --from")
    tables = list(COMPACTABLE) if table == "all" else [table]
    s3 = S3Settings()
    return Request(
        settings,
        CatalogSettings(),
        s3,
        PathsSettings(),
        LakeLocation.of(lake_root or settings.lake_root, s3),
        tuple(partitions(tables, first, last)),
        "check-closed" if check_only else "compact",
        maintain=maintain,
        only_dirty=only_dirty,
    )


def finish(code: int, result: dict[str, Any]) -> int:
    """Say a refusal on stderr, print the JSON report on stdout; return the exit code."""
    if code == EXIT_REFUSED:
        print(f"refused: {result['error']}", file=sys.stderr)
    print(json.dumps(result, sort_keys=True))
    return code


app = command_app(
    "Compact closed hours of the lake's Iceberg tables and maintain the tables. Prints a JSON report; exit "
    "0 done, 1 failed, 2 usage, 3 refused (an hour is open). Options override TICKSTREAM_COMPACTION_* "
    "variables; see docs/compaction.md."
)


@app.command()
def compact(
    table: Annotated[str, typer.Option(help="Table to compact: ticks, bars_1m or all.")],
    date: Annotated[str | None, typer.Option(help="Date of one hour (YYYY-MM-DD), with --hour.")] = None,
    hour: Annotated[str | None, typer.Option(help="Hour (0-23) of --date.")] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="First hour of a range (YYYY-MM-DDTHH).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="End of a range, exclusive (YYYY-MM-DDTHH).")
    ] = None,
    lake_root: Annotated[
        str | None, typer.Option(help="Where the streaming status is: s3://bucket[/prefix] or a directory.")
    ] = None,
    master: Annotated[
        str | None, typer.Option(help=CompactionSettings.model_fields["master"].description)
    ] = None,
    target_file_mb: Annotated[
        int | None, typer.Option(help=CompactionSettings.model_fields["target_file_mb"].description)
    ] = None,
    closed_margin_seconds: Annotated[
        int | None, typer.Option(help=CompactionSettings.model_fields["closed_margin_seconds"].description)
    ] = None,
    no_maintenance: Annotated[
        bool, typer.Option("--no-maintenance", help="Only rewrite the hours' files.")
    ] = False,
    only_dirty: Annotated[
        bool,
        typer.Option(
            "--only-dirty",
            help="The whole range at once: bars corrected where they differ, hours of several files "
            "rewritten.",
        ),
    ] = False,
    check_closed: Annotated[
        bool, typer.Option("--check-closed", help="Only check closedness: exit 0 closed, 3 open.")
    ] = False,
) -> None:
    """Compact the hours asked for (or only check that they are closed)."""
    request = build_request(
        table,
        date,
        hour,
        start,
        end,
        lake_root,
        maintain=not no_maintenance,
        only_dirty=only_dirty,
        check_only=check_closed,
        master=master,
        target_file_mb=target_file_mb,
        closed_margin_seconds=closed_margin_seconds,
    )
    configure_logging()
    logging.getLogger("py4j").setLevel(logging.WARNING)
    raise typer.Exit(finish(*run(request)))


def main() -> None:
    """Entry point (the PEX's and `python -m compaction.job`)."""
    app()


if __name__ == "__main__":
    main()
