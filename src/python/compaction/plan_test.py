"""Unit tests of compaction planning: partitions, closedness, plans, run ids, verification, garbage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compaction.plan import (
    HourPartition,
    Listed,
    VerificationError,
    closedness,
    garbage,
    output_files,
    partitions,
    plan_hour,
    run_id_for,
    verify,
)
from tickstream.lake import CommittedHour, LakeObject, Manifest

HOUR = HourPartition.of("ticks", "2024-03-01", "09")
MARGIN = timedelta(minutes=2)
STREAM = tuple(
    LakeObject(f"stream/ticks/date=2024-03-01/hour=09/part-0c0ffee0-e{i:012d}.parquet", 100) for i in range(3)
)


def manifest(
    replaced: tuple[str, ...], created_at: str = "2024-03-01T10:10:00.000Z", run_id: str = "rA"
) -> Manifest:
    objects = (LakeObject(f"compacted/ticks/date=2024-03-01/hour=09/{run_id}/part-00000.parquet", 250, 30),)
    return Manifest("ticks", "2024-03-01", "09", run_id, created_at, objects, 30, {"rows": "30"}, replaced)


def status(watermark: str | None) -> dict[str, object]:
    return {"queries": {"ticks": {"watermark": watermark}}}


def test_partitions_cover_the_range_hour_by_hour() -> None:
    start = datetime(2024, 3, 1, 22, 30, tzinfo=UTC)
    found = partitions(["ticks", "bars_1m"], start, datetime(2024, 3, 2, 1, tzinfo=UTC))
    assert [str(p) for p in found[:2]] == ["ticks/date=2024-03-01/hour=22", "bars_1m/date=2024-03-01/hour=22"]
    assert [(p.date, p.hour) for p in found[::2]] == [
        ("2024-03-01", "22"),
        ("2024-03-01", "23"),
        ("2024-03-02", "00"),
    ]


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
        assert "ticks/date=2024-03-01/hour=09" in check.reason


def test_closedness_reads_the_query_of_the_table() -> None:
    bars = HourPartition.of("bars_1m", "2024-03-01", "09")
    assert not closedness(status("2024-03-02T00:00:00Z"), bars, MARGIN).closed
    assert "no watermark" in closedness({}, bars, MARGIN).reason


def test_plan_empty_noop_and_compact() -> None:
    assert plan_hour(HOUR, CommittedHour(None, (), ()), 1 << 20).action == "empty"
    first = plan_hour(HOUR, CommittedHour(None, (), STREAM), 1 << 20)
    assert (first.action, first.files, first.replaced) == ("compact", 1, tuple(o.key for o in STREAM))
    assert first.output_dir == f"compacted/ticks/date=2024-03-01/hour=09/{first.run_id}"
    done = manifest(first.replaced)
    assert plan_hour(HOUR, CommittedHour(done, done.objects, ()), 1 << 20).action == "noop"


def test_late_objects_are_folded_into_a_new_run() -> None:
    done = manifest(tuple(o.key for o in STREAM[:2]))
    late = (STREAM[2],)
    plan = plan_hour(HOUR, CommittedHour(done, done.objects, late), 1 << 20)
    assert plan.action == "compact"
    assert plan.inputs == done.objects + late
    assert plan.replaced == tuple(o.key for o in STREAM)  # cumulative
    assert plan.previous == done


def test_run_id_depends_only_on_inputs_and_layout() -> None:
    assert run_id_for(STREAM, 1 << 20) == run_id_for(tuple(reversed(STREAM)), 1 << 20)
    assert run_id_for(STREAM, 1 << 20) != run_id_for(STREAM[:2], 1 << 20)
    assert run_id_for(STREAM, 1 << 20) != run_id_for(STREAM, 2 << 20)


def test_output_files_right_sized() -> None:
    assert output_files(0, 128) == 1
    assert output_files(128, 128) == 1
    assert output_files(129, 128) == 2


def test_verify_names_every_difference() -> None:
    verify(HOUR, {"rows": "3", "sum_size": "10"}, {"rows": "3", "sum_size": "10"}, 3)
    with pytest.raises(VerificationError, match="sum_size: before '10', after '9'"):
        verify(HOUR, {"rows": "3", "sum_size": "10"}, {"rows": "3", "sum_size": "9"}, 3)
    with pytest.raises(VerificationError, match="rows reported by the writers: 2"):
        verify(HOUR, {"rows": "3"}, {"rows": "3"}, 2)


def test_garbage_waits_for_the_grace_period() -> None:
    done = manifest(tuple(o.key for o in STREAM[:2]), created_at="2024-03-01T10:10:00Z")
    old = datetime(2024, 3, 1, 10, 5, tzinfo=UTC)
    stream = [Listed(o.key, o.bytes, old) for o in STREAM]
    compacted = [
        Listed(done.objects[0].key, 250, old),
        Listed("compacted/ticks/date=2024-03-01/hour=09/rOLD/part-00000.parquet", 9, old),
    ]
    grace = timedelta(minutes=15)
    assert garbage(HOUR, done, stream, compacted, datetime(2024, 3, 1, 10, 20, tzinfo=UTC), grace).keys == ()
    found = garbage(HOUR, done, stream, compacted, datetime(2024, 3, 1, 10, 30, tzinfo=UTC), grace)
    assert found.replaced_stream == tuple(o.key for o in STREAM[:2])  # the late STREAM[2] stays
    assert found.superseded == ("compacted/ticks/date=2024-03-01/hour=09/rOLD/part-00000.parquet",)


def test_garbage_without_manifest_only_removes_old_orphan_runs() -> None:
    now = datetime(2024, 3, 1, 12, tzinfo=UTC)
    orphan = Listed(
        "compacted/ticks/date=2024-03-01/hour=09/rX/part-00000.parquet", 9, now - timedelta(hours=1)
    )
    fresh = Listed("compacted/ticks/date=2024-03-01/hour=09/rY/part-00000.parquet", 9, now)
    stream = [Listed(o.key, o.bytes, now - timedelta(hours=1)) for o in STREAM]
    assert garbage(HOUR, None, stream, [orphan, fresh], now, timedelta(minutes=15)).keys == (orphan.key,)
