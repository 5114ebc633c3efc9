"""The command lines of the python-default benchmarks and the report: `--help` (what run_all.py's --smoke
runs through Pants) lists every option, and a bad value is a usage error (exit 2) before anything runs."""

from __future__ import annotations

from types import ModuleType

import dashboard_bench
import dbt_bench
import platform_bench
import producer_bench
import pytest
import replay_bench
import report
from typer.testing import CliRunner


@pytest.mark.parametrize(
    ("module", "options"),
    [
        (producer_bench, ["--records", "--compression", "--delivery-reports", "--output"]),
        (dbt_bench, ["--ticks-per-second", "--batch-seconds", "--open-hours", "--commits-per-hour", "--out"]),
        (dashboard_bench, ["--symbols", "--objects-per-hour", "--repeat", "--local", "--out"]),
        (replay_bench, ["--days", "--out"]),
        (platform_bench, ["--rate", "--probe-rate", "--seconds", "--cpu-seconds", "--out"]),
        (report, ["--results", "--out"]),
    ],
    ids=lambda value: value.__name__ if isinstance(value, ModuleType) else None,
)
def test_help_describes_the_command_and_its_options(module: ModuleType, options: list[str]) -> None:
    result = CliRunner().invoke(module.app, ["--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = "".join(result.output.split())  # without the line breaks of click's wrapping
    assert "".join(module.DESCRIPTION.split()) in text
    assert all(option in text for option in options)


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        (producer_bench, ["--records", "many"], "Invalid value for '--records'"),
        (producer_bench, ["--compression", "brotli"], "Invalid value for '--compression'"),
        (dbt_bench, ["--open-hours", "25"], "error: --open-hours must be 0..24"),
        (dashboard_bench, ["--repeat", "1.5"], "Invalid value for '--repeat'"),
        (replay_bench, ["--weeks", "3"], "No such option: --weeks"),
        (platform_bench, ["--probe-rate", "fast"], "Invalid value for '--probe-rate'"),
        (report, ["--results"], "Option '--results' requires an argument"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, ModuleType) else None,
)
def test_bad_arguments_are_usage_errors(module: ModuleType, argv: list[str], message: str) -> None:
    result = CliRunner().invoke(module.app, argv, catch_exceptions=False)
    assert result.exit_code == 2 and message in result.output
