"""Commits of micro-batches and bars to a local test lake: once per batch and table, replays skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import DataFrame, SparkSession

from streaming.conftest import KAFKA_TS, KafkaRows
from streaming.transforms import parse_ticks, route_ticks_batch
from streaming.writers import (
    SNAPSHOT_BATCH_ID,
    SNAPSHOT_KAFKA_OFFSETS,
    SNAPSHOT_QUERY_ID,
    BarsUpdater,
    IcebergBatchSink,
    committed_offsets,
    floor_minute,
    uncorrected_late_hours,
)
from testkit.expected import expected_bars
from testkit.lake import TestLake, tick_rows
from testkit.spark import register_lake
from tickstream.catalog import load_table
from tickstream.contracts import Tick, encode_tick, make_tick
from tickstream.lake import BARS_1M, QUARANTINE, TICKS

QUERY = "0c0ffee0-0000-4000-8000-000000000001"
T0 = int((KAFKA_TS - timedelta(minutes=2)).timestamp() * 1_000_000)  # 09:28:00


def tick(seq: int, offset_s: float, price: float = 100.0, symbol: str = "AAPL") -> Tick:
    return make_tick(symbol, seq, T0 + int(offset_s * 1_000_000), price, 10 + seq, price - 0.01, price + 0.01)


@pytest.fixture
def lake(spark: SparkSession, local_lake: TestLake) -> TestLake:
    return register_lake(spark, local_lake)


def batch(kafka_rows: KafkaRows, values: list[bytes]) -> DataFrame:
    return route_ticks_batch(parse_ticks(kafka_rows(values)))


def sink(lake: TestLake, tables: tuple = (TICKS, QUARANTINE)) -> IcebergBatchSink:  # type: ignore[type-arg]
    return IcebergBatchSink(tables, lake.settings.spark_identifier)


def stored_bars(lake: TestLake) -> list[tuple[object, ...]]:
    """The bars table's rows in `expected_bars` form (window start in microseconds), sorted."""
    columns = ("open", "high", "low", "close", "volume", "vwap", "trade_count")
    return sorted(
        (b["symbol"], int(b["window_start"].timestamp() * 1e6), *(b[c] for c in columns))
        for b in lake.read(BARS_1M).to_pylist()
    )


def snapshots(lake: TestLake, table: str) -> list[dict[str, str]]:
    history = load_table(lake.catalog, lake.settings, table).snapshots()
    return [dict(s.summary.additional_properties) for s in history if s.summary is not None]


def test_a_batch_commits_each_table_once_with_its_ids(kafka_rows: KafkaRows, lake: TestLake) -> None:
    values = [encode_tick(tick(1, 0)), encode_tick(tick(2, 1)), b"not json"]
    output = sink(lake).write(batch(kafka_rows, values), QUERY, 7)
    assert (output.rows, dict(output.reasons), output.skipped) == (
        {"ticks": 2, "quarantine": 1},
        {"not_json": 1},
        (),
    )
    assert sorted(lake.read(TICKS)["seq"].to_pylist()) == [1, 2]
    assert lake.read(QUARANTINE)["reason"].to_pylist() == ["not_json"]
    for table in (TICKS.name, QUARANTINE.name):
        (summary,) = snapshots(lake, table)
        assert (summary[SNAPSHOT_QUERY_ID], summary[SNAPSHOT_BATCH_ID]) == (QUERY, "7")


def test_a_replayed_batch_is_skipped_table_by_table(kafka_rows: KafkaRows, lake: TestLake) -> None:
    values = [encode_tick(tick(1, 0)), b"not json"]
    # the first attempt committed the ticks, then the driver died before the quarantine's append
    first = sink(lake, (TICKS,)).write(batch(kafka_rows, values), QUERY, 3)
    assert first.skipped == () and lake.read(QUARANTINE).num_rows == 0
    # the replay, in a new process (nothing cached): ticks already there, quarantine appended now
    replay = sink(lake).write(batch(kafka_rows, values), QUERY, 3)
    assert replay.skipped == ("ticks",) and replay.rows == {"ticks": 1, "quarantine": 1}
    assert (lake.read(TICKS).num_rows, len(snapshots(lake, TICKS.name))) == (1, 1)
    assert lake.read(QUARANTINE).num_rows == 1
    # a second replay skips both; the next batch and another query's batch 3 are appended
    again = sink(lake)
    assert again.write(batch(kafka_rows, values), QUERY, 3).skipped == ("ticks", "quarantine")
    assert again.write(batch(kafka_rows, [encode_tick(tick(2, 1))]), QUERY, 4).skipped == ()
    other = "0c0ffee0-0000-4000-8000-000000000002"
    assert sink(lake).write(batch(kafka_rows, [encode_tick(tick(3, 2))]), other, 3).skipped == ()
    assert sorted(lake.read(TICKS)["seq"].to_pylist()) == [1, 2, 3]


