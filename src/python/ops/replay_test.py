"""The replay's own logic: what a file spans, and when the lake has it (the flow itself is tested end to end
in src/python/e2e)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ops.replay import ReplayError, bars_agree, committed_through, replay_range


def test_a_file_of_daily_bars_spans_its_days(tmp_path: Path) -> None:
    path = tmp_path / "daily.csv"
    path.write_text(
        "symbol,timestamp,open,high,low,close,volume\n"
        "AAA,2016-01-04,10.00,10.50,9.75,10.25,1000\n"
        "AAA,2024-12-31,20.00,20.00,19.00,19.50,7\n"
    )
    span = replay_range(path)
    assert span.ticks == 8  # four legs per bar
    assert span.first == datetime(2016, 1, 4, tzinfo=UTC)
    assert span.last == datetime(2024, 12, 31, 0, 0, 59, tzinfo=UTC)  # the close leg
    assert span.days == ("2016-01-04", "2025-01-01")
    (tmp_path / "empty.csv").write_text("symbol,timestamp,open,high,low,close,volume\n")
    with pytest.raises(ReplayError, match="no rows"):
        replay_range(tmp_path / "empty.csv")


def test_the_lake_has_the_replay_once_offsets_and_bars_are_through() -> None:
    status = {
        "queries": {
            "ticks": {"query_id": "q", "last_batch_id": 7, "end_offsets": {"ticks": {"0": 100, "1": 50}}},
            "bars_1m": {"corrected_query_id": "q", "corrected_through_batch": 6},
        }
    }
    assert committed_through(status, "ticks", {0: 100, 1: 50}) == ("q", 7)
    assert committed_through(status, "ticks", {0: 100, 1: 51}) is None
    assert committed_through(status, "ticks", {0: 100, 1: 50, 2: 1}) is None  # a partition not read yet
    assert committed_through({}, "ticks", {0: 1}) is None
    assert not bars_agree(status, ("q", 7))
    status["queries"]["bars_1m"]["corrected_through_batch"] = 7
    assert bars_agree(status, ("q", 7)) and not bars_agree(status, ("another query", 7))
