"""The tick event contract: the one definition of a market tick on the wire.

Every component that writes or reads the `ticks` topic uses this module: the producer encodes with
`encode_tick` / `encode_tick_columns`, Python consumers and tests decode with `decode_tick`, and the
Spark streaming job decodes whole Arrow batches with `decode_tick_batch` (same verdicts, same reason
codes), so validation is defined once. See docs/contracts.md for the human-readable contract and the
versioning rule.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from typing import Any, Final, Literal, TypeAlias, TypedDict, cast

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
from numpy.typing import NDArray

from tickstream.topology import TICKS_TOPIC, Topic

SCHEMA_VERSION: Final = 1
"""Current value of the `schema_version` field; bumped only by a breaking change (new topic too)."""

TOPIC: Final[Topic] = TICKS_TOPIC
"""The Kafka topic that carries schema version 1; the record key is the UTF-8 symbol."""

SYMBOL_PATTERN: Final = r"^[A-Z][A-Z0-9.]{0,9}$"
"""Ticker symbols: an upper-case letter then up to 9 of upper-case letters, digits and dots (BRK.B)."""
_SYMBOL_RE: Final = re.compile(SYMBOL_PATTERN)

TS_MIN_US: Final = 946_684_800_000_000
"""Earliest plausible event time: 2000-01-01T00:00:00Z in epoch microseconds."""
TS_MAX_AHEAD_US: Final = 300_000_000
"""Default bound of the event-time guard: an event time more than this many microseconds (5 minutes) after
the validator's clock is `future_timestamp`. The streaming job's clock is the Kafka record timestamp, and its
bound is configurable (TICKSTREAM_STREAMING_MAX_EVENT_TIME_AHEAD_SECONDS)."""

FieldKind = Literal["int", "long", "double", "string"]


@dataclass(frozen=True)
class TickField:
    """One field of the tick JSON object, with the type a columnar schema (Spark, Arrow) should use."""

    name: str
    kind: FieldKind
    unit: str
    description: str


TICK_FIELDS: Final[tuple[TickField, ...]] = (
    TickField("schema_version", "int", "", "Contract version; 1 for this topic."),
    TickField("symbol", "string", "", "Ticker symbol matching SYMBOL_PATTERN; also the Kafka key."),
    TickField("seq", "long", "", "Per-symbol sequence number, starting at 1, within one producer run."),
    TickField("ts_us", "long", "microseconds since 1970-01-01T00:00:00Z", "Event (trade) time, UTC."),
    TickField("price", "double", "USD", "Trade price, > 0."),
    TickField("size", "long", "shares", "Trade size, > 0."),
    TickField("bid", "double", "USD", "Best bid at trade time, > 0 and <= ask."),
    TickField("ask", "double", "USD", "Best ask at trade time, > 0 and >= bid."),
)
FIELD_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in TICK_FIELDS)
INT_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in TICK_FIELDS if f.kind in ("int", "long"))
FLOAT_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in TICK_FIELDS if f.kind == "double")
POSITIVE_PRICE_FIELDS: Final[tuple[str, ...]] = ("price", "bid", "ask")

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
"""Integer fields must fit in 64 bits (their columnar type), whatever JSON allows."""

DEDUP_KEY_FIELDS: Final[tuple[str, str, str]] = ("symbol", "seq", "ts_us")
"""A tick is a duplicate of another when these three fields are equal (producer retries, replays)."""

REJECT_NOT_JSON: Final = "not_json"
REJECT_NOT_OBJECT: Final = "not_object"
REJECT_MISSING_FIELD: Final = "missing_field"
REJECT_WRONG_TYPE: Final = "wrong_type"
REJECT_BAD_SCHEMA_VERSION: Final = "bad_schema_version"
REJECT_BAD_SYMBOL: Final = "bad_symbol"
REJECT_BAD_SEQ: Final = "bad_seq"
REJECT_ABSURD_TIMESTAMP: Final = "absurd_timestamp"
REJECT_FUTURE_TIMESTAMP: Final = "future_timestamp"
REJECT_NON_POSITIVE_PRICE: Final = "non_positive_price"
REJECT_NON_POSITIVE_SIZE: Final = "non_positive_size"
REJECT_CROSSED_QUOTE: Final = "crossed_quote"
REJECT_REASONS: Final[tuple[str, ...]] = (
    REJECT_NOT_JSON,
    REJECT_NOT_OBJECT,
    REJECT_MISSING_FIELD,
    REJECT_WRONG_TYPE,
    REJECT_BAD_SCHEMA_VERSION,
    REJECT_BAD_SYMBOL,
    REJECT_BAD_SEQ,
    REJECT_ABSURD_TIMESTAMP,
    REJECT_FUTURE_TIMESTAMP,
    REJECT_NON_POSITIVE_PRICE,
    REJECT_NON_POSITIVE_SIZE,
    REJECT_CROSSED_QUOTE,
)
"""Every reason code `decode_tick` can return; the quarantine topic carries the same codes."""


class Tick(TypedDict):
    """One trade with the prevailing quote, exactly as carried in the JSON object (see TICK_FIELDS)."""

    schema_version: int
    symbol: str
    seq: int
    ts_us: int
    price: float
    size: int
    bid: float
    ask: float


@dataclass(frozen=True)
class Rejection:
    """Why a record is not a valid tick: a stable code from REJECT_REASONS and a human detail."""

    reason: str
    detail: str


DedupKey = tuple[str, int, int]


def make_tick(symbol: str, seq: int, ts_us: int, price: float, size: int, bid: float, ask: float) -> Tick:
    """Build a current-version tick (no validation; use `validate_tick` on untrusted input)."""
    return Tick(
        schema_version=SCHEMA_VERSION,
        symbol=symbol,
        seq=seq,
        ts_us=ts_us,
        price=price,
        size=size,
        bid=bid,
        ask=ask,
    )


def encode_tick(tick: Tick) -> bytes:
    """Serialise one tick to its UTF-8 JSON bytes."""
    return orjson.dumps(tick)


ColumnValues: TypeAlias = Sequence[Any] | NDArray[Any]
"""One column of tick values: a list or a numpy array."""


def encode_tick_columns(
    symbol: ColumnValues,
    seq: ColumnValues,
    ts_us: ColumnValues,
    price: ColumnValues,
    size: ColumnValues,
    bid: ColumnValues,
    ask: ColumnValues,
) -> list[bytes]:
    """Serialise ticks given column-wise (numpy arrays or lists); bytes equal `encode_tick` per row.

    This is the producer's hot path: polars encodes the whole batch in Rust (about 6x faster than one
    orjson call per tick, with the same shortest round-trip float text), no validation.
    """
    columns = pl.DataFrame(
        {
            "schema_version": pl.repeat(SCHEMA_VERSION, len(seq), dtype=pl.Int64, eager=True),
            "symbol": pl.Series(values=symbol, dtype=pl.String),
            "seq": pl.Series(values=seq, dtype=pl.Int64),
            "ts_us": pl.Series(values=ts_us, dtype=pl.Int64),
            "price": pl.Series(values=price, dtype=pl.Float64),
            "size": pl.Series(values=size, dtype=pl.Int64),
            "bid": pl.Series(values=bid, dtype=pl.Float64),
            "ask": pl.Series(values=ask, dtype=pl.Float64),
        }
    )
    encoded = columns.select(pl.struct(FIELD_NAMES).struct.json_encode().cast(pl.Binary)).to_series()
    return cast(list[bytes], encoded.to_list())


def kafka_key(symbol: str) -> bytes:
    """The Kafka record key of a tick: its symbol in UTF-8, so one symbol stays in one partition."""
    return symbol.encode()


def dedup_key(tick: Tick) -> DedupKey:
    """The identity of a tick for de-duplication: (symbol, seq, ts_us)."""
    return (tick["symbol"], tick["seq"], tick["ts_us"])


def now_us() -> int:
    """The current UTC time in epoch microseconds."""
    return time.time_ns() // 1_000


def to_us(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime, exactly (whole seconds and microseconds apart, no float)."""
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def ts_max_us(validator_now_us: int, max_ahead_us: int = TS_MAX_AHEAD_US) -> int:
    """The latest event time accepted by a validator whose clock reads `validator_now_us`."""
    return validator_now_us + max_ahead_us


