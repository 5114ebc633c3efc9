"""Tests of replay: CSV and Parquet, ticks and bars, and speed-factor pacing with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from producer.replay import read_table, replay_batches, replay_file, to_tick_frame
from tickstream.contracts import Rejection, Tick, decode_tick

T0 = datetime(2026, 1, 2, 14, 30, tzinfo=UTC)
T0_US = int(T0.timestamp() * 1_000_000)
NOW_US = T0_US + 86_400_000_000


class FakeClock:
    """Time moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def tick_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": ["AAPL", "MSFT", "AAPL", "AAPL"],
            "timestamp": [T0, T0.replace(second=1), T0.replace(second=2), T0.replace(second=10)],
            "price": [189.5, 415.2, 189.52, 189.49],
            "size": [100, 250, 37, 1_000],
            "bid": [189.49, 415.19, 189.51, 189.48],
            "ask": [189.51, 415.22, 189.53, 189.50],
        }
    )


def bar_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": ["SPY", "SPY"],
            "timestamp": [T0, T0.replace(minute=31)],
            "open": [520.0, 521.0],
            "high": [521.5, 521.2],
            "low": [519.8, 519.0],
            "close": [521.0, 519.5],
            "volume": [10_001, 2],
        }
    )


def decoded(path: Path) -> list[Tick]:
    ticks: list[Tick] = []
    for batch in replay_file(path, speed=0):
        assert batch.keys == [v.split(b'"symbol":"')[1].split(b'"')[0] for v in batch.values]
        for value in batch.values:
            result = decode_tick(value, now_us_override=NOW_US)
            assert not isinstance(result, Rejection), result
            ticks.append(result)
    return ticks


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_ticks_file_round_trips(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"ticks{suffix}"
    frame = tick_frame()
    frame.write_csv(path) if suffix == ".csv" else frame.write_parquet(path)
    ticks = decoded(path)
    assert [(t["symbol"], t["seq"]) for t in ticks] == [("AAPL", 1), ("MSFT", 1), ("AAPL", 2), ("AAPL", 3)]
    assert ticks[0]["ts_us"] == T0_US and ticks[3]["ts_us"] == T0_US + 10_000_000
    assert (ticks[2]["price"], ticks[2]["size"], ticks[2]["bid"], ticks[2]["ask"]) == (
        189.52,
        37,
        189.51,
        189.53,
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_bars_file_becomes_four_ticks_per_bar(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"bars{suffix}"
    frame = bar_frame()
    frame.write_csv(path) if suffix == ".csv" else frame.write_parquet(path)
    ticks = decoded(path)
    assert [t["seq"] for t in ticks] == list(range(1, 9))
    assert [t["price"] for t in ticks] == [520.0, 519.8, 521.5, 521.0, 521.0, 521.2, 519.0, 519.5]
    offsets_s = [(t["ts_us"] - T0_US) / 1e6 for t in ticks]
    assert offsets_s == [0, 15, 30, 59, 60, 75, 90, 119]
    assert sum(t["size"] for t in ticks[:4]) == 10_001
    assert all(t["size"] >= 1 for t in ticks)
    assert all(t["bid"] == t["price"] == t["ask"] for t in ticks)


def test_naive_and_offset_times_are_utc_and_ts_us_is_taken_as_is(tmp_path: Path) -> None:
    iso = pl.DataFrame({"symbol": ["A"], "time": ["2026-01-02T09:30:00-05:00"], "price": [1.0], "size": [1]})
    naive = pl.DataFrame({"symbol": ["A"], "ts": [datetime(2026, 1, 2, 14, 30)], "price": [1.0], "size": [1]})
    raw = pl.DataFrame({"symbol": ["A"], "ts_us": [T0_US], "price": [1.0], "size": [1]})
    for frame in (iso, naive, raw):
        assert to_tick_frame(frame)["ts_us"].to_list() == [T0_US]


def test_unknown_layouts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need 'price'"):
        to_tick_frame(pl.DataFrame({"symbol": ["A"], "timestamp": [T0], "last": [1.0]}))
    with pytest.raises(ValueError, match="time column"):
        to_tick_frame(pl.DataFrame({"symbol": ["A"], "price": [1.0], "size": [1]}))
    with pytest.raises(ValueError, match="csv or .parquet"):
        read_table(tmp_path / "ticks.json")


@pytest.mark.parametrize("speed", [1.0, 100.0])
def test_speed_factor_paces_ticks_by_event_time(speed: float) -> None:
    clock = FakeClock()
    start = clock.now
    emitted: list[tuple[float, int]] = []
    for batch in replay_batches(to_tick_frame(tick_frame()), speed=speed, clock=clock):
        emitted.append((clock.now - start, len(batch)))
    # Ticks at +0 s, +1 s, +2 s, +10 s of event time.
    assert emitted == [
        (pytest.approx(0.0), 1),
        (pytest.approx(1.0 / speed), 1),
        (pytest.approx(2.0 / speed), 1),
        (pytest.approx(10.0 / speed), 1),
    ]


@pytest.mark.parametrize("speed", [0.0, float("inf")])
def test_unpaced_replay_never_sleeps(speed: float) -> None:
    clock = FakeClock()
    batches = list(replay_batches(to_tick_frame(tick_frame()), speed=speed, clock=clock, batch_size=3))
    assert [len(b) for b in batches] == [3, 1]
    assert clock.sleeps == []


def test_ticks_due_together_go_in_one_batch() -> None:
    frame = tick_frame().with_columns(timestamp=pl.lit(T0))
    clock = FakeClock()
    assert [len(b) for b in replay_batches(to_tick_frame(frame), speed=1.0, clock=clock)] == [4]
