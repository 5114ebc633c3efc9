"""Fixtures for the dashboard's tests: a small Iceberg lake of two tickers, and the services fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dashboard.data import clear_caches
from dashboard.testing import DashboardLake, tick
from testkit.lake import TestLake
from tickstream.contracts import Tick
from tickstream.lake import TICKS, LakeLocation

NOW = datetime(2024, 3, 1, 10, 2, 30, tzinfo=UTC)
"""The dashboard's pinned clock in the fixture lake's tests."""


def at(hh: int, mm: int, ss: int) -> int:
    """Epoch µs of 2024-03-01 hh:mm:ss UTC."""
    return int(datetime(2024, 3, 1, hh, mm, ss, tzinfo=UTC).timestamp() * 1_000_000)


def iso(moment: datetime) -> str:
    """The status object's timestamp format."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


FIXTURE_TICKS: list[Tick] = [
    tick("AAA", 1, at(9, 59, 10), 100.0, 10),
    tick("AAA", 2, at(9, 59, 40), 102.0, 30),
    tick("AAA", 3, at(10, 0, 5), 101.0, 20),
    tick("AAA", 4, at(10, 1, 0), 103.0, 10),
    tick("AAA", 5, at(10, 2, 10), 104.0, 50),  # 10:02 has no bar yet: the live minute
    tick("AAA", 6, at(10, 2, 20), 105.0, 50),
    tick("BBB", 1, at(9, 59, 30), 50.0, 100),
    tick("BBB", 2, at(10, 1, 30), 49.0, 100),
]
"""Two tickers over 09:59-10:02 UTC, spanning the hour partitions 09 and 10."""
BATCHES = [
    [FIXTURE_TICKS[0], FIXTURE_TICKS[6]],
    [FIXTURE_TICKS[1], FIXTURE_TICKS[2], FIXTURE_TICKS[3], FIXTURE_TICKS[7]],
    FIXTURE_TICKS[4:6],
]
"""The ticks as three streaming commits: hour 09 gets files of two commits, hour 10 of two."""
BARS_UNTIL = datetime(2024, 3, 1, 10, 2, tzinfo=UTC)
"""Bars are written for the minutes before 10:02 (the bars entry's watermark)."""


def fixture_status(now: datetime = NOW) -> dict[str, Any]:
    """A status object as the streaming job writes it: the ticks query and the bars entry, a second old."""
    stamp = iso(now)
    ticks = {
        "state": "active",
        "error": None,
        "query_id": "0a1b2c3d-0000-4000-8000-000000000000",
        "last_batch_id": 42,
        "batch_timestamp": stamp,
        "input_rows": 1500,
        "rows_written": 1480,
        "quarantined": 3,
        "late": 17,
        "input_rows_per_second": 1510.0,
        "processed_rows_per_second": 9000.0,
        "batch_duration_ms": 166,
        "durations_ms": {"addBatch": 120},
        "watermark": iso(BARS_UNTIL),
        "source": "KafkaV2[Subscribe[ticks]]",
        "end_offsets": {"ticks": {"0": 1234, "1": 987}},
        "totals": {"through_batch_id": 42, "input_rows": 9, "rows_written": 8, "quarantined": 5, "late": 21},
        "updated_at": stamp,
    }
    bars = {
        "state": "active",
        "error": None,
        "source": "table ticks (complete minutes)",
        "batch_timestamp": stamp,
        "rows_written": 3,
        "minutes_from": iso(datetime(2024, 3, 1, 10, 0, tzinfo=UTC)),
        "watermark": iso(BARS_UNTIL),
        "batch_duration_ms": 850,
        "totals": {"rows_written": 5},
        "updated_at": stamp,
    }
    return {"updated_at": stamp, "queries": {"ticks": ticks, "bars_1m": bars}}


def build_fixture_lake(dashboard_lake: DashboardLake) -> None:
    """FIXTURE_TICKS as three commits, their bars before 10:02 as two appends, ticks hour 09 compacted, and a
    status object."""
    for batch_id, batch in enumerate(BATCHES):
        dashboard_lake.append_ticks(batch, batch_id)
    dashboard_lake.append_bars(t for t in FIXTURE_TICKS if t["ts_us"] < at(10, 0, 0))
    dashboard_lake.append_bars(t for t in FIXTURE_TICKS if at(10, 0, 0) <= t["ts_us"] < at(10, 2, 0))
    dashboard_lake.compact_hour(TICKS, datetime(2024, 3, 1, 9, tzinfo=UTC))
    dashboard_lake.write_status(fixture_status())


def objects_at(tmp_path: Path) -> LakeLocation:
    """A local directory for the bucket's plain objects."""
    return LakeLocation(root=str(tmp_path / "objects"))


@pytest.fixture
def dashboard_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Environment of a dashboard under test: pinned clock, unreachable Kafka (fast), fresh caches."""
    monkeypatch.setenv("TICKSTREAM_DASHBOARD_NOW", NOW.isoformat())
    monkeypatch.setenv("TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("TICKSTREAM_DASHBOARD_KAFKA_TIMEOUT_SECONDS", "1")
    clear_caches()
    yield monkeypatch
    clear_caches()


@pytest.fixture
def empty_lake(local_lake: TestLake, tmp_path: Path, dashboard_env: pytest.MonkeyPatch) -> DashboardLake:
    """A local lake with empty tables and no status object; the environment points at it."""
    lake = DashboardLake(local_lake, objects_at(tmp_path))
    for name, value in lake.env().items():
        dashboard_env.setenv(name, value)
    return lake


@pytest.fixture
def fixture_lake(empty_lake: DashboardLake) -> DashboardLake:
    """The empty lake with FIXTURE_TICKS, their bars before 10:02, ticks hour 09 compacted and a status."""
    build_fixture_lake(empty_lake)
    return empty_lake
