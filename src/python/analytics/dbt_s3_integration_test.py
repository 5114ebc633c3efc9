"""`dbt build` against the real local S3 server: the Iceberg tables' files and the mart exports in the bucket,
extensions from their PyPI packages, keys from the S3 settings handed to dbt (never the environment)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analytics.run import RUN_RESULTS_KEY, AnalyticsSettings, run_dbt
from analytics.testing import build_fixture_lake, expected_ohlcv_daily
from testkit.lake import TestLake
from tickstream.lake import LakeLocation

pytestmark = pytest.mark.timeout(900)


def test_build_over_s3_reads_the_iceberg_tables_and_publishes_marts(
    s3_lake: TestLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert s3_lake.settings.warehouse.startswith("s3://")
    ticks = build_fixture_lake(s3_lake)
    root = f"s3://{s3_lake.s3.bucket}/dbt-it-{uuid.uuid4().hex[:8]}"
    # settings travel as arguments: an environment pointing elsewhere must not matter
    monkeypatch.setenv("TICKSTREAM_S3_SECRET_ACCESS_KEY", "not-the-key")
    monkeypatch.setenv("TICKSTREAM_CATALOG_URI", f"sqlite:///{tmp_path / 'not-the-catalog.db'}")

    settings = AnalyticsSettings(target="s3", lake_root=root, state_dir=str(tmp_path / "dbt"))
    result = run_dbt("build", settings=settings, catalog=s3_lake.settings, s3=s3_lake.s3)
    assert result.success, result.exception

    location = LakeLocation(root=root, s3=s3_lake.s3)
    filesystem, base = location.filesystem()
    daily = pq.read_table(f"{base}/marts/fct_ohlcv_daily/data.parquet", filesystem=filesystem)
    rows = {(r["symbol"], str(r["trade_date"])): r for r in daily.to_pylist()}
    expected = expected_ohlcv_daily(ticks)
    assert set(rows) == set(expected)
    for key, want in expected.items():
        assert {k: rows[key][k] for k in want} == pytest.approx(want), key
    aapl = rows[("AAPL", "2024-03-01")]  # hand-checked: see dbt_project_test.py
    assert (aapl["volume_shares"], aapl["trade_count"], aapl["high_usd"]) == (80, 5, 103.0)
    assert filesystem.get_file_info(f"{base}/{RUN_RESULTS_KEY}").size > 0
