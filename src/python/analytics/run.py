"""Run the dbt project (src/sql/dbt) in-process with dbtRunner: `run_dbt(command, vars)` and a CLI.

    python -m analytics.run build --start 2024-03-01T09:00:00 --end 2024-03-01T10:00:00
    python -m analytics.run build --full-refresh          # the whole lake
    python -m analytics.run source freshness

Airflow's hourly DAG calls the CLI (`$TICKSTREAM_ANALYTICS_COMMAND build --start H --end H+1`).
Settings come from the environment (AnalyticsSettings, prefix TICKSTREAM_DBT_; the lake's S3 settings
from TICKSTREAM_S3_*). After every run dbt's run_results.json is copied into the lake
(`_status/dbt/run_results.json`) for the dashboard.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickstream.lake import LakeLocation, put_object
from tickstream.logs import configure_logging, get_logger
from tickstream.settings import PathsSettings, S3Settings

PROJECT_SUBDIR = Path("src") / "sql" / "dbt"
RUN_RESULTS_KEY = "_status/dbt/run_results.json"
log = get_logger(__name__)


class AnalyticsSettings(BaseSettings):
    """Where the dbt project, its DuckDB file and its artefacts are, and which lake it reads."""

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_DBT_")

    target: str = Field(default="s3", description="dbt target: s3 (the bucket) or local (a lake directory).")
    lake_root: str = Field(
        default="",
        description="Lake root: empty = s3://<TICKSTREAM_S3_BUCKET>; s3://bucket/prefix; a directory.",
    )
    project_dir: str = Field(default="", description="The dbt project; empty = src/sql/dbt found upwards.")
    duckdb_path: str = Field(
        default="",
        description="DuckDB file holding the incremental marts; empty = <home>/data/dbt/tickstream.duckdb.",
    )
    state_dir: str = Field(
        default="", description="dbt's target/ and logs/ go here; empty = <home>/data/dbt."
    )


def find_project_dir(explicit: str = "") -> Path:
    """The dbt project directory: `explicit`, else src/sql/dbt above the working directory or this file."""
    if explicit:
        return Path(explicit).resolve()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for directory in (start, *start.parents):
            candidate = directory / PROJECT_SUBDIR
            if (candidate / "dbt_project.yml").is_file():
                return candidate
    raise FileNotFoundError(
        f"no {PROJECT_SUBDIR}/dbt_project.yml above {Path.cwd()}: set TICKSTREAM_DBT_PROJECT_DIR"
    )


def interval_vars(start: str | None, end: str | None) -> dict[str, str]:
    """dbt vars for a run over [start, end) (ISO dates or timestamps, UTC); empty for the whole lake."""
    if (start is None) != (end is None):
        raise ValueError("--start and --end go together")
    return {} if start is None or end is None else {"start": start, "end": end}


def run_dbt(
    command: str | Sequence[str],
    vars: Mapping[str, Any] | None = None,
    *,
    settings: AnalyticsSettings | None = None,
    extra_args: Sequence[str] = (),
) -> Any:
    """Run one dbt command (e.g. "build", "source freshness", ["docs", "generate"]) and return its result.

    Returns dbt's `dbtRunnerResult` (`.success`, `.result`, `.exception`). A run with vars on a DuckDB file
    that does not exist yet builds the whole lake instead: incremental marts must start from all history.
    """
    from dbt.cli.main import dbtRunner  # heavy import: only when dbt runs

    settings = settings or AnalyticsSettings()
    project_dir = find_project_dir(settings.project_dir)
    state_dir = Path(settings.state_dir) if settings.state_dir else PathsSettings().data_dir / "dbt"
    duckdb_path = Path(settings.duckdb_path) if settings.duckdb_path else state_dir / "tickstream.duckdb"
    state_dir.mkdir(parents=True, exist_ok=True)
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    os.environ["TICKSTREAM_DBT_DUCKDB_PATH"] = str(duckdb_path)
    os.environ["TICKSTREAM_DBT_TARGET"] = settings.target
    if settings.lake_root:
        os.environ["TICKSTREAM_DBT_LAKE_ROOT"] = settings.lake_root
    else:
        os.environ.pop("TICKSTREAM_DBT_LAKE_ROOT", None)

    words = command.split() if isinstance(command, str) else list(command)
    run_vars = dict(vars or {})
    if run_vars.get("start") is not None and not duckdb_path.exists() and words[0] in ("build", "run"):
        log.warning(
            "dbt_cold_start", duckdb_path=str(duckdb_path), detail="no state yet: building the whole lake"
        )
        run_vars.pop("start", None)
        run_vars.pop("end", None)
    args = [
        *words,
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(project_dir),
        "--target",
        settings.target,
        "--target-path",
        str(state_dir / "target"),
        "--log-path",
        str(state_dir / "logs"),
    ]
    if run_vars:
        args += ["--vars", json.dumps(run_vars)]
    args += list(extra_args)
    log.info("dbt_start", args=args)
    result = dbtRunner().invoke(args)
    log.info("dbt_done", command=" ".join(words), success=result.success)
    publish_run_results(state_dir / "target" / "run_results.json", settings)
    return result


def lake_location(settings: AnalyticsSettings) -> LakeLocation:
    """The lake that the run read, as a tickstream.lake location."""
    if settings.lake_root:
        s3 = S3Settings() if settings.lake_root.startswith("s3://") else None
        return LakeLocation(root=settings.lake_root, s3=s3)
    return LakeLocation.for_bucket(S3Settings())


def publish_run_results(path: Path, settings: AnalyticsSettings) -> None:
    """Copy dbt's run_results.json to the lake (the dashboard's view of the last dbt run)."""
    if not path.is_file():
        return
    try:
        location = lake_location(settings)
        filesystem, _ = location.filesystem()
        put_object(filesystem, location.path(RUN_RESULTS_KEY), path.read_bytes())
    except (OSError, ValueError) as error:  # the run itself succeeded or failed on its own terms
        log.warning("dbt_run_results_not_published", error=str(error))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: `python -m analytics.run <dbt command words> [--start S --end E] [dbt args after --]`."""
    parser = argparse.ArgumentParser(prog="python -m analytics.run", description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="+", help='dbt command, e.g. build, run, test, "source freshness"')
    parser.add_argument("--start", help="interval start (UTC, ISO date or timestamp), inclusive")
    parser.add_argument("--end", help="interval end (UTC, ISO date or timestamp), exclusive")
    parser.add_argument("--target", help="dbt target (default TICKSTREAM_DBT_TARGET or s3)")
    parser.add_argument("--full-refresh", action="store_true", help="rebuild incremental marts")
    parser.add_argument("--select", "-s", help="dbt node selection")
    args, passthrough = parser.parse_known_args(argv)
    configure_logging()
    try:
        vars = interval_vars(args.start, args.end)
    except ValueError as error:
        parser.error(str(error))
    settings = AnalyticsSettings()
    if args.target:
        settings = settings.model_copy(update={"target": args.target})
    extra = [arg for arg in passthrough if arg != "--"]
    if args.full_refresh:
        extra.append("--full-refresh")
    if args.select:
        extra += ["--select", args.select]
    result = run_dbt(args.command, vars, settings=settings, extra_args=extra)
    if result.exception is not None:
        print(f"dbt failed: {result.exception}", file=sys.stderr)
        return 2
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
