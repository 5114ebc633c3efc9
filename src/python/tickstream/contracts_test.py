"""Tests of the tick contract: round trip, every rejection reason, and the shared constants."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import orjson
import pyarrow as pa
import pytest

from tickstream import contracts
from tickstream.contracts import (
    FIELD_NAMES,
    REJECT_REASONS,
    TS_MAX_AHEAD_US,
    TS_MIN_US,
    Rejection,
    Tick,
    decode_tick,
    decode_tick_batch,
    dedup_key,
    encode_tick,
    encode_tick_columns,
    make_tick,
)

NOW_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def good_tick() -> Tick:
    return make_tick("BRK.B", 7, NOW_US - 1_000, 408.91, 300, 408.90, 408.93)


def reject(payload: object) -> Rejection:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    result = decode_tick(raw, now_us_override=NOW_US)
    assert isinstance(result, Rejection), result
    return result


def with_field(**changes: object) -> dict[str, object]:
    return {**good_tick(), **changes}


def test_round_trip_keeps_every_field_and_order() -> None:
    raw = encode_tick(good_tick())
    assert list(orjson.loads(raw)) == list(FIELD_NAMES)
    assert decode_tick(raw, now_us_override=NOW_US) == good_tick()


def test_column_encoder_matches_single_encoder() -> None:
    rng = np.random.default_rng(7)
    n = 5_000
    cents = np.concatenate([rng.integers(1, 10**8, n - 4), [1, 100, 10_000, 123_456_789_012]])
    ticks = [
        make_tick(s, q, t, p, z, b, a)
        for s, q, t, p, z, b, a in zip(
            rng.choice(["AAPL", "BRK.B", "X"], n).tolist(),
            rng.integers(0, 2**40, n).tolist(),
            rng.integers(TS_MIN_US, NOW_US, n).tolist(),
            (cents / 100).tolist(),
            rng.integers(1, 10**6, n).tolist(),
            ((cents - 1) / 100).tolist(),
            ((cents + 1) / 100).tolist(),
            strict=True,
        )
    ]
    columns = [np.array([tick[name] for tick in ticks]) for name in FIELD_NAMES[1:]]  # type: ignore[literal-required]
    assert encode_tick_columns(*columns) == [encode_tick(tick) for tick in ticks]


def test_integer_prices_and_unknown_fields_are_accepted() -> None:
    result = decode_tick(
        orjson.dumps(with_field(price=409, venue="XNYS", bid=408, ask=410)), now_us_override=NOW_US
    )
    assert not isinstance(result, Rejection)
    assert result["price"] == 409.0 and isinstance(result["price"], float)
    assert "venue" not in result


def test_boundary_values_are_accepted() -> None:
    for ts_us in (TS_MIN_US, NOW_US + TS_MAX_AHEAD_US):
        assert not isinstance(
            decode_tick(orjson.dumps(with_field(ts_us=ts_us)), now_us_override=NOW_US), Rejection
        )
    assert not isinstance(
        decode_tick(orjson.dumps(with_field(bid=1.0, ask=1.0, price=1.0)), NOW_US), Rejection
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"schema_version":1,"symbol":"AA', contracts.REJECT_NOT_JSON),
        (b"\xff\xfe", contracts.REJECT_NOT_JSON),
        ([1, "AAPL"], contracts.REJECT_NOT_OBJECT),
        ("AAPL", contracts.REJECT_NOT_OBJECT),
        ({k: v for k, v in good_tick().items() if k != "size"}, contracts.REJECT_MISSING_FIELD),
        ({k: v for k, v in good_tick().items() if k != "ts_us"}, contracts.REJECT_MISSING_FIELD),
        (with_field(price="408.91"), contracts.REJECT_WRONG_TYPE),
        (with_field(size=300.0), contracts.REJECT_WRONG_TYPE),
        (with_field(seq=True), contracts.REJECT_WRONG_TYPE),
        (json.dumps(with_field(seq=2**63)).encode(), contracts.REJECT_WRONG_TYPE),
        (json.dumps(with_field(size=-(2**63) - 1)).encode(), contracts.REJECT_WRONG_TYPE),
        (with_field(symbol=None), contracts.REJECT_WRONG_TYPE),
        (with_field(bid=None), contracts.REJECT_WRONG_TYPE),
        (with_field(schema_version=2), contracts.REJECT_BAD_SCHEMA_VERSION),
        (with_field(symbol="aapl"), contracts.REJECT_BAD_SYMBOL),
        (with_field(symbol=""), contracts.REJECT_BAD_SYMBOL),
        (with_field(symbol="ABCDEFGHIJK"), contracts.REJECT_BAD_SYMBOL),
        (with_field(symbol="1AB"), contracts.REJECT_BAD_SYMBOL),
        (with_field(seq=0), contracts.REJECT_BAD_SEQ),
        (with_field(ts_us=NOW_US // 1_000), contracts.REJECT_ABSURD_TIMESTAMP),
        (with_field(ts_us=TS_MIN_US - 1), contracts.REJECT_ABSURD_TIMESTAMP),
        (with_field(ts_us=NOW_US + TS_MAX_AHEAD_US + 1), contracts.REJECT_FUTURE_TIMESTAMP),
        (with_field(ts_us=NOW_US + 20 * 3600 * 1_000_000), contracts.REJECT_FUTURE_TIMESTAMP),
        (with_field(price=0.0), contracts.REJECT_NON_POSITIVE_PRICE),
        (with_field(price=-1.5), contracts.REJECT_NON_POSITIVE_PRICE),
        (with_field(bid=0.0), contracts.REJECT_NON_POSITIVE_PRICE),
        (with_field(ask=-0.01), contracts.REJECT_NON_POSITIVE_PRICE),
        (with_field(size=0), contracts.REJECT_NON_POSITIVE_SIZE),
        (with_field(size=-100), contracts.REJECT_NON_POSITIVE_SIZE),
        (with_field(bid=409.0, ask=408.9), contracts.REJECT_CROSSED_QUOTE),
    ],
)
def test_each_rejection_reason(payload: object, reason: str) -> None:
    rejection = reject(payload)
    assert rejection.reason == reason
    assert rejection.reason in REJECT_REASONS
    assert rejection.detail


def test_every_reason_code_is_exercised() -> None:
    params = test_each_rejection_reason.pytestmark[0].args[1]  # type: ignore[attr-defined]
    assert {reason for _, reason in params} == set(REJECT_REASONS)


def test_symbol_pattern_is_a_plain_regex_other_engines_can_use() -> None:
    pattern = re.compile(contracts.SYMBOL_PATTERN)
    assert pattern.match("BRK.B") and pattern.match("A") and not pattern.match("BRK B")
    assert TS_MIN_US == 946_684_800_000_000  # 2000-01-01T00:00:00Z


def test_dedup_key_is_symbol_seq_ts() -> None:
    tick = good_tick()
    assert dedup_key(tick) == ("BRK.B", 7, NOW_US - 1_000)
    assert contracts.DEDUP_KEY_FIELDS == ("symbol", "seq", "ts_us")


def test_field_specs_cover_the_typed_dict() -> None:
    assert set(FIELD_NAMES) == set(Tick.__annotations__)
    assert {f.kind for f in contracts.TICK_FIELDS} <= {"int", "long", "double", "string"}


def test_kafka_key_is_the_utf8_symbol() -> None:
    assert contracts.kafka_key("BRK.B") == b"BRK.B"
    assert contracts.TOPIC.name == "ticks"


# --- decode_tick_batch: the same verdicts as decode_tick, row by row -----------------------------------

_MUTANTS: list[object] = [
    None,
    True,
    0,
    -1,
    1.0,
    2.5,
    1e400,
    -0.0,
    "1",
    "",
    "AAPL",
    "aapl",
    "BRK.B",
    "ABCDEFGHIJK",
    [1],
    {"a": 1},
    2**63,
    2**64,
    NOW_US,
    TS_MIN_US - 1,
    NOW_US + TS_MAX_AHEAD_US,
    NOW_US + TS_MAX_AHEAD_US + 1,
]


def _mutated_records(rng: random.Random, count: int) -> list[bytes | None]:
    """Good ticks, a third of them changed: a field re-typed or dropped, bytes damaged, lines split."""
    records: list[bytes | None] = []
    for seq in range(1, count + 1):
        tick: dict[str, object] = {**good_tick(), "seq": seq}
        raw = orjson.dumps(tick)
        roll = rng.random()
        if roll < 0.12:
            tick[rng.choice(FIELD_NAMES)] = rng.choice(_MUTANTS)
            raw = json.dumps(tick, separators=(",", ":")).encode()  # also 2**64 and Infinity
        elif roll < 0.16:
            del tick[rng.choice(FIELD_NAMES)]
            raw = orjson.dumps(tick)
        elif roll < 0.20:
            position = rng.randrange(len(raw))
            raw = raw[:position] + bytes([rng.randrange(256)]) + raw[position + 1 :]
        elif roll < 0.22:
            raw = raw.replace(b",", b",\n", 1) if rng.random() < 0.5 else raw[: rng.randrange(len(raw))]
        elif roll < 0.24:
            raw = rng.choice(
                [b"", b"  ", b"[]", b"{}", b"null", raw + raw, b" " + raw, raw.replace(b"408.91", b"NaN")]
            )
        elif roll < 0.25:
            raw = None  # type: ignore[assignment]
        records.append(raw)
    return records


def _verdict(row: dict[str, object]) -> object:
    return (row["reason"], row["detail"]) if row["reason"] else {name: row[name] for name in FIELD_NAMES}


def _expected(raw: bytes | None, now: int) -> object:
    result = decode_tick(raw or b"", now_us_override=now)
    return (result.reason, result.detail) if isinstance(result, Rejection) else dict(result)


def test_the_event_time_bound_is_configurable() -> None:
    ahead = orjson.dumps(with_field(ts_us=NOW_US + 600_000_000))  # 10 minutes after the clock
    rejected = decode_tick(ahead, NOW_US)
    assert isinstance(rejected, Rejection) and rejected.reason == contracts.REJECT_FUTURE_TIMESTAMP
    assert "600.0 s after the record's clock (bound 300 s)" in rejected.detail
    assert not isinstance(decode_tick(ahead, NOW_US, max_ahead_us=3_600_000_000), Rejection)
    decoded = decode_tick_batch(pa.array([ahead]), pa.array([NOW_US]), max_ahead_us=3_600_000_000)
    assert decoded.column("reason").to_pylist() == [None]


@pytest.mark.parametrize("seed", range(5))
def test_batch_decoder_gives_each_row_the_verdict_of_decode_tick(seed: int) -> None:
    rng = random.Random(seed)
    records = _mutated_records(rng, 3_000)
    nows = [NOW_US + rng.choice((0, -TS_MAX_AHEAD_US)) for _ in records]
    decoded = decode_tick_batch(pa.array(records, pa.binary()), pa.array(nows, pa.int64())).to_pylist()
    assert [_verdict(row) for row in decoded] == [_expected(r, n) for r, n in zip(records, nows, strict=True)]


def test_batch_decoder_on_a_slice_and_on_a_batch_the_fast_parser_rejects() -> None:
    good = [orjson.dumps({**good_tick(), "seq": seq}) for seq in range(1, 101)]
    duplicate_key = good[0].replace(b'"seq":1', b'"seq":1,"seq":2')  # the fast parser refuses the batch
    records = pa.array([b"x", *good, duplicate_key, *good], pa.binary()).slice(1, 201)
    nows = pa.array([NOW_US] * len(records), pa.int64())
    decoded = decode_tick_batch(records, nows).to_pylist()
    assert [_verdict(row) for row in decoded] == [_expected(r, NOW_US) for r in records.to_pylist()]
    assert decoded[100]["seq"] == 2  # the last duplicate key wins, as in orjson


def test_batch_decoder_keeps_field_types() -> None:
    decoded = decode_tick_batch(pa.array([encode_tick(good_tick())]), pa.array([NOW_US]))
    assert [decoded.schema.field(name).type for name in FIELD_NAMES] == [
        contracts.ARROW_TYPES[f.kind] for f in contracts.TICK_FIELDS
    ]
