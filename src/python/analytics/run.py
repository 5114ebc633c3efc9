"""Run the dbt project (src/sql/dbt) in-process with dbtRunner: `run_dbt(command, vars)` and a CLI.

    python -m analytics.run build --start 2024-03-01T09:00:00 --end 2024-03-01T10:00:00
    python -m analytics.run build --full-refresh          # the whole lake
    python -m analytics.run source freshness

Airflow's hourly DAG calls the CLI (`$TICKSTREAM_ANALYTICS_COMMAND build --start H --end H+1`).
`main` is the process edge: it reads the settings from the environment once (AnalyticsSettings, prefix
TICKSTREAM_DBT_; the lake's Iceberg catalog from TICKSTREAM_CATALOG_*; S3 from TICKSTREAM_S3_*) and passes
them down; `run_dbt` hands the catalog and S3 settings to the dbt-duckdb plugin (analytics.duckdb_lake)
for the invocation. After every run dbt's run_results.json is copied to the lake root
(`_status/dbt/run_results.json`) for the dashboard.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import takewhile
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tickstream.commands import command_app, load_settings, usage_error
from tickstream.lake import LakeLocation, put_object
from tickstream.logs import configure_logging, get_logger
from tickstream.settings import (
    LAKE_ROOT_VARIABLE,
    CatalogSettings,
    LakeRootSettings,
    PathsSettings,
    S3Settings,
)

PROJECT_SUBDIR = Path("src") / "sql" / "dbt"
RUN_RESULTS_KEY = "_status/dbt/run_results.json"
log = get_logger(__name__)


class AnalyticsSettings(LakeRootSettings):
    """Where the dbt project, its DuckDB file and its artefacts are, and where the marts are published.

    The tables dbt reads come from the Iceberg catalog (CatalogSettings, TICKSTREAM_CATALOG_*), not from here.
    """

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_DBT_")

    target: str = Field(
        default="s3", description="dbt target: s3 (marts exported to the bucket) or local (to a directory)."
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
    settings: AnalyticsSettings,
    catalog: CatalogSettings,
    s3: S3Settings,
    extra_args: Sequence[str] = (),
) -> Any:
    """Run one dbt command (e.g. "build", "source freshness", ["docs", "generate"]) and return its result.

    dbt reads the lake tables of `catalog` (their files through `s3`) and exports the marts under
    `lake_location(settings, s3)`. Returns dbt's `dbtRunnerResult` (`.success`, `.result`, `.exception`).
    A run with vars on a DuckDB file that does not exist yet builds the whole lake instead: incremental
    marts must start from all history.
    """
    from dbt.cli.main import dbtRunner  # heavy imports: only when dbt runs

    from analytics.duckdb_lake import LakeAccess, lake_access

    project_dir = find_project_dir(settings.project_dir)
    state_dir = Path(settings.state_dir) if settings.state_dir else PathsSettings().data_dir / "dbt"
    duckdb_path = Path(settings.duckdb_path) if settings.duckdb_path else state_dir / "tickstream.duckdb"
    state_dir.mkdir(parents=True, exist_ok=True)
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    location = lake_location(settings, s3)
    # profiles.yml and the lake_root() macro read these; set for the invocation only, so that they never
    # leak into settings built later in this process.
    dbt_environment = {
        "TICKSTREAM_DBT_DUCKDB_PATH": str(duckdb_path),
        "TICKSTREAM_DBT_TARGET": settings.target,
        LAKE_ROOT_VARIABLE: location.root,
    }

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
    log.info("dbt_start", args=args, catalog=catalog.name, warehouse=catalog.warehouse)
    with environment(dbt_environment), lake_access(LakeAccess(catalog=catalog, s3=s3)):
        result = dbtRunner().invoke(args)
    log.info("dbt_done", command=" ".join(words), success=result.success)
    publish_run_results(state_dir / "target" / "run_results.json", location)
    return result


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore what was there."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def lake_location(settings: AnalyticsSettings, s3: S3Settings) -> LakeLocation:
    """Where the marts and run results go: `settings.lake_root`, else the configured bucket."""
    return LakeLocation.of(settings.lake_root, s3)


def publish_run_results(path: Path, location: LakeLocation) -> None:
    """Copy dbt's run_results.json to the lake root (the dashboard's view of the last dbt run)."""
    if not path.is_file():
        return
    try:
        filesystem, base = location.filesystem()
        put_object(filesystem, f"{base}/{RUN_RESULTS_KEY}", path.read_bytes())
    except (OSError, ValueError) as error:  # the run itself succeeded or failed on its own terms
        log.warning("dbt_run_results_not_published", error=str(error))


app = command_app("Run the dbt project (src/sql/dbt) over the lake; dbt's own options go after `--`.")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dbt(
    command: Annotated[
        list[str], typer.Argument(help='dbt command, e.g. build, run, test, "source freshness".')
    ],
    start: Annotated[
        str | None, typer.Option(help="Interval start (UTC, ISO date or timestamp), inclusive.")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Interval end (UTC, ISO date or timestamp), exclusive.")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="dbt target (default TICKSTREAM_DBT_TARGET or s3).")
    ] = None,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Rebuild incremental marts.")] = False,
    select: Annotated[str | None, typer.Option("--select", "-s", help="dbt node selection.")] = None,
) -> None:
    """Run a dbt command; exit 0 success, 1 failed nodes, 2 usage error or dbt could not run."""
    words = list(takewhile(lambda word: not word.startswith("-"), command))
    extra = [arg for arg in command[len(words) :] if arg != "--"]
    try:
        vars = interval_vars(start, end)
    except ValueError as error:
        raise usage_error(str(error)) from None
    settings = load_settings(AnalyticsSettings, target=target)
    configure_logging()
    if full_refresh:
        extra.append("--full-refresh")
    if select:
        extra += ["--select", select]
    result = run_dbt(
        words, vars, settings=settings, catalog=CatalogSettings(), s3=S3Settings(), extra_args=extra
    )
    if result.exception is not None:
        typer.echo(f"dbt failed: {result.exception}", err=True)
        raise typer.Exit(2)
    raise typer.Exit(0 if result.success else 1)


def main() -> None:
    """Entry point (the PEX's and `python -m analytics.run`)."""
    app()


if __name__ == "__main__":
    main()