def test_ticks_are_stored_however_late_and_duplicates_never(
    spark: SparkSession, kafka_rows: KafkaRows, lake: TestLake
) -> None:
    writer = sink(lake)
    first = [encode_tick(tick(1, 0)), encode_tick(tick(2, 30)), encode_tick(tick(2, 30))]
    output = writer.write(batch(kafka_rows, first), QUERY, 0)
    assert (output.rows_of(TICKS.name), output.duplicates, output.late) == (2, 1, 0)
    # a batch after 09:29 was complete: seq 1 again (stored), seq 3 of 09:28:10 (late, new), seq 4 on time
    complete_until = datetime.fromtimestamp(T0 / 1e6, tz=UTC) + timedelta(minutes=1)
    values = [encode_tick(tick(1, 0)), encode_tick(tick(3, 10)), encode_tick(tick(4, 65))]
    output = writer.write(batch(kafka_rows, values), QUERY, 1, late_before=complete_until)
    assert (output.rows_of(TICKS.name), output.duplicates, output.late) == (
        2,
        1,
        2,
    )  # seq 1: late, a duplicate
    assert output.late_hours == {datetime(2024, 3, 1, 9, tzinfo=UTC)}
    assert sorted(lake.read(TICKS)["seq"].to_pylist()) == [1, 2, 3, 4]
    ticks_id, bars_id = (lake.settings.spark_identifier(t.name) for t in (TICKS, BARS_1M))
    # a job that dies now leaves the late hour to its successor, until the bars are committed again
    assert uncorrected_late_hours(spark, ticks_id, bars_id) == {datetime(2024, 3, 1, 9, tzinfo=UTC)}
    BarsUpdater(ticks_id, bars_id).update(spark, complete_until)
    assert uncorrected_late_hours(spark, ticks_id, bars_id) == set()
    # a re-read of the whole topic (a lost checkpoint) appends nothing
    again = sink(lake).write(batch(kafka_rows, first + values), "another-query", 0)
    assert (again.rows_of(TICKS.name), again.duplicates) == (0, 6)
    assert lake.read(TICKS).num_rows == 4


def test_a_tick_is_late_only_once_its_minute_is_complete(kafka_rows: KafkaRows, lake: TestLake) -> None:
    # event time has passed 09:29:30: the minute 09:28 is complete, 09:29 is not (its bar is not written)
    complete_until = datetime.fromtimestamp(T0 / 1e6, tz=UTC) + timedelta(minutes=1, seconds=30)
    values = [encode_tick(tick(1, 59.9)), encode_tick(tick(2, 60)), encode_tick(tick(3, 85))]
    output = sink(lake).write(batch(kafka_rows, values), QUERY, 0, late_before=complete_until)
    assert (output.rows_of(TICKS.name), output.late) == (3, 1)
    assert output.late_hours == {datetime(2024, 3, 1, 9, tzinfo=UTC)}


def test_appends_record_the_kafka_offsets_committed(
    spark: SparkSession, kafka_rows: KafkaRows, lake: TestLake
) -> None:
    writer = sink(lake)
    writer.write(batch(kafka_rows, [encode_tick(tick(1, 0)), b"bad", encode_tick(tick(2, 1))]), QUERY, 0)
    assert snapshots(lake, TICKS.name)[-1][SNAPSHOT_KAFKA_OFFSETS] == '{"0": 3}'
    identifiers = [lake.settings.spark_identifier(t.name) for t in (TICKS, QUARANTINE)]
    assert committed_offsets(spark, identifiers) == {0: 3}
    writer.offsets[1] = 40  # as if partition 1 had been read before
    writer.write(batch(kafka_rows, [b"bad", b"worse"]), QUERY, 1)  # quarantine only
    assert committed_offsets(spark, identifiers) == {0: 3, 1: 40}


