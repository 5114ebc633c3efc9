"""Fixtures for the dashboard's tests: a hand-made lake in a local directory, and the services fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dashboard.data import clear_caches
from dashboard.testing import bars_from_ticks, compact_hour, tick, write_bars, write_status, write_ticks
from tickstream.lake import BARS_1M, LakeLocation
from tickstream.testing.services import (  # noqa: F401  (fixtures for the integration tests)
    private_s3,
    s3_service,
    s3_settings,
    services_paths,
)

NOW = datetime(2024, 3, 1, 10, 2, 30, tzinfo=UTC)
"""The dashboard's pinned clock in the fixture lake's tests."""


def at(hh: int, mm: int, ss: int) -> int:
    """Epoch µs of 2024-03-01 hh:mm:ss UTC."""
    return int(datetime(2024, 3, 1, hh, mm, ss, tzinfo=UTC).timestamp() * 1_000_000)


FIXTURE_TICKS = [
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
WRITTEN_UNTIL_US = at(10, 2, 0)
"""Bars exist for minutes before 10:02 (the watermark has passed them)."""


def fixture_status(now: datetime = NOW) -> dict[str, Any]:
    """A status object as the streaming job writes it: both queries active, a second old."""
    stamp = now.isoformat().replace("+00:00", "Z")
    query = {
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
        "watermark": stamp,
        "end_offsets": {"ticks": {"0": 1234, "1": 987}},
        "totals": {"through_batch_id": 42, "input_rows": 9, "rows_written": 8, "quarantined": 5, "late": 21},
        "updated_at": stamp,
    }
    return {"updated_at": stamp, "queries": {"ticks": query, "bars_1m": {**query, "late": 0}}}


def build_fixture_lake(lake: LakeLocation) -> None:
    """Write FIXTURE_TICKS as two micro-batches, their written bars, and a status object."""
    write_ticks(lake, FIXTURE_TICKS[:4] + FIXTURE_TICKS[6:], epoch=0)
    write_ticks(lake, FIXTURE_TICKS[4:6], epoch=1)
    bars = [
        b for b in bars_from_ticks(FIXTURE_TICKS) if b["window_start"].timestamp() * 1e6 < WRITTEN_UNTIL_US
    ]
    write_bars(lake, bars, epoch=0)
    compact_hour(lake, BARS_1M, "2024-03-01", "09")  # hour 09 of the bars is read from its manifest
    write_status(lake, fixture_status())


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
def fixture_lake(tmp_path: Path, dashboard_env: pytest.MonkeyPatch) -> Path:
    """A local lake with FIXTURE_TICKS, their bars before 10:02 and a status object; the env points at it."""
    root = tmp_path / "lake"
    build_fixture_lake(LakeLocation(root=str(root)))
    dashboard_env.setenv("TICKSTREAM_DASHBOARD_LAKE_ROOT", str(root))
    return root
