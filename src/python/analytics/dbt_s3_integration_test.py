"""`dbt build` against the real local S3 server: httpfs from its PyPI package, keys from TICKSTREAM_S3_*."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analytics.run import RUN_RESULTS_KEY, AnalyticsSettings, run_dbt
from analytics.testing import build_fixture_lake
from tickstream.lake import LakeLocation
from tickstream.settings import S3Settings

pytestmark = pytest.mark.timeout(900)


def test_build_over_s3_reads_committed_data_and_publishes_marts(
    s3_settings: S3Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_settings.model_dump().items():
        monkeypatch.setenv(f"TICKSTREAM_S3_{name.upper()}", str(value))
    root = f"s3://{s3_settings.bucket}/dbt-it-{uuid.uuid4().hex[:8]}"
    location = LakeLocation(root=root, s3=s3_settings)
    build_fixture_lake(location)

    settings = AnalyticsSettings(target="s3", lake_root=root, state_dir=str(tmp_path / "dbt"))
    result = run_dbt("build", settings=settings)
    assert result.success, result.exception

    filesystem, _ = location.filesystem()
    daily = pq.read_table(location.path("marts/fct_ohlcv_daily/data.parquet"), filesystem=filesystem)
    rows = {(r["symbol"], str(r["trade_date"])): r for r in daily.to_pylist()}
    aapl = rows[("AAPL", "2024-03-01")]
    assert (aapl["volume_shares"], aapl["trade_count"], aapl["high_usd"]) == (80, 5, 103.0)
    assert aapl["vwap_usd"] == pytest.approx(8090 / 80)
    assert rows[("MSFT", "2024-03-01")]["volume_shares"] == 20
    assert filesystem.get_file_info(location.path(RUN_RESULTS_KEY)).size > 0
