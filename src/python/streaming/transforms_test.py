"""Tests of the pure transformations on static DataFrames: validation, routing, bar maths."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from pyspark.sql import DataFrame

from streaming.conftest import KAFKA_TS, KafkaRows
from streaming.transforms import (
    EVENT_TIME,
    TABLE,
    bars_1m,
    is_valid,
    merged_spans,
    parse_ticks,
    route_ticks_batch,
)
from testkit.expected import expected_bars
from tickstream.contracts import Rejection, decode_tick, encode_tick, make_tick
from tickstream.lake import BARS_1M, QUARANTINE, TICKS

KAFKA_TS_US = int(KAFKA_TS.timestamp() * 1_000_000)
T0 = KAFKA_TS_US - 60_000_000
GOOD = make_tick("AAPL", 1, T0, 189.5, 100, 189.49, 189.51)


def _json(**changes: object) -> bytes:
    return orjson.dumps({**GOOD, **changes})


def _without(name: str) -> bytes:
    return orjson.dumps({k: v for k, v in GOOD.items() if k != name})


CASES: list[tuple[str, bytes | None]] = [
    ("good", encode_tick(GOOD)),
    ("good_int_price", _json(price=190)),
    ("good_extra_field", _json(venue="XNAS")),
    ("good_dotted_symbol", _json(symbol="BRK.B")),
    ("not_json", b'{"symbol": '),
    ("not_json_text", b"hello"),
    ("not_json_empty", b""),
    ("not_json_null_value", None),
    ("array", b"[1, 2]"),
    ("number", b"12"),
    ("missing_price", _without("price")),
    ("missing_ts", _without("ts_us")),
    ("seq_float", _json(seq=1.0)),
    ("seq_string", _json(seq="1")),
    ("size_bool", _json(size=True)),
    ("price_string", _json(price="189.5")),
    ("price_null", _json(price=None)),
    ("symbol_number", _json(symbol=42)),
    ("version_2", _json(schema_version=2)),
    ("version_huge", _json(schema_version=4_294_967_297)),
    ("symbol_lower", _json(symbol="aapl")),
    ("symbol_too_long", _json(symbol="ABCDEFGHIJK")),
    ("seq_zero", _json(seq=0)),
    ("ts_before_2000", _json(ts_us=946_684_799_999_999)),
    ("ts_far_future", _json(ts_us=KAFKA_TS_US + 86_400_000_001)),
    ("ts_just_ok", _json(ts_us=KAFKA_TS_US + 86_400_000_000)),
    ("price_zero", _json(price=0)),
    ("bid_negative", _json(bid=-1.0)),
    ("size_zero", _json(size=0)),
    ("crossed", _json(bid=190.0, ask=189.0)),
    ("single_quotes", encode_tick(GOOD).replace(b'"', b"'")),
    ("nan_token", encode_tick(GOOD).replace(b'"price":189.5', b'"price":NaN')),
    ("price_infinity_string", _json(price="Infinity")),
    ("price_nan_string", _json(price="NaN")),
    ("trailing_garbage", encode_tick(GOOD) + b" x"),
    ("two_objects", encode_tick(GOOD) + encode_tick(GOOD)),
    ("multi_line", encode_tick(GOOD).replace(b",", b",\n")),
    ("nested_extra_field", _json(venue={"mic": "XNAS"})),
    ("duplicate_key", encode_tick(GOOD).replace(b'"seq":1', b'"seq":1,"seq":2')),
    ("leading_space", b" " + encode_tick(GOOD)),
]


@pytest.fixture(scope="module")
def parsed(kafka_rows: KafkaRows) -> dict[str, dict[str, object]]:
    df = parse_ticks(kafka_rows([value for _, value in CASES]))
    rows = sorted(df.collect(), key=lambda r: r.kafka_offset)
    return {name: row.asDict() for (name, _), row in zip(CASES, rows, strict=True)}


@pytest.mark.parametrize(("name", "value"), CASES, ids=[name for name, _ in CASES])
def test_streaming_validation_is_the_contracts(
    parsed: dict[str, dict[str, object]], name: str, value: bytes | None
) -> None:
    expected = decode_tick(value or b"", now_us_override=KAFKA_TS_US)
    row = parsed[name]
    if isinstance(expected, Rejection):
        assert (row["reason"], row["detail"], row[EVENT_TIME]) == (expected.reason, expected.detail, None)
        assert row["raw_value"] == (bytearray(value) if value is not None else None)  # kept for quarantine
    else:
        assert (row["reason"], row["raw_value"]) == (None, None)  # valid ticks do not carry their bytes
        assert {k: row[k] for k in expected} == expected
        assert row[EVENT_TIME] == datetime.fromtimestamp(expected["ts_us"] / 1e6, tz=UTC).replace(tzinfo=None)


def test_rows_are_routed_with_their_tables_columns(kafka_rows: KafkaRows) -> None:
    routed = route_ticks_batch(parse_ticks(kafka_rows([b"oops", encode_tick(GOOD)])))
    rows = {r[TABLE]: r for r in routed.collect()}
    bad, good = rows["quarantine"], rows["ticks"]
    assert (bytes(bad.raw_value), bad.reason, bad.kafka_offset, bad.kafka_ts) == (
        b"oops",
        "not_json",
        0,
        KAFKA_TS.replace(tzinfo=None),
    )  # the quarantine is partitioned by its Kafka timestamp
    event_time = datetime.fromtimestamp(T0 / 1e6, tz=UTC).replace(tzinfo=None)
    assert (good[EVENT_TIME], good.symbol, good.reason) == (event_time, "AAPL", None)  # ticks: by event time
    assert set(TICKS.columns) | set(QUARANTINE.columns) <= set(routed.columns)


def _ticks(kafka_rows: KafkaRows, ticks: list[tuple[str, int, int, float, int]]) -> DataFrame:
    values = [encode_tick(make_tick(s, q, T0 + off, p, z, p - 0.01, p + 0.01)) for s, q, off, p, z in ticks]
    return parse_ticks(kafka_rows(values)).where(is_valid())


def test_bars_ohlcv_vwap_by_hand(kafka_rows: KafkaRows) -> None:
    # T0 = 09:29:00; offsets in microseconds. Two symbols, two minutes for AAPL.
    ticks = [
        ("AAPL", 3, 30_000_000, 101.0, 200),  # 09:29:30
        ("AAPL", 1, 0, 100.0, 100),  # 09:29:00, first -> open
        ("AAPL", 2, 0, 99.5, 300),  # same ts, higher seq -> not open
        ("AAPL", 4, 59_999_999, 100.5, 100),  # last of the minute -> close
        ("AAPL", 5, 60_000_000, 102.0, 50),  # 09:30:00 -> next bar
        ("MSFT", 1, 10_000_000, 400.0, 10),
    ]
    bars = {
        (b.symbol, b.window_start.minute): b.asDict() for b in bars_1m(_ticks(kafka_rows, ticks)).collect()
    }
    first = bars[("AAPL", 29)]
    assert (first["open"], first["high"], first["low"], first["close"]) == (100.0, 101.0, 99.5, 100.5)
    assert (first["volume"], first["trade_count"]) == (700, 4)
    notional = (
        Decimal("100.0") * 100 + Decimal("99.5") * 300 + Decimal("101.0") * 200 + Decimal("100.5") * 100
    )
    assert first["vwap"] == float(notional / 700)
    assert first["window_end"] - first["window_start"] == datetime(2024, 1, 1, 0, 1) - datetime(2024, 1, 1)
    second = bars[("AAPL", 30)]
    assert (second["open"], second["close"], second["volume"], second["vwap"]) == (102.0, 102.0, 50, 102.0)
    assert bars[("MSFT", 29)]["trade_count"] == 1
    assert list(bars_1m(_ticks(kafka_rows, ticks)).columns) == list(BARS_1M.columns)


def test_bars_survive_overflowing_values(kafka_rows: KafkaRows) -> None:
    huge = [("AAPL", 1, 0, 1e12, 9_000_000_000_000_000_000), ("AAPL", 2, 1, 1.0, 9_000_000_000_000_000_000)]
    (bar,) = bars_1m(_ticks(kafka_rows, huge)).collect()
    assert (bar.volume, bar.vwap, bar.trade_count, bar.high) == (None, None, 2, 1e12)


@pytest.mark.parametrize("seed", [1, 4, 13])
def test_bars_equal_the_independent_bars(kafka_rows: KafkaRows, seed: int) -> None:
    rng = random.Random(seed)
    ticks = [
        (
            rng.choice("ABC"),
            seq,
            rng.randrange(5 * 60_000_000),
            round(rng.uniform(10, 500), 2),
            rng.randrange(1, 900),
        )
        for seq in range(1, 1_500)
    ]
    rng.shuffle(ticks)  # bars do not depend on the order ticks arrive in
    frame = _ticks(kafka_rows, ticks).repartition(3)
    expected = expected_bars(make_tick(s, q, T0 + off, p, z, p - 0.01, p + 0.01) for s, q, off, p, z in ticks)
    rows = [
        (b.symbol, int(b.window_start.replace(tzinfo=UTC).timestamp() * 1e6), *list(b)[3:])
        for b in bars_1m(frame).collect()
    ]
    assert sorted(rows) == expected


def test_spans_are_joined_then_merged_across_the_smallest_gaps() -> None:
    def at(second: int) -> datetime:
        return datetime(2024, 3, 1, tzinfo=UTC) + timedelta(seconds=second)

    spans = [(at(50), at(60)), (at(0), at(10)), (at(5), at(20)), (at(100), at(101)), (at(1000), at(1001))]
    assert merged_spans(spans, 10) == [
        (at(0), at(20)),
        (at(50), at(60)),
        (at(100), at(101)),
        (at(1000), at(1001)),
    ]
    assert merged_spans(spans, 2) == [(at(0), at(101)), (at(1000), at(1001))]
    assert merged_spans(spans, 1) == [(at(0), at(1001))]
    assert merged_spans([], 3) == []


def test_a_tick_far_ahead_of_its_kafka_time_is_quarantined(kafka_rows: KafkaRows) -> None:
    ahead = make_tick("AAPL", 1, int((KAFKA_TS + timedelta(hours=20)).timestamp() * 1e6), 1.0, 1, 1.0, 1.0)
    near = make_tick("AAPL", 2, int((KAFKA_TS + timedelta(minutes=4)).timestamp() * 1e6), 1.0, 1, 1.0, 1.0)
    rows = parse_ticks(kafka_rows([encode_tick(ahead), encode_tick(near)])).orderBy("kafka_offset").collect()
    assert [r.reason for r in rows] == ["future_timestamp", None]
    strict = parse_ticks(kafka_rows([encode_tick(near)]), max_ahead_us=60_000_000).collect()
    assert [r.reason for r in strict] == ["future_timestamp"]
