"""Dashboard configuration from the environment (prefix TICKSTREAM_DASHBOARD_), each with its default.

Where S3 is comes from `tickstream.settings.S3Settings` (TICKSTREAM_S3_*), the lake's Iceberg catalog from
`tickstream.settings.CatalogSettings` (TICKSTREAM_CATALOG_*), Kafka from `tickstream.settings.KafkaSettings`
(TICKSTREAM_KAFKA_*). Example: TICKSTREAM_DASHBOARD_REFRESH_SECONDS=2.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tickstream.settings import LakeRootSettings
from tickstream.topology import TICKS_TOPIC


class DashboardSettings(LakeRootSettings):
    """How the dashboard serves, how often it refreshes, and where it reads from."""

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_DASHBOARD_")

    address: str = Field(default="127.0.0.1", description="Address the Streamlit server binds to.")
    port: int = Field(default=8501, ge=1, le=65535, description="Port the Streamlit server listens on.")
    refresh_seconds: float = Field(
        default=3.0,
        ge=0.5,
        description="How often live panels (chart, price, overview) re-run by themselves.",
    )
    health_refresh_seconds: float = Field(
        default=5.0, ge=0.5, description="How often the pipeline health page re-runs by itself."
    )
    history_ttl_seconds: float = Field(
        default=300.0, ge=0.0, description="Cache lifetime of dbt mart queries (marts change hourly)."
    )
    marts_prefix: str = Field(
        default="marts", description="Key prefix (in the lake) of the dbt marts: <prefix>/<model>/*.parquet."
    )
    marts_duckdb_path: str = Field(
        default="", description="A DuckDB file holding the marts instead of Parquet in the lake (optional)."
    )
    dbt_run_results: str = Field(
        default="_status/dbt/run_results.json",
        description="dbt's run_results.json: a key in the lake or an absolute local path (last dbt run).",
    )
    kafka_topic: str = Field(default=TICKS_TOPIC.name, description="Topic whose consumer lag is shown.")
    kafka_timeout_seconds: float = Field(
        default=3.0, gt=0.0, description="Longest wait for Kafka's end offsets before showing it unreachable."
    )
    fresh_seconds: float = Field(
        default=30.0, gt=0.0, description="Newest tick younger than this: fresh (good); else late."
    )
    stale_seconds: float = Field(
        default=300.0, gt=0.0, description="Newest tick older than this: failing (pipeline stopped)."
    )
    clock_ahead_seconds: float = Field(
        default=60.0,
        gt=0.0,
        description="Newest tick further than this ahead of the wall clock: failing (a bad producer clock).",
    )
    late_share: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Share of the last batch's records that were late above this: ingestion late.",
    )
    quarantine_share: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Share of the last batch's records quarantined above this: ingestion late.",
    )
    lag_late_records: int = Field(default=100_000, ge=0, description="Consumer lag above this: late.")
    lag_failing_records: int = Field(default=1_000_000, ge=0, description="Consumer lag above this: failing.")
    compaction_late_hours: float = Field(
        default=2.0,
        gt=0.0,
        description="An hour that ended this long ago with files of several commits: compaction late.",
    )
    bars_cadence_seconds: float = Field(
        default=60.0,
        gt=0.0,
        description=(
            "How often the streaming job appends bars (its bars_trigger_seconds): the age of the bars "
            "entry of the status object counts as late only beyond this."
        ),
    )
    dbt_late_hours: float = Field(
        default=2.0, gt=0.0, description="No dbt run newer than this many hours: late."
    )
    now: datetime | None = Field(
        default=None,
        description="Pin the clock to this UTC instant (old or replayed data, tests); unset = now.",
    )
