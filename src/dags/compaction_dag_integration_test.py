"""`dag.test()` of one hourly interval against real S3 and Spark.

The DAG runs the compaction PEX (`src/python/compaction:bin`, built by Pants into the sandbox as a runtime
package) as a subprocess. This resolve has no pyarrow, pyiceberg or service tooling, so the harness PEX
(`src/python/compaction:harness`, spark environment) holds the S3 server for the test, appends an hour of
small commits to a test lake as the stream does, kills the first compaction attempt during its rewrite,
and reads the hour back with DuckDB through the catalog.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tickstream.settings import DagSettings, S3Settings, environment

pytestmark = pytest.mark.integration

PACKAGES = "src.python.compaction"


def package(name: str, directory: str = PACKAGES) -> Path:
    """A PEX Pants built for this test (in the sandbox), or from `./pants package` (dist/) outside it."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2] / "dist"):
        if (base / directory / name).exists():
            return base / directory / name
    raise FileNotFoundError(f"{directory}/{name}: run under `./pants test` or `./pants package` it first")


def dbt_project_dir() -> Path:
    """The dbt project (a `files` dependency in the sandbox, else the checkout)."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "src/sql/dbt/dbt_project.yml").exists():
            return base / "src/sql/dbt"
    raise FileNotFoundError("src/sql/dbt/dbt_project.yml")


def harness(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [str(package("harness.pex")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, Any]]:
    """The harness holding S3 (reused if already running) for the module; its settings and Spark jars."""
    process = subprocess.Popen(
        [str(package("harness.pex")), "serve-s3"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        while line and not line.startswith("{"):
            line = process.stdout.readline()
        assert line, f"harness exited with {process.wait()}"
        yield json.loads(line)
    finally:
        if process.stdin:
            process.stdin.close()
        process.wait(120)


def test_dag_run_compacts_its_hour_then_builds_its_analytics(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow import settings
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import timezone
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.utils.db import initdb

    s3 = S3Settings(**services["s3"])
    for name, value in environment(s3).items():
        monkeypatch.setenv(name, value)
    written = harness(
        "write-hour", "--directory", str(tmp_path / "lake"), "--date", "2024-03-01", "--hour", "09",
        "--batches", "60", env=dict(os.environ),
    )  # fmt: skip
    catalog = written["catalog"]
    lake_root = written["status_root"]  # the streaming status the sensor reads; dbt publishes the marts there
    marker = tmp_path / "killed-once"
    env = {
        "TICKSTREAM_CATALOG_URI": catalog["uri"],
        "TICKSTREAM_CATALOG_NAME": catalog["name"],
        "TICKSTREAM_CATALOG_WAREHOUSE": catalog["warehouse"],
        "TICKSTREAM_LAKE_ROOT": lake_root,
        "TICKSTREAM_COMPACTION_JARS": ",".join(services["jars"]),
        # the harness kills the first compaction attempt during its rewrite; the task's retry (after 1 s
        # here instead of 2 min) must finish the hour, and its maintenance delete the killed run's files
        **environment(
            DagSettings(
                compaction_command=(
                    f"{package('harness.pex')} kill-first-rewrite --marker {marker} -- {package('bin.pex')}"
                ),
                compaction_retry_delay_s=1,
                analytics_command=str(package("bin.pex", "src.python.analytics")),
            )
        ),
        "TICKSTREAM_COMPACTION_ORPHAN_AGE_HOURS": "0",
        "TICKSTREAM_DBT_PROJECT_DIR": str(dbt_project_dir()),
        "TICKSTREAM_DBT_STATE_DIR": str(tmp_path / "dbt"),
        "TICKSTREAM_DBT_DUCKDB_PATH": str(tmp_path / "dbt" / "marts.duckdb"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parent / "compaction_dag.py"))
    assert bag.import_errors == {}
    dag = bag.dags["tickstream_compaction"]
    run_after = datetime(2024, 3, 1, 10, tzinfo=UTC)
    core = coerce_to_core_timetable(dag.timetable)
    interval = core.infer_manual_data_interval(run_after=timezone.coerce_datetime(run_after))
    date, hour = interval.start.strftime("%Y-%m-%d"), interval.start.strftime("%H")
    assert (date, hour) == ("2024-03-01", "09")

    def summary() -> dict[str, Any]:
        return harness(
            "summary", "--marts-root", lake_root, "--date", date, "--hour", hour, env=dict(os.environ)
        )

    before = summary()
    assert sum(int(row[1]) for row in before["ticks_summary"]) == written["ticks"] == 12_000
    assert before["files"] == {"ticks": 60, "bars_1m": 60}

    if settings.Session is None:
        settings.configure_orm()
    initdb()
    run = dag.test(logical_date=run_after)
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    tries = {ti.task_id: ti.try_number for ti in run.get_task_instances()}
    assert marker.exists()  # the fault happened
    assert sorted((tries["compact_ticks"], tries["compact_bars_1m"])) == [1, 2], tries  # and was retried

    after = summary()
    assert after["ticks_summary"] == before["ticks_summary"]
    assert after["files"] == {"ticks": 1, "bars_1m": 1}
    assert before["activity_hourly"] == []
    # run_dbt built the hour's marts after compaction: trade counts per symbol as read from the lake
    assert after["activity_hourly"] == [row[:2] for row in before["ticks_summary"]]

    again = dag.test(logical_date=run_after)  # idempotent: the same hour again changes nothing
    assert again.state == "success"
    assert summary() == after
