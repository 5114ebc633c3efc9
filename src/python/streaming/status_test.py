"""Tests of the status book: progress + batch outputs -> status object, totals counted once per batch."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from streaming.status import BatchReport, StatusBook
from streaming.writers import BarsOutput, BatchOutput

QID = "11111111-2222-3333-4444-555555555555"
NOW = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


class MemoryStore:
    """A StatusStore that keeps the last object in memory."""

    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []

    def write(self, status: dict[str, Any]) -> None:
        self.written.append(status)


def progress(batch_id: int, rows: int = 10, query_id: str = QID) -> dict[str, Any]:
    return {
        "id": query_id,
        "name": "ticks",
        "batchId": batch_id,
        "timestamp": "2024-03-01T10:00:00.000Z",
        "numInputRows": rows,
        "inputRowsPerSecond": 100.0,
        "processedRowsPerSecond": "NaN",
        "durationMs": {"triggerExecution": 250},
        "sources": [{"endOffset": {"ticks": {"0": 10}}}],
    }


def output(epoch: int, skipped: tuple[str, ...] = ()) -> BatchOutput:
    return BatchOutput(
        epoch,
        {"ticks": 7, "quarantine": 2},
        {"ticks": 8, "quarantine": 2},
        Counter({"not_json": 2}),
        skipped,
        late=1,
        duplicates=3,
        complete_until=datetime(2024, 3, 1, 9, 59, 30, tzinfo=UTC),
    )


def test_report_joins_progress_and_output() -> None:
    report = BatchReport.from_progress(progress(3), output(3, skipped=("ticks",)))
    assert (report.rows_written, report.quarantined, report.late, report.duration_ms) == (7, 2, 1, 250)
    assert report.replayed == ["ticks"] and report.log_fields()["replayed"] == ["ticks"]
    assert report.processed_rows_per_second == 0.0  # NaN from Spark
    assert (report.duplicates, report.watermark) == (3, "2024-03-01T09:59:30.000Z")
    assert BatchReport.from_progress(progress(4), None).watermark is None


def test_totals_count_a_replayed_batch_once() -> None:
    store = MemoryStore()
    book = StatusBook(store)  # type: ignore[arg-type]
    for batch in (0, 1, 1):  # batch 1 replayed after a crash
        book.record_output(QID, output(batch))
        book.on_progress(progress(batch), now=NOW)
    entry = store.written[-1]["queries"]["ticks"]
    assert entry["totals"] == {
        "through_batch_id": 1,
        "input_rows": 20,
        "rows_written": 14,
        "quarantined": 4,
        "late": 2,
        "duplicates": 6,
        "quarantined_by_reason": {"not_json": 4},
    }
    assert (entry["last_batch_id"], entry["watermark"], entry["state"]) == (
        1,
        "2024-03-01T09:59:30.000Z",
        "active",
    )
    assert entry["end_offsets"] == {"ticks": {"0": 10}}


def test_totals_continue_after_restart_and_reset_for_a_new_checkpoint() -> None:
    store = MemoryStore()
    book = StatusBook(store)  # type: ignore[arg-type]
    book.record_output(QID, output(0))  # committed; the job dies before Spark reports the batch
    assert store.written[-1]["queries"]["ticks"]["totals"]["rows_written"] == 7
    restarted = StatusBook(store, store.written[-1])  # type: ignore[arg-type]
    restarted.record_output(QID, output(0))  # the replay of batch 0: not counted again
    restarted.record_output(QID, output(1))
    restarted.on_progress(progress(1), now=NOW)
    assert store.written[-1]["queries"]["ticks"]["totals"]["input_rows"] == 20
    fresh = StatusBook(store, store.written[-1])  # type: ignore[arg-type]
    fresh.record_output("99999999-0000-0000-0000-000000000000", output(0))
    assert store.written[-1]["queries"]["ticks"]["totals"]["input_rows"] == 10


def test_terminated_query_is_marked() -> None:
    store = MemoryStore()
    book = StatusBook(store)  # type: ignore[arg-type]
    book.on_progress(progress(0), now=NOW)
    book.on_terminated("ticks", "boom")
    entry = store.written[-1]["queries"]["ticks"]
    assert (entry["state"], entry["error"], entry["last_batch_id"]) == ("failed", "boom", 0)


def test_bars_updates_are_recorded_beside_the_ticks_query() -> None:
    store = MemoryStore()
    book = StatusBook(store)  # type: ignore[arg-type]
    book.on_progress(progress(1), now=NOW)

    minute = datetime(2024, 3, 1, 9, 58, tzinfo=UTC)
    book.record_bars(BarsOutput(minute, minute.replace(minute=59), 12, 80), now=NOW)
    book.record_bars(
        BarsOutput(
            minute.replace(minute=59), minute.replace(minute=59, second=0).replace(hour=10, minute=0), 3, 40
        ),
        now=NOW,
    )
    bars = store.written[-1]["queries"]["bars_1m"]
    assert (bars["rows_written"], bars["totals"]["rows_written"], bars["watermark"]) == (
        3,
        15,
        "2024-03-01T10:00:00.000Z",
    )
    assert store.written[-1]["queries"]["ticks"]["last_batch_id"] == 1

    book.record_bars_correction(BarsOutput(minute.replace(minute=0), minute, 40, 90), hours=2, now=NOW)
    book.record_bars(BarsOutput(minute, minute, 0, 5), now=NOW)  # a later append keeps the correction
    bars = store.written[-1]["queries"]["bars_1m"]
    assert (bars["corrected_at"], bars["corrected_hours"], bars["corrected_bars"]) == (
        "2024-03-01T10:00:00.000Z",
        2,
        40,
    )


class FailingStore:
    """A StatusStore whose S3 is down."""

    def write(self, status: dict[str, Any]) -> None:
        raise OSError("S3 unreachable")


def test_a_status_write_that_fails_never_raises() -> None:
    book = StatusBook(FailingStore())  # type: ignore[arg-type]
    book.record_bars_failure("S3 unreachable")  # the upkeep's own error path, during an S3 outage
    book.record_output(QID, output(0))
    book.record_bars_consistent(QID, 0)
