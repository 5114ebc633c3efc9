"""Compaction job configuration from the environment (prefix TICKSTREAM_COMPACTION_); CLI options override it.

The catalog and S3 come from the shared `tickstream.settings` (TICKSTREAM_CATALOG_*, TICKSTREAM_S3_*).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tickstream.settings import LakeRootSettings


class CompactionSettings(LakeRootSettings):
    """How the compaction job runs: Spark, file sizes, what counts as closed, how much history to keep."""

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_COMPACTION_")

    master: str = Field(
        default="local[2]", description="Spark master URL (local[N], spark://host:7077, ...)."
    )
    driver_memory: str = Field(default="2g", description="spark.driver.memory.")
    target_file_mb: int = Field(default=128, ge=1, description="Target size of a compacted data file (MiB).")
    closed_margin_seconds: int = Field(
        default=120,
        ge=0,
        description="An hour is closed when the streaming watermark is past its end + this.",
    )
    snapshot_retention_minutes: int = Field(
        default=60,
        ge=0,
        description="Maintenance expires snapshots older than this (and the files only they referenced).",
    )
    retain_snapshots: int = Field(default=10, ge=1, description="Snapshots kept whatever their age.")
    orphan_age_hours: float = Field(
        default=24.0,
        ge=0,
        description="Files no snapshot references are deleted once older than this: younger ones may belong "
        "to a commit in flight, so never set it below the longest write (0 is for tests).",
    )
    jars: str = Field(
        default="", description="Jars for Spark; empty = the cached ones (tickstream services)."
    )

    @property
    def target_bytes(self) -> int:
        """`target_file_mb` in bytes."""
        return self.target_file_mb * 1024 * 1024
