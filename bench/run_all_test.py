"""bench/run_all.py: the stages, their order and the commands (dry run only: nothing is started)."""

from __future__ import annotations

import pytest
import run_all


def test_dry_run_prints_every_benchmark_in_order_then_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_all.main(["--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    scripts = [line.split()[2] for line in lines]
    assert scripts == [
        "bench/producer_bench.py",
        "bench/streaming_bench.py",
        "bench/compaction_bench.py",
        "bench/dbt_bench.py",
        "bench/dashboard_bench.py",
        "bench/replay_bench.py",
        "bench/platform_bench.py",
        "bench/report.py",
    ]
    assert all(line.split()[0].endswith("/pants") and line.split()[1] == "run" for line in lines)
    assert lines[1].endswith("-- --backlog 10000000 --seconds 60")


def test_only_selects_stages_in_the_fixed_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_all.main(["--dry-run", "--only", "dbt,producer"]) == 0
    scripts = [line.split()[2] for line in capsys.readouterr().out.splitlines()]
    assert scripts == ["bench/producer_bench.py", "bench/dbt_bench.py", "bench/report.py"]


def test_unknown_stage_is_an_error() -> None:
    with pytest.raises(SystemExit) as exited:
        run_all.main(["--only", "kafka"])
    assert exited.value.code == 2


def test_planned_duration_fits_the_budget() -> None:
    assert sum(stage.minutes for stage in run_all.STAGES) <= 30
