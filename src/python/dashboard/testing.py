"""Builds small lakes for the dashboard's tests and demos, named exactly as the streaming job names them.

`write_ticks` / `write_bars` split rows by hour partition and write one object per (table, hour) for a
given (query id, epoch), as one streaming micro-batch would (tickstream.lake.object_key).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tickstream.lake import (
    BARS_1M,
    BARS_1M_ARROW_SCHEMA,
    STATUS_KEY,
    TICKS,
    TICKS_ARROW_SCHEMA,
    LakeLocation,
    TableSpec,
    date_hour,
    object_key,
    put_object,
    stream_objects,
    write_manifest,
)
from tickstream.testing.lake import compacted_hour, write_object

QUERY_ID = "0a1b2c3d-0000-4000-8000-000000000000"
US_PER_MINUTE = 60_000_000


def tick(symbol: str, seq: int, ts_us: int, price: float, size: int) -> dict[str, Any]:
    """One accepted tick row (quote one cent around the price; Kafka lineage made up)."""
    return {
        "schema_version": 1,
        "symbol": symbol,
        "seq": seq,
        "ts_us": ts_us,
        "price": price,
        "bid": round(price - 0.01, 2),
        "ask": round(price + 0.01, 2),
        "size": size,
        "kafka_partition": 0,
        "kafka_offset": seq,
    }


def bars_from_ticks(ticks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """1-minute bars of tick rows by the streaming job's rules (open/close by (ts_us, seq), VWAP by size)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in ticks:
        groups[(row["symbol"], row["ts_us"] - row["ts_us"] % US_PER_MINUTE)].append(row)
    bars = []
    for (symbol, start_us), rows in sorted(groups.items()):
        rows.sort(key=lambda r: (r["ts_us"], r["seq"]))
        volume = sum(r["size"] for r in rows)
        bars.append(
            {
                "symbol": symbol,
                "window_start": datetime.fromtimestamp(start_us / 1e6, tz=UTC),
                "window_end": datetime.fromtimestamp((start_us + US_PER_MINUTE) / 1e6, tz=UTC),
                "open": rows[0]["price"],
                "high": max(r["price"] for r in rows),
                "low": min(r["price"] for r in rows),
                "close": rows[-1]["price"],
                "volume": volume,
                "vwap": sum(r["price"] * r["size"] for r in rows) / volume,
                "trade_count": len(rows),
            }
        )
    return bars


def _write(
    lake: LakeLocation,
    spec: TableSpec,
    schema: pa.Schema,
    rows: Sequence[dict[str, Any]],
    hour_of: Any,
    epoch: int,
) -> list[str]:
    by_hour: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_hour[hour_of(row)].append(row)
    keys = []
    for (date, hour), hour_rows in sorted(by_hour.items()):
        table = pa.Table.from_pylist(hour_rows, schema=schema).sort_by(
            [(k, "ascending") for k in spec.sort_keys]
        )
        keys.append(write_object(lake, object_key(spec, date, hour, QUERY_ID, epoch), table).key)
    return keys


def write_ticks(lake: LakeLocation, rows: Sequence[dict[str, Any]], epoch: int) -> list[str]:
    """Write tick rows as micro-batch `epoch` of the ticks query (one object per event-time hour)."""
    return _write(lake, TICKS, TICKS_ARROW_SCHEMA, rows, lambda r: date_hour(r["ts_us"]), epoch)


def write_bars(lake: LakeLocation, rows: Sequence[dict[str, Any]], epoch: int) -> list[str]:
    """Write bar rows as micro-batch `epoch` of the bars query (one object per window-start hour)."""
    return _write(
        lake,
        BARS_1M,
        BARS_1M_ARROW_SCHEMA,
        rows,
        lambda r: (r["window_start"].strftime("%Y-%m-%d"), r["window_start"].strftime("%H")),
        epoch,
    )


def compact_hour(lake: LakeLocation, spec: TableSpec, date: str, hour: str, run_id: str = "run1") -> str:
    """Compact one hour as the compaction job would: one object with its rows, then the manifest."""
    filesystem, base = lake.filesystem()
    replaced = stream_objects(lake, spec, date, hour)
    table = pa.concat_tables(pq.read_table(f"{base}/{o.key}", filesystem=filesystem) for o in replaced)
    table = table.sort_by([(k, "ascending") for k in spec.sort_keys])
    created_at = datetime.now(UTC).isoformat()
    manifest = compacted_hour(lake, spec, date, hour, table, [o.key for o in replaced], run_id, created_at)
    return write_manifest(lake, manifest)


def write_json(lake: LakeLocation, key: str, payload: dict[str, Any]) -> None:
    """Replace a JSON object of the lake (status, manifest, run results)."""
    filesystem, base = lake.filesystem()
    put_object(filesystem, f"{base}/{key}", json.dumps(payload).encode())


def write_status(lake: LakeLocation, status: dict[str, Any]) -> None:
    """Replace the streaming status object."""
    write_json(lake, STATUS_KEY, status)