def is_valid_symbol(symbol: str) -> bool:
    """Whether `symbol` matches SYMBOL_PATTERN."""
    return _SYMBOL_RE.fullmatch(symbol) is not None


def decode_tick(
    raw: bytes | str, now_us_override: int | None = None, max_ahead_us: int = TS_MAX_AHEAD_US
) -> Tick | Rejection:
    """Parse and validate one record value; return the tick or why it was rejected.

    Unknown extra fields are ignored (additive changes keep version 1) and dropped from the result.
    `now_us_override` fixes the clock of the event-time guard (the Kafka record timestamp in the stream,
    tests); an event time more than `max_ahead_us` after it is `future_timestamp`.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection(REJECT_NOT_JSON, f"invalid JSON: {exc}")
    if not isinstance(obj, dict):
        return Rejection(REJECT_NOT_OBJECT, f"JSON {type(obj).__name__}, expected an object")
    return validate_tick(obj, now_us_override, max_ahead_us)


def validate_tick(
    obj: dict[str, object], now_us_override: int | None = None, max_ahead_us: int = TS_MAX_AHEAD_US
) -> Tick | Rejection:
    """Validate an already-parsed JSON object against the contract (see `decode_tick`)."""
    rejection = _check_presence_and_types(obj)
    if rejection is not None:
        return rejection
    tick = Tick(
        schema_version=cast(int, obj["schema_version"]),
        symbol=cast(str, obj["symbol"]),
        seq=cast(int, obj["seq"]),
        ts_us=cast(int, obj["ts_us"]),
        price=float(cast(float, obj["price"])),
        size=cast(int, obj["size"]),
        bid=float(cast(float, obj["bid"])),
        ask=float(cast(float, obj["ask"])),
    )
    now = now_us() if now_us_override is None else now_us_override
    return _check_values(tick, now, max_ahead_us)


def _check_presence_and_types(obj: dict[str, object]) -> Rejection | None:
    for name in FIELD_NAMES:
        if name not in obj:
            return Rejection(REJECT_MISSING_FIELD, f"missing field {name!r}")
    for name in INT_FIELDS:
        value = obj[name]
        if not isinstance(value, int) or isinstance(value, bool):
            return Rejection(REJECT_WRONG_TYPE, f"{name!r} is {type(value).__name__}, expected integer")
        if not INT64_MIN <= value <= INT64_MAX:
            return Rejection(REJECT_WRONG_TYPE, f"{name!r} {value} is outside the 64-bit integer range")
    for name in FLOAT_FIELDS:
        value = obj[name]
        if not isinstance(value, int | float) or isinstance(value, bool):
            return Rejection(REJECT_WRONG_TYPE, f"{name!r} is {type(value).__name__}, expected number")
    if not isinstance(obj["symbol"], str):
        return Rejection(REJECT_WRONG_TYPE, f"'symbol' is {type(obj['symbol']).__name__}, expected string")
    return None


def _check_values(tick: Tick, validator_now_us: int, max_ahead_us: int) -> Tick | Rejection:
    if tick["schema_version"] != SCHEMA_VERSION:
        return Rejection(REJECT_BAD_SCHEMA_VERSION, f"schema_version {tick['schema_version']} != 1")
    if not is_valid_symbol(tick["symbol"]):
        return Rejection(REJECT_BAD_SYMBOL, f"symbol {tick['symbol']!r} does not match {SYMBOL_PATTERN}")
    if tick["seq"] < 1:
        return Rejection(REJECT_BAD_SEQ, f"seq {tick['seq']} < 1")
    if tick["ts_us"] < TS_MIN_US:
        return Rejection(REJECT_ABSURD_TIMESTAMP, f"ts_us {tick['ts_us']} is before 2000-01-01")
    if tick["ts_us"] > ts_max_us(validator_now_us, max_ahead_us):
        ahead_s = (tick["ts_us"] - validator_now_us) / 1e6
        return Rejection(
            REJECT_FUTURE_TIMESTAMP,
            f"ts_us {tick['ts_us']} is {ahead_s:,.1f} s after the record's clock "
            f"(bound {max_ahead_us / 1e6:g} s)",
        )
    for name, value in (("price", tick["price"]), ("bid", tick["bid"]), ("ask", tick["ask"])):
        if not value > 0.0:
            return Rejection(REJECT_NON_POSITIVE_PRICE, f"{name!r} {value} <= 0")
    if tick["size"] <= 0:
        return Rejection(REJECT_NON_POSITIVE_SIZE, f"size {tick['size']} <= 0")
    if tick["bid"] > tick["ask"]:
        return Rejection(REJECT_CROSSED_QUOTE, f"bid {tick['bid']} > ask {tick['ask']}")
    return tick


# --- decoding whole batches ----------------------------------------------------------------------------

ARROW_TYPES: Final[dict[FieldKind, pa.DataType]] = {
    "int": pa.int32(),
    "long": pa.int64(),
    "double": pa.float64(),
    "string": pa.string(),
}
"""The Arrow (and Parquet) type of each field kind."""
_JSON_SCHEMA: Final = pa.schema(
    [(f.name, pa.int64() if f.kind == "int" else ARROW_TYPES[f.kind]) for f in TICK_FIELDS]
)
"""Types the fast parser reads: every integer as int64, so an out-of-range version is judged, not lost."""
_SINGLE_LINE_OBJECT: Final = (ord("{"), ord("}"), ord("\n"), ord("\r"))


def decode_tick_batch(
    values: pa.Array, validator_now_us: pa.Array, max_ahead_us: int = TS_MAX_AHEAD_US
) -> pa.Table:
    """`decode_tick` over a whole Arrow batch: typed fields (NULL when rejected), `reason` and `detail`.

    Row i gets exactly the verdict of `decode_tick(values[i], validator_now_us[i], max_ahead_us)` (a NULL
    value is `not_json`). Fast path: Arrow's JSON reader parses the batch at once into the typed schema and
    the value rules run column-wise; a row the fast path cannot accept (not a one-line object, a parse error
    in its batch, a failed or undecidable rule) is decoded by `decode_tick` itself, so every rejection
    carries the contract's own reason and detail.
    """
    values = values.cast(pa.binary())
    fast = _single_line_objects(values)
    parsed = _parse_json_lines(values.filter(pa.array(fast))) if fast.any() else None
    if parsed is None:
        fast[:] = False
    else:
        passed = _passes_value_checks(parsed, pc.filter(validator_now_us, pa.array(fast)), max_ahead_us)
        fast[fast] = passed.to_numpy(zero_copy_only=False)
        parsed = parsed.filter(passed)
    if parsed is not None and fast.all():  # the common case: nothing to decode one by one, nothing to reorder
        columns = {f.name: parsed.column(f.name).cast(ARROW_TYPES[f.kind]) for f in TICK_FIELDS}
        return pa.table(
            {
                **columns,
                "reason": pa.nulls(len(fast), pa.string()),
                "detail": pa.nulls(len(fast), pa.string()),
            }
        )
    slow = pa.array(np.flatnonzero(~fast))
    verdicts = [
        decode_tick(value or b"", now, max_ahead_us)
        for value, now in zip(
            values.take(slow).to_pylist(), pc.take(validator_now_us, slow).to_pylist(), strict=True
        )
    ]
    accepted = [None] * int(fast.sum())
    columns = {
        f.name: pa.concat_arrays(
            [
                (parsed.column(f.name).combine_chunks() if parsed else pa.array([], pa.null())).cast(
                    ARROW_TYPES[f.kind]
                ),
                pa.array(
                    [v.get(f.name) if isinstance(v, dict) else None for v in verdicts], ARROW_TYPES[f.kind]
                ),
            ]
        )
        for f in TICK_FIELDS
    }
    columns["reason"] = pa.array(accepted + [_reason(v, "reason") for v in verdicts], pa.string())
    columns["detail"] = pa.array(accepted + [_reason(v, "detail") for v in verdicts], pa.string())
    input_position = np.concatenate([np.flatnonzero(fast), slow.to_numpy()])
    return pa.table(columns).take(pa.array(np.argsort(input_position, kind="stable")))


def _reason(verdict: Tick | Rejection, attribute: str) -> str | None:
    return cast(str, getattr(verdict, attribute)) if isinstance(verdict, Rejection) else None


def _single_line_objects(values: pa.Array) -> NDArray[np.bool_]:
    """Rows the fast path may try: non-NULL, one line, starting with '{' and holding one '}', at the end.

    One '}' per row keeps the Arrow reader's rows aligned with the input (no row can hold two objects);
    objects with nested objects simply take the exact path.
    """
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[
        values.offset : values.offset + len(values) + 1
    ]
    data_buffer = values.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    data, offsets = data[offsets[0] : offsets[-1]], offsets - offsets[0]
    opening, closing, newline, carriage = _SINGLE_LINE_OBJECT

    def per_row(mask: NDArray[np.bool_]) -> NDArray[np.int64]:
        return np.diff(np.searchsorted(np.flatnonzero(mask), offsets))

    nonempty = offsets[1:] > offsets[:-1]
    padded = np.append(data, 0)  # index len(data) stands in for the first/last byte of an empty row
    first = padded[np.where(nonempty, offsets[:-1], len(data))]
    last = padded[np.where(nonempty, offsets[1:] - 1, len(data))]
    valid = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    return (
        valid
        & (first == opening)
        & (last == closing)
        & (per_row(data == closing) == 1)
        & (per_row((data == newline) | (data == carriage)) == 0)
    )


def _parse_json_lines(values: pa.Array) -> pa.Table | None:
    """The rows parsed into the typed schema, or None if the reader rejects any of them."""
    lines = b"\n".join(cast(list[bytes], values.to_pylist()))
    try:
        table = pajson.read_json(
            io.BytesIO(lines),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(lines) + 1),
            parse_options=pajson.ParseOptions(
                explicit_schema=_JSON_SCHEMA, unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    return table.combine_chunks() if table.num_rows == len(values) else None


def _passes_value_checks(fields: pa.Table, validator_now_us: pa.Array, max_ahead_us: int) -> pa.Array:
    """True where every value rule of the contract holds (NULL, NaN or infinite values never pass)."""
    column = fields.column
    rules = [
        pc.equal(column("schema_version"), SCHEMA_VERSION),
        pc.match_substring_regex(column("symbol"), SYMBOL_PATTERN),
        pc.greater_equal(column("seq"), 1),
        pc.greater_equal(column("ts_us"), TS_MIN_US),
        pc.less_equal(column("ts_us"), pc.add(validator_now_us, max_ahead_us)),
        *(pc.and_(pc.greater(column(n), 0.0), pc.is_finite(column(n))) for n in POSITIVE_PRICE_FIELDS),
        pc.greater(column("size"), 0),
        pc.less_equal(column("bid"), column("ask")),
    ]
    passed = pc.fill_null(reduce(pc.and_, rules), False)
    return passed.combine_chunks() if isinstance(passed, pa.ChunkedArray) else passed
