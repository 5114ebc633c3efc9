"""The dashboard benchmark end to end on tiny local lakes (no services)."""

from __future__ import annotations

import json
from pathlib import Path

import dashboard_bench
from typer.testing import CliRunner


def test_tiny_local_run_reads_every_bar_in_both_layouts(tmp_path: Path) -> None:
    out = tmp_path / "dashboard.json"
    argv = ["--local", "--symbols", "2", "--objects-per-hour", "3", "--repeat", "1", "--out", str(out)]
    done = CliRunner().invoke(dashboard_bench.app, argv, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    result = json.loads(out.read_text())
    assert result["bars"] == (24 * 60 - 1) * 2  # the builder's newest bar is of NOW - 2 min
    assert result["raw_objects_per_hour"] == 3
    assert result["lake"] == "local"
    # Streamed: 3 files for each of 24 whole hours, plus the older partial hour (1) and the open hour (2).
    # Compacted: one file for each of the 25 closed hours, plus the open hour's 2.
    assert result["bars_files"] == {"raw": 75, "compacted": 27}
    assert result["day_view_raw_s"] > 0 and result["day_view_compacted_s"] > 0
    assert result["targets"] == {"day_view_s": 1.0}


def test_objects_per_hour_must_fit_whole_minutes(tmp_path: Path) -> None:
    argv = ["--local", "--objects-per-hour", "61", "--out", str(tmp_path / "x.json")]
    result = CliRunner().invoke(dashboard_bench.app, argv, catch_exceptions=False)
    assert result.exit_code == 2
    assert result.output == "error: --objects-per-hour must be 1..60 (a bars file holds whole minutes)\n"
    assert not (tmp_path / "x.json").exists()
