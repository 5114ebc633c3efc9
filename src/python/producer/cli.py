"""Command line: `python -m producer.cli simulate|replay ...` publishes ticks to Kafka.

Options override TICKSTREAM_PRODUCER_* settings (see producer.settings). A progress line goes to stderr;
the final report is logged as JSON. The exit code is 1 when any record was not acknowledged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from producer.kafka_sink import KafkaTickSink, producer_config
from producer.publish import ProgressLine, PublishReport, StopFlag, SystemClock, publish
from producer.replay import replay_file
from producer.settings import Compression, ProducerSettings
from producer.simulator import DeliveryFaults, SimulatedFeed, SimulationConfig, select_universe
from tickstream.commands import command_app, load_settings
from tickstream.contracts import now_us
from tickstream.logs import configure_logging, get_logger
from tickstream.settings import KafkaSettings

app = command_app("Publish market ticks (simulated or replayed) to Kafka.", no_args_is_help=True)

RateOption = Annotated[float | None, typer.Option(help="Records per second; 0 = unlimited.")]
TopicOption = Annotated[str | None, typer.Option(help="Kafka topic (default: ticks).")]
CompressionOption = Annotated[Compression | None, typer.Option(help="lz4, zstd, snappy, gzip or none.")]


def simulation_config(settings: ProducerSettings, start_ts_us: int | None = None) -> SimulationConfig:
    """The simulator configuration described by `settings` (start = now unless configured)."""
    return SimulationConfig(
        start_ts_us=settings.start_ts_us or start_ts_us or now_us(),
        universe=select_universe(settings.symbol_list()),
        seed=settings.seed,
        event_rate_hz=settings.effective_event_rate_hz(),
        batch_size=settings.generator_batch,
        faults=DeliveryFaults(
            late_fraction=settings.late_fraction,
            max_lateness_us=settings.max_lateness_ms * 1_000,
            duplicate_fraction=settings.duplicate_fraction,
            malformed_fraction=settings.malformed_fraction,
        ),
    )


def make_sink(settings: ProducerSettings) -> KafkaTickSink:
    """A Kafka sink for `settings.topic` on the configured bootstrap servers."""
    kafka = KafkaSettings()
    return KafkaTickSink(
        producer_config(kafka.bootstrap_servers, settings, kafka.client_security()), settings.topic
    )


def run(source: Any, settings: ProducerSettings, command: str) -> PublishReport:
    """Publish `source` with signal handling, progress line and a final logged report."""
    configure_logging()
    log = get_logger("producer")
    stop = StopFlag()
    clock = SystemClock()
    log.info("producer.start", command=command, topic=settings.topic, rate=settings.rate)
    with stop.on_signals():
        report = publish(
            source,
            make_sink(settings),
            rate_hz=settings.rate,
            duration_s=settings.duration_s,
            flush_timeout_s=settings.flush_timeout_s,
            stop=stop,
            clock=clock,
            progress=ProgressLine(clock, settings.progress_interval_s),
        )
    (log.info if report.ok else log.error)("producer.finished", command=command, **report.as_dict())
    return report


@app.command()
def simulate(
    rate: RateOption = None,
    count: Annotated[int | None, typer.Option(help="Ticks to send; default unlimited.")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds to run; default unlimited.")] = None,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols; default ~30.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 42).")] = None,
    late: Annotated[float | None, typer.Option(help="Share of ticks sent late.")] = None,
    duplicates: Annotated[float | None, typer.Option(help="Share of ticks sent twice.")] = None,
    malformed: Annotated[float | None, typer.Option(help="Malformed records per tick.")] = None,
    compression: CompressionOption = None,
    topic: TopicOption = None,
) -> None:
    """Simulate a market and publish its ticks."""
    settings = load_settings(
        ProducerSettings,
        rate=rate,
        count=count,
        duration_s=duration,
        symbols=symbols,
        seed=seed,
        late_fraction=late,
        duplicate_fraction=duplicates,
        malformed_fraction=malformed,
        compression=compression,
        topic=topic,
    )
    feed = SimulatedFeed(simulation_config(settings), settings.count)
    raise typer.Exit(0 if run(feed, settings, "simulate").ok else 1)


@app.command()
def replay(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="CSV or Parquet of ticks or bars.")
    ],
    speed: Annotated[float, typer.Option(help="1 = real time, 100 = 100x, 0 or inf = unpaced.")] = 1.0,
    rate: RateOption = None,
    duration: Annotated[float | None, typer.Option(help="Seconds to run; default: whole file.")] = None,
    compression: CompressionOption = None,
    topic: TopicOption = None,
) -> None:
    """Replay recorded ticks or 1-minute bars at a speed factor."""
    settings = load_settings(
        ProducerSettings, rate=rate, duration_s=duration, compression=compression, topic=topic
    )
    source: Any = replay_file(path, speed, batch_size=settings.generator_batch)
    raise typer.Exit(0 if run(source, settings, "replay").ok else 1)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
