"""The dashboard benchmark end to end on a tiny local lake (no services)."""

from __future__ import annotations

import json
from pathlib import Path

import dashboard_bench


def test_tiny_local_run_reads_every_bar_in_both_layouts(tmp_path: Path) -> None:
    out = tmp_path / "dashboard.json"
    argv = ["--local", "--symbols", "2", "--objects-per-hour", "3", "--repeat", "1", "--out", str(out)]
    assert dashboard_bench.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["bars"] == 24 * 60 * 2
    assert result["raw_objects_per_hour"] == 3
    assert result["lake"] == "local"
    assert result["day_view_raw_s"] > 0 and result["day_view_compacted_s"] > 0
    assert result["targets"] == {"day_view_s": 1.0}


def test_hour_bars_cover_every_minute_and_symbol() -> None:
    import numpy as np

    bars = dashboard_bench.hour_bars(np.random.default_rng(0), 9, 3)
    assert bars.num_rows == 180
    starts = bars.column("window_start").to_pylist()
    assert starts[0].isoformat() == "2024-03-01T09:00:00+00:00"
    assert starts[-1].isoformat() == "2024-03-01T09:59:00+00:00"
    assert set(bars.column("symbol").to_pylist()) == {"SYM00", "SYM01", "SYM02"}
