"""Build small lakes for the dbt tests and the benchmark: stream objects, compacted hours and manifests.

Objects are named through tickstream.lake (object_key, compacted_dir, Manifest), exactly as the streaming
and compaction jobs name them, and written with pyarrow to a LakeLocation (local directory or S3).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from tickstream.lake import (
    BARS_1M,
    BARS_1M_ARROW_SCHEMA,
    TICKS,
    TICKS_ARROW_SCHEMA,
    LakeLocation,
    LakeObject,
    Manifest,
    TableSpec,
    date_hour,
    object_key,
    write_manifest,
)
from tickstream.testing.lake import compacted_hour, write_object

QUERY_ID = "8a04952a-0000-4000-8000-000000000000"
MINUTE_US = 60_000_000


@dataclass(frozen=True)
class FixtureTick:
    """One tick: bid/ask are price -/+ half a spread of 2 bps unless given."""

    symbol: str
    seq: int
    ts_us: int
    price: float
    size: int
    offset: int = 0


def ts_us(moment: str) -> int:
    """Microseconds since the epoch of an ISO UTC timestamp, e.g. '2024-03-01T09:00:30'."""
    return int(datetime.fromisoformat(moment).replace(tzinfo=UTC).timestamp() * 1_000_000)


def ticks_table(ticks: Sequence[FixtureTick]) -> pa.Table:
    """Ticks as an Arrow table of the lake's schema, sorted by (symbol, ts_us, seq)."""
    rows = sorted(ticks, key=lambda t: (t.symbol, t.ts_us, t.seq))
    return pa.table(
        {
            "schema_version": [1] * len(rows),
            "symbol": [t.symbol for t in rows],
            "seq": [t.seq for t in rows],
            "ts_us": [t.ts_us for t in rows],
            "price": [t.price for t in rows],
            "bid": [t.price * (1 - 1e-4) for t in rows],
            "ask": [t.price * (1 + 1e-4) for t in rows],
            "size": [t.size for t in rows],
            "kafka_partition": [0] * len(rows),
            "kafka_offset": [t.offset for t in rows],
        },
        schema=TICKS_ARROW_SCHEMA,
    )


