"""Lakes for the dashboard's tests and demos: a `TestLake` (own catalog and warehouse) plus the plain objects
beside it (status, run results, marts), written the way the platform writes them.

Ticks are appended one commit per call, as one streaming micro-batch commits them; bars are computed from
ticks by `testkit.expected.expected_bars` (polars: an implementation separate from the dashboard's
DuckDB SQL) and appended one commit per call, as the streaming job appends the bars of complete minutes.
`compact_hour` rewrites an hour's files into one with a `replace` snapshot, as Iceberg's rewrite_data_files
does for the compaction job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from testkit.expected import expected_bar_table
from testkit.lake import TestLake, tick_rows
from tickstream.contracts import Tick
from tickstream.lake import BARS_1M, STATUS_KEY, TICKS, LakeLocation, LakeTable, put_object


def tick(symbol: str, seq: int, ts_us: int, price: float, size: int) -> Tick:
    """One valid tick (quote one cent around the price)."""
    return Tick(
        schema_version=1,
        symbol=symbol,
        seq=seq,
        ts_us=ts_us,
        price=price,
        size=size,
        bid=round(price - 0.01, 2),
        ask=round(price + 0.01, 2),
    )


@dataclass
class DashboardLake:
    """A test lake as the dashboard sees it: the tables (`lake`) and the plain objects (`objects`)."""

    lake: TestLake
    objects: LakeLocation
    offset: int = 0

    def append_ticks(self, ticks: Sequence[Tick], batch_id: int = 0) -> None:
        """Append ticks as one streaming micro-batch commit (consecutive Kafka offsets)."""
        self.lake.append(TICKS, tick_rows(ticks, 0, self.offset), {"tickstream.batch-id": str(batch_id)})
        self.offset += len(ticks)

    def append_bars(self, ticks: Iterable[Tick]) -> None:
        """Append the bars of `ticks` as one commit (the streaming job appending complete minutes)."""
        self.lake.append(BARS_1M, expected_bar_table(ticks))

    def compact_hour(self, table: LakeTable, hour: datetime) -> int:
        """`TestLake.compact_hour` of this lake."""
        return self.lake.compact_hour(table, hour)

    def write_json(self, key: str, payload: dict[str, Any]) -> None:
        """Replace a JSON object of the bucket (status, run results)."""
        filesystem, base = self.objects.filesystem()
        put_object(filesystem, f"{base}/{key}", json.dumps(payload).encode())

    def write_status(self, status: dict[str, Any]) -> None:
        """Replace the streaming status object."""
        self.write_json(STATUS_KEY, status)

    def env(self) -> dict[str, str]:
        """Environment variables pointing a dashboard (process or AppTest) at this lake."""
        return {**self.lake.env(), "TICKSTREAM_LAKE_ROOT": self.objects.root}