def test_late_ticks_get_their_bars_corrected(spark: SparkSession, lake: TestLake) -> None:
    on_time = [tick(i, i * 2.0, 100 + i % 5) for i in range(1, 60)]  # 09:28:02 .. 09:29:58
    lake.append(TICKS, tick_rows(on_time))
    bars = BarsUpdater(
        lake.settings.spark_identifier(TICKS.name), lake.settings.spark_identifier(BARS_1M.name)
    )
    start = floor_minute(datetime.fromtimestamp(T0 / 1e6, tz=UTC))
    assert bars.update(spark, start + timedelta(minutes=2)) is not None
    late = [tick(100, 1.0, 90.0), tick(101, 119.5, 120.0), tick(102, 5.0, 95.0, "MSFT")]  # new low, close
    lake.append(TICKS, tick_rows(late, first_offset=100))
    assert bars.correct(spark, {start.replace(minute=0) + timedelta(hours=5)}) is None  # no bars there yet
    corrected = bars.correct(spark, {start.replace(minute=0)})
    assert corrected is not None and corrected.rows == 3
    assert stored_bars(lake) == expected_bars(on_time + late)


def test_replay_check_steps_over_compaction(
    spark: SparkSession, kafka_rows: KafkaRows, lake: TestLake
) -> None:
    writer = sink(lake)
    for epoch in range(3):
        writer.write(batch(kafka_rows, [encode_tick(tick(epoch + 1, epoch))]), QUERY, epoch)
    spark.sql(
        f"CALL {lake.settings.name}.system.rewrite_data_files("
        f"table => '{lake.settings.spark_identifier('ticks')}', "
        "options => map('min-input-files', '2'))"
    ).collect()
    assert snapshots(lake, TICKS.name)[-1].get(SNAPSHOT_QUERY_ID) is None  # the newest is compaction's
    assert sink(lake).write(batch(kafka_rows, [encode_tick(tick(3, 2))]), QUERY, 2).skipped == ("ticks",)
    assert lake.read(TICKS).num_rows == 3


def test_an_empty_batch_commits_nothing(kafka_rows: KafkaRows, lake: TestLake) -> None:
    output = sink(lake).write(batch(kafka_rows, []), QUERY, 0)
    assert output.rows == {} and snapshots(lake, TICKS.name) == [] and snapshots(lake, QUARANTINE.name) == []


def test_bars_of_complete_minutes_once_each(spark: SparkSession, lake: TestLake) -> None:
    ticks = [
        tick(i, i * 1.5, 100 + i % 7, "AAPL" if i % 3 else "MSFT") for i in range(1, 150)
    ]  # 09:28-09:31:43
    lake.append(TICKS, tick_rows(ticks[:100]))
    lake.append(TICKS, tick_rows(ticks[100:], first_offset=100))
    bars = BarsUpdater(
        lake.settings.spark_identifier(TICKS.name), lake.settings.spark_identifier(BARS_1M.name)
    )
    minute = timedelta(minutes=1)
    start = floor_minute(datetime.fromtimestamp(T0 / 1e6, tz=UTC))

    first = bars.update(spark, start + 2 * minute + timedelta(seconds=20))  # 09:28 and 09:29 are complete
    assert first is not None and (first.start, first.end) == (start, start + 2 * minute)
    assert bars.update(spark, start + 2 * minute + timedelta(seconds=50)) is None  # no new complete minute
    second = bars.update(spark, start + 4 * minute)
    assert second is not None and (second.start, second.end) == (start + 2 * minute, start + 4 * minute)

    restarted = BarsUpdater(bars.ticks, bars.bars)  # a new process reads where the bars table ends
    assert restarted.update(spark, start + 4 * minute) is None
    assert restarted.through == start + 4 * minute

    complete = [t for t in ticks if t["ts_us"] < int((start + 4 * minute).timestamp() * 1e6)]
    assert stored_bars(lake) == expected_bars(complete)
