"""DAG integrity: the file imports cleanly, without heavy work; schedule, retries, catchup explicit."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tickstream.settings import DagSettings, environment

DAG_FILE = Path(__file__).resolve().parent / "compaction_dag.py"


def load_bag():  # type: ignore[no-untyped-def]
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # older layout
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag(dag_folder=str(DAG_FILE))


def manual_interval(dag, run_after: datetime):  # type: ignore[no-untyped-def]
    """The data interval of a run at `run_after`, as the scheduler (and `dag.test()`) computes it."""
    from airflow.sdk import timezone
    from airflow.serialization.encoders import coerce_to_core_timetable

    core = coerce_to_core_timetable(dag.timetable)
    return core.infer_manual_data_interval(run_after=timezone.coerce_datetime(run_after))


def test_dag_file_imports_without_errors_or_side_effects(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_bag().import_errors == {}  # first parse: also imports Airflow's lazily loaded modules

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"subprocess started while parsing the DAG file: {args}")

    monkeypatch.setattr(subprocess, "run", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    started = time.perf_counter()
    bag = load_bag()  # the DAG file runs again: no job, no S3, no subprocess at parse time
    assert bag.import_errors == {}
    assert "tickstream_compaction" in bag.dags
    assert time.perf_counter() - started < 5


def test_schedule_retries_and_catchup() -> None:
    dag = load_bag().dags["tickstream_compaction"]
    assert dag.catchup is False
    assert dag.doc_md and "wait_until_closed" in dag.doc_md
    interval = manual_interval(dag, datetime(2024, 3, 1, 10, tzinfo=UTC))
    assert (interval.start, interval.end) == (
        datetime(2024, 3, 1, 9, tzinfo=UTC),
        datetime(2024, 3, 1, 10, tzinfo=UTC),
    )
    assert set(dag.task_ids) == {"wait_until_closed", "compact_ticks", "compact_bars_1m", "run_dbt"}
    for task_id in ("compact_ticks", "compact_bars_1m"):
        task = dag.get_task(task_id)
        assert task.retries >= 3 and task.retry_exponential_backoff
        assert task.upstream_task_ids == {"wait_until_closed"}
    sensor = dag.get_task("wait_until_closed")
    assert sensor.mode == "reschedule" and sensor.exponential_backoff
    assert dag.get_task("run_dbt").upstream_task_ids == {"compact_ticks", "compact_bars_1m"}


def test_hour_of_interval_and_commands_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import compaction_dag

    assert compaction_dag.hour_of(datetime(2024, 3, 1, 9, tzinfo=UTC)) == ("2024-03-01", "09")
    # an Airflow Variable (here through its AIRFLOW_VAR_ form) cannot change what a task runs
    monkeypatch.delenv("TICKSTREAM_COMPACTION_COMMAND", raising=False)
    monkeypatch.setenv("AIRFLOW_VAR_TICKSTREAM_COMPACTION_COMMAND", "sh -c 'touch /tmp/owned'")
    assert compaction_dag.command(compaction_dag.COMMAND, compaction_dag.DEFAULT_COMMAND) == [
        "python",
        "-m",
        "compaction.job",
    ]
    monkeypatch.setenv("TICKSTREAM_COMPACTION_COMMAND", "/opt/compaction.pex --x")
    assert compaction_dag.command(compaction_dag.COMMAND, compaction_dag.DEFAULT_COMMAND) == [
        "/opt/compaction.pex",
        "--x",
    ]


def test_the_dag_reads_the_variables_its_launchers_set() -> None:
    import compaction_dag

    # Launchers set the DAG's environment with environment(DagSettings(...)): same names, same defaults.
    launched = environment(DagSettings())
    assert launched == {
        compaction_dag.COMMAND: compaction_dag.DEFAULT_COMMAND,
        compaction_dag.ANALYTICS_COMMAND: compaction_dag.DEFAULT_ANALYTICS_COMMAND,
        compaction_dag.RETRY_DELAY_VARIABLE: str(compaction_dag.DEFAULT_RETRY_DELAY.total_seconds()),
    }


def test_dags_folder_loads_only_dags_and_ignores_tests() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE.parent))  # the folder `tickstream up` gives Airflow
    assert bag.import_errors == {}
    # .airflowignore keeps the *_test.py files and conftest.py out of the DAG processor
    assert [Path(stat.file).name for stat in bag.dagbag_stats] == ["compaction_dag.py"]
    assert list(bag.dags) == ["tickstream_compaction"]


def test_run_dbt_builds_the_interval_with_the_analytics_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import compaction_dag

    calls = tmp_path / "calls"
    fake = tmp_path / "analytics"
    fake.write_text(f'#!/bin/sh\necho "$@ home=$TICKSTREAM_DBT_TARGET" >> {calls}\nexit "${{FAIL:-0}}"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("TICKSTREAM_ANALYTICS_COMMAND", str(fake))
    monkeypatch.setenv("TICKSTREAM_DBT_TARGET", "s3")
    start, end = datetime(2024, 3, 1, 9, tzinfo=UTC), datetime(2024, 3, 1, 10, tzinfo=UTC)

    assert compaction_dag.run_dbt.function(data_interval_start=start, data_interval_end=end) == "built"
    assert calls.read_text().split() == [
        "build",
        "--start",
        "2024-03-01T09:00:00+00:00",
        "--end",
        "2024-03-01T10:00:00+00:00",
        "home=s3",
    ]
    monkeypatch.setenv("FAIL", "2")
    with pytest.raises(RuntimeError, match="exit 2"):
        compaction_dag.run_dbt.function(data_interval_start=start, data_interval_end=end)
