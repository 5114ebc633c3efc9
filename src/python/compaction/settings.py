"""Compaction job configuration from the environment (prefix TICKSTREAM_COMPACTION_); CLI options override it.

S3 comes from the shared `tickstream.settings.S3Settings` (TICKSTREAM_S3_*).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CompactionSettings(BaseSettings):
    """How the compaction job runs and what it considers closed, right-sized and safe to delete."""

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_COMPACTION_")

    master: str = Field(
        default="local[2]", description="Spark master URL (local[N], spark://host:7077, ...)."
    )
    driver_memory: str = Field(default="2g", description="spark.driver.memory.")
    lake_root: str = Field(
        default="", description="s3://bucket[/prefix] or a local directory; empty = the bucket."
    )
    target_file_mb: int = Field(
        default=128, ge=1, description="Target size of a compacted object (MiB of input)."
    )
    closed_margin_seconds: int = Field(
        default=120,
        ge=0,
        description="An hour is closed when the streaming watermark is past its end + this.",
    )
    grace_seconds: int = Field(
        default=900,
        ge=0,
        description="Replaced / superseded objects are deleted this long after their replacing manifest.",
    )
    jars: str = Field(default="", description="Extra jars for Spark; empty = the cached connectors.")

    @property
    def target_bytes(self) -> int:
        """`target_file_mb` in bytes."""
        return self.target_file_mb * 1024 * 1024
