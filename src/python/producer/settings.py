"""Producer configuration from the environment (prefix TICKSTREAM_PRODUCER_); CLI options override it.

Where Kafka is comes from `tickstream.settings.KafkaSettings` (TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS).
Every field below is documented with its default; e.g. TICKSTREAM_PRODUCER_RATE=50000.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickstream.topology import TICKS_TOPIC

Compression = Literal["lz4", "zstd", "snappy", "gzip", "none"]


class ProducerSettings(BaseSettings):
    """What to produce, how fast, how badly behaved, and how the Kafka client is tuned."""

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_PRODUCER_")

    topic: str = Field(default=TICKS_TOPIC.name, description="Topic the ticks are sent to.")
    rate: float = Field(default=0.0, ge=0.0, description="Records per second; 0 = as fast as possible.")
    count: int | None = Field(default=None, ge=1, description="Ticks to simulate; unset = no limit.")
    duration_s: float | None = Field(default=None, gt=0.0, description="Stop after this many seconds.")
    symbols: str = Field(
        default="",
        description="Comma-separated symbols to simulate; empty = the default ~30-symbol universe.",
    )
    seed: int = Field(default=42, description="Random seed; the same seed gives the same ticks.")
    start_ts_us: int | None = Field(
        default=None, description="Event time of the first simulated tick (epoch µs, UTC); unset = now."
    )
    event_rate_hz: float | None = Field(
        default=None,
        gt=0.0,
        description="Ticks per second of event time; unset = `rate`, or 100000 when rate is unlimited.",
    )
    late_fraction: float = Field(default=0.0, ge=0.0, le=1.0, description="Share of ticks sent late.")
    max_lateness_ms: int = Field(default=2_000, ge=1, description="Latest a late tick arrives, in ms.")
    duplicate_fraction: float = Field(default=0.0, ge=0.0, le=1.0, description="Share of ticks sent twice.")
    malformed_fraction: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Malformed records injected per tick (extra records)."
    )
    generator_batch: int = Field(default=16_384, ge=1, description="Ticks generated per vectorised batch.")
    compression: Compression = Field(default="lz4", description="Kafka compression codec.")
    linger_ms: int = Field(default=20, ge=0, description="How long the client waits to fill a batch.")
    batch_size_bytes: int = Field(default=1_000_000, ge=1, description="Max bytes per partition batch.")
    queue_max_messages: int = Field(default=1_000_000, ge=1, description="Client-side queue bound (records).")
    delivery_reports: Literal["all", "errors"] = Field(
        default="all",
        description=(
            "all: count every ack in a delivery callback; errors: the client reports failures only and acks"
            " are inferred from its outstanding count (exact after the final flush, less Python per record)."
        ),
    )
    flush_timeout_s: float = Field(default=60.0, gt=0.0, description="Longest final flush before giving up.")
    progress_interval_s: float = Field(default=1.0, gt=0.0, description="Seconds between progress lines.")

    def symbol_list(self) -> list[str] | None:
        """The configured symbols, or None for the default universe."""
        symbols = [s.strip() for s in self.symbols.split(",") if s.strip()]
        return symbols or None

    def effective_event_rate_hz(self) -> float:
        """Ticks per second of event time used by the simulator (see `event_rate_hz`)."""
        if self.event_rate_hz is not None:
            return self.event_rate_hz
        return self.rate if self.rate > 0 else 100_000.0