def bars_table(ticks: Sequence[FixtureTick]) -> pa.Table:
    """1-minute bars of `ticks`, computed as the streaming job does (open/close by (ts_us, seq))."""
    by_minute: dict[tuple[str, int], list[FixtureTick]] = defaultdict(list)
    for tick in ticks:
        by_minute[(tick.symbol, tick.ts_us // MINUTE_US * MINUTE_US)].append(tick)
    columns: dict[str, list] = {name: [] for name in BARS_1M_ARROW_SCHEMA.names}
    for (symbol, start), group in sorted(by_minute.items()):
        group.sort(key=lambda t: (t.ts_us, t.seq))
        volume = sum(t.size for t in group)
        columns["symbol"].append(symbol)
        columns["window_start"].append(start)
        columns["window_end"].append(start + MINUTE_US)
        columns["open"].append(group[0].price)
        columns["high"].append(max(t.price for t in group))
        columns["low"].append(min(t.price for t in group))
        columns["close"].append(group[-1].price)
        columns["volume"].append(volume)
        columns["vwap"].append(sum(t.price * t.size for t in group) / volume if volume else None)
        columns["trade_count"].append(len(group))
    return pa.table(columns, schema=BARS_1M_ARROW_SCHEMA)


def hour_of(tick: FixtureTick) -> tuple[str, str]:
    """(date, hour) partition of a tick (event time)."""
    return date_hour(tick.ts_us)


def write_stream_batch(location: LakeLocation, epoch: int, ticks: Iterable[FixtureTick]) -> list[LakeObject]:
    """One streaming micro-batch: one ticks object and one bars object per hour it touched."""
    written = []
    by_hour: dict[tuple[str, str], list[FixtureTick]] = defaultdict(list)
    for tick in ticks:
        by_hour[hour_of(tick)].append(tick)
    for (date, hour), group in sorted(by_hour.items()):
        written.append(
            write_object(location, object_key(TICKS, date, hour, QUERY_ID, epoch), ticks_table(group))
        )
        written.append(
            write_object(location, object_key(BARS_1M, date, hour, QUERY_ID, epoch), bars_table(group))
        )
    return written


def compact_hour(
    location: LakeLocation,
    spec: TableSpec,
    date: str,
    hour: str,
    table: pa.Table,
    replaced: Sequence[str],
    run_id: str = "rfixture0000000001",
    publish: bool = True,
) -> Manifest:
    """Write one compacted object of an hour and (with `publish`) its manifest, as compaction does."""
    created_at = "2024-03-01T12:00:00Z"
    manifest = compacted_hour(location, spec, date, hour, table, sorted(replaced), run_id, created_at)
    if publish:
        write_manifest(location, manifest)
    return manifest


def fixture_ticks() -> dict[str, list[FixtureTick]]:
    """The hand-checked fixture (see lake_test.py for the expected marts), by streaming batch."""
    t = ts_us
    return {
        # 2024-03-01 hour 09, compacted later
        "e1": [
            FixtureTick("AAPL", 1, t("2024-03-01T09:00:00"), 100.0, 10, offset=1),
            FixtureTick("AAPL", 2, t("2024-03-01T09:00:30"), 102.0, 20, offset=2),
            FixtureTick("MSFT", 1, t("2024-03-01T09:00:00"), 400.0, 5, offset=3),
            FixtureTick("MSFT", 2, t("2024-03-01T09:00:00"), 401.0, 5, offset=4),
        ],
        # one object in hour 09 (compacted later), one in hour 10 (stays open)
        "e2": [
            FixtureTick("AAPL", 3, t("2024-03-01T09:01:10"), 99.0, 10, offset=5),
            FixtureTick("AAPL", 4, t("2024-03-01T10:00:05"), 101.0, 30, offset=6),
        ],
        "e3": [FixtureTick("AAPL", 5, t("2024-03-01T10:59:59"), 103.0, 10, offset=7)],
        # arrives in hour 09 after it was compacted: not in the manifest's `replaced`, must be read
        "e4": [FixtureTick("MSFT", 3, t("2024-03-01T09:30:00"), 402.0, 10, offset=8)],
        # 2024-03-02 hour 00
        "e5": [
            FixtureTick("AAPL", 6, t("2024-03-02T00:00:10"), 123.6, 10, offset=9),
            FixtureTick("MSFT", 4, t("2024-03-02T00:00:10"), 394.0, 10, offset=10),
        ],
        # a second copy of AAPL seq 6 in another object: de-duplicated in staging
        "e6": [FixtureTick("AAPL", 6, t("2024-03-02T00:00:10"), 123.6, 10, offset=11)],
    }


def build_fixture_lake(location: LakeLocation) -> None:
    """The fixture lake: 2024-03-01 hour 09 compacted (manifest, replaced stream objects left in place, a
    late stream object, an unpublished compaction run), hour 10 and 2024-03-02 hour 00 stream only."""
    batches = fixture_ticks()
    for name in ("e1", "e2", "e3"):
        write_stream_batch(location, int(name[1:]), batches[name])
    hour09 = [
        tick for name in ("e1", "e2") for tick in batches[name] if hour_of(tick) == ("2024-03-01", "09")
    ]
    for spec, table in ((TICKS, ticks_table(hour09)), (BARS_1M, bars_table(hour09))):
        replaced = [object_key(spec, "2024-03-01", "09", QUERY_ID, epoch) for epoch in (1, 2)]
        compact_hour(location, spec, "2024-03-01", "09", table, replaced)
        # a run that crashed before its manifest: its object must never be read
        bogus = [FixtureTick("AAPL", 99, ts_us("2024-03-01T09:59:00"), 1_000_000.0, 1)]
        bogus_table = ticks_table(bogus) if spec is TICKS else bars_table(bogus)
        compact_hour(location, spec, "2024-03-01", "09", bogus_table, [], run_id="rcrashed", publish=False)
    for name in ("e4", "e5", "e6"):
        write_stream_batch(location, int(name[1:]), batches[name])
