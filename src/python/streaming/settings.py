"""Streaming job configuration from the environment (prefix TICKSTREAM_STREAMING_); CLI options override it.

Kafka and S3 come from the shared `tickstream.settings` (TICKSTREAM_KAFKA_*, TICKSTREAM_S3_*).
"""

from __future__ import annotations

import json
import re

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from tickstream.settings import LakeRootSettings, PathsSettings
from tickstream.topology import TICKS_TOPIC

_DELAY = re.compile(r"^\d+ (second|minute|hour)s?$")
_MEMORY = re.compile(r"^\d+[kmgt]$")


_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600}


def delay_seconds(delay: str) -> int:
    """Seconds in a delay such as '30 seconds' or '2 minutes'."""
    count, unit = delay.split()
    return int(count) * _UNIT_SECONDS[unit.rstrip("s")]


def _default_checkpoint_dir() -> str:
    return str(PathsSettings().home / "checkpoints" / "streaming")


class StreamingSettings(LakeRootSettings):
    """How the streaming job runs: where (master), how often, from which offsets, with what state."""

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_STREAMING_")

    master: str = Field(
        default="local[2]", description="Spark master URL (local[N], spark://host:7077, ...)."
    )
    app_name: str = Field(default="tickstream-streaming", description="Spark application name.")
    topic: str = Field(default=TICKS_TOPIC.name, description="Kafka topic carrying the ticks.")
    trigger_seconds: float = Field(default=1.0, gt=0.0, description="Micro-batch trigger interval.")
    max_offsets_per_trigger: int | None = Field(
        default=1_000_000, ge=1, description="Most Kafka records per ticks micro-batch; unset = no cap."
    )
    min_offsets_per_trigger: int = Field(
        default=10_000,
        ge=1,
        description=(
            "Adaptive trigger: a micro-batch waits for at least this many Kafka records (Spark's "
            "minOffsetsPerTrigger; at most max_offsets_per_trigger), but no longer than "
            "max_trigger_delay_s; 1 = a batch every trigger."
        ),
    )
    max_trigger_delay_s: float = Field(
        default=3.0,
        gt=0.0,
        description="Longest wait for min_offsets_per_trigger records before a batch runs anyway.",
    )
    starting_offsets: str = Field(
        default="earliest",
        description="Where a new checkpoint starts: earliest, latest or Spark's per-partition JSON.",
    )
    fail_on_data_loss: bool = Field(
        default=True, description="Stop when Kafka lost offsets the checkpoint expects (retention, reset)."
    )
    checkpoint_dir: str = Field(
        default_factory=_default_checkpoint_dir,
        description=(
            "Checkpoint root, one subdirectory per query: storage the driver and every executor share "
            "(a local path in local mode)."
        ),
    )
    watermark_delay: str = Field(
        default="30 seconds",
        description=(
            "How long after event time a minute is complete and its bar written, e.g. '30 seconds'. A tick "
            "of a complete minute is still stored (counted late) and its hour's bars are recomputed."
        ),
    )
    bars: bool = Field(default=True, description="Append the bars of complete minutes to bars_1m.")
    bars_trigger_seconds: float = Field(
        default=60.0,
        gt=0.0,
        description="Least time between two updates of bars_1m (a minute's bar is complete once a minute).",
    )
    snapshot_retention_s: float = Field(
        default=600.0,
        ge=60.0,
        description=(
            "The job expires the lake tables' snapshots older than this (every third of it), which keeps "
            "each "
            "commit's metadata small; the hourly maintenance expires them too."
        ),
    )
    max_event_time_ahead_seconds: float = Field(
        default=300.0,
        gt=0.0,
        description=(
            "Event-time guard: a tick whose event time is more than this after its Kafka record timestamp "
            "is quarantined as future_timestamp (one bad clock cannot move event time ahead)."
        ),
    )
    shuffle_partitions: int = Field(
        default=2, ge=1, description="spark.sql.shuffle.partitions (de-duplication join, bars)."
    )
    parse_partitions: int = Field(
        default=2,
        ge=1,
        description=(
            "Tasks that parse a micro-batch's Kafka records (the topic's partitions are merged into this "
            "many, without a shuffle): one per core; each Python task has a fixed cost."
        ),
    )
    driver_memory: str = Field(
        default="6g",
        description=(
            "spark.driver.memory (in local mode the driver is the executor): holds the cached micro-batch "
            "(up to max_offsets_per_trigger records) and the de-duplication join."
        ),
    )
    restart_delay_s: float = Field(
        default=2.0, gt=0.0, description="First back-off before restarting a failed query (doubles)."
    )
    restart_max_delay_s: float = Field(default=60.0, gt=0.0, description="Longest restart back-off.")
    max_restarts: int | None = Field(
        default=None,
        ge=0,
        description="Consecutive failures of a query before the job exits 1; unset = never.",
    )
    jars: str = Field(
        default="",
        description="Comma-separated connector jars; empty = the local cache (tickstream services).",
    )

    @field_validator("watermark_delay")
    @classmethod
    def _check_delay(cls, value: str) -> str:
        if not _DELAY.match(value.strip()):
            raise ValueError(f"expected '<n> seconds|minutes|hours', got {value!r}")
        return value.strip()

    @field_validator("driver_memory")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        if not _MEMORY.match(value.strip().lower()):
            raise ValueError(f"expected a JVM size such as 1g or 512m, got {value!r}")
        return value.strip().lower()

    @field_validator("starting_offsets")
    @classmethod
    def _check_offsets(cls, value: str) -> str:
        value = value.strip()
        if value in ("earliest", "latest"):
            return value
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ValueError(f"expected earliest, latest or a JSON object, got {value!r}")
        return value

    def checkpoint_for(self, query_name: str) -> str:
        """Checkpoint location of one query."""
        return f"{self.checkpoint_dir.rstrip('/')}/{query_name}"
