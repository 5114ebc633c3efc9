"""Unit tests of compaction planning: partitions, their Iceberg hour ordinal, closedness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compaction.plan import HourPartition, closedness, partitions

HOUR = HourPartition.of("ticks", "2024-03-01", "09")
MARGIN = timedelta(minutes=2)


def status(watermark: str | None) -> dict[str, object]:
    return {"queries": {"ticks": {"watermark": watermark}}}


def test_partitions_cover_the_range_hour_by_hour() -> None:
    start = datetime(2024, 3, 1, 22, 30, tzinfo=UTC)
    found = partitions(["ticks", "bars_1m"], start, datetime(2024, 3, 2, 1, tzinfo=UTC))
    assert [str(p) for p in found[:2]] == ["ticks/2024-03-01T22", "bars_1m/2024-03-01T22"]
    assert [(p.date, p.hour) for p in found[::2]] == [
        ("2024-03-01", "22"),
        ("2024-03-01", "23"),
        ("2024-03-02", "00"),
    ]


def test_ordinal_is_icebergs_hour_transform() -> None:
    # Iceberg's hour(ts) = whole hours since 1970-01-01T00:00Z
    assert HourPartition.of("ticks", "1970-01-01", "00").ordinal == 0
    assert HOUR.ordinal == int(datetime(2024, 3, 1, 9, tzinfo=UTC).timestamp()) // 3600 == 474_801
    assert HourPartition.of("ticks", "1969-12-31", "23").ordinal == -1


@pytest.mark.parametrize(
    ("watermark", "closed"),
    [
        (None, False),
        ("2024-03-01T10:00:00.000Z", False),  # at hour end, before the margin
        ("2024-03-01T10:01:59.999Z", False),
        ("2024-03-01T10:02:00.000Z", True),
        ("2024-03-02T00:00:00Z", True),
    ],
)
def test_closed_when_watermark_past_hour_end_plus_margin(watermark: str | None, closed: bool) -> None:
    check = closedness(status(watermark), HOUR, MARGIN)
    assert check.closed is closed
    if not closed:
        assert "ticks/2024-03-01T09" in check.reason


def test_closedness_reads_the_entry_of_the_table() -> None:
    bars = HourPartition.of("bars_1m", "2024-03-01", "09")
    assert not closedness(status("2024-03-02T00:00:00Z"), bars, MARGIN).closed
    assert "no watermark" in closedness({}, bars, MARGIN).reason
    bars_status = {"queries": {"bars_1m": {"watermark": "2024-03-01T10:05:00Z"}}}
    assert closedness(bars_status, bars, MARGIN).closed
