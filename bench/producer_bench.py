"""Producer benchmark: our Python producer vs Kafka's own kafka-producer-perf-test on the local broker.

Runs, in one process and in this order:

1. generation + serialisation only (simulator + orjson, no Kafka): ticks/s;
2. N simulated ticks through `producer.kafka_sink.KafkaTickSink` to a dedicated topic: acked records/s;
3. org.apache.kafka.tools.ProducerPerformance with the same record count, the mean encoded tick size as
   record size and the same producer properties (acks=all, idempotence, compression, linger, batch size).

Writes bench/results/producer.json and prints our/Kafka throughput ratio. Needs a running broker
(`tickstream services up`); do not run it beside heavy builds on a 2-core machine.

    PYTHONPATH=src/python:bench python bench/producer_bench.py --records 5000000
"""

from __future__ import annotations

import json
import platform
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from ops.services.kafka import KafkaService, ensure_topics
from producer.kafka_sink import KafkaTickSink, producer_config
from producer.publish import publish
from producer.settings import Compression, ProducerSettings
from producer.simulator import SimulatedFeed, SimulationConfig
from tickstream.commands import command_app
from tickstream.contracts import now_us
from tickstream.settings import KafkaSettings, PathsSettings
from tickstream.topology import MS_PER_DAY, TICKS_TOPIC, Topic

PERF_MAIN_CLASS = "org.apache.kafka.tools.ProducerPerformance"
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "producer.json"
BENCH_TOPIC = Topic("bench.producer", TICKS_TOPIC.partitions, MS_PER_DAY, "Producer benchmark scratch topic.")
PERF_SUMMARY = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)")


def measure_generation(config: SimulationConfig, records: int) -> dict[str, float]:
    """Ticks/s and mean encoded bytes of simulation + serialisation alone."""
    started = time.perf_counter()
    total_bytes = total_records = 0
    for batch in SimulatedFeed(config, records):
        total_records += len(batch)
        total_bytes += sum(map(len, batch.values))
    elapsed_s = time.perf_counter() - started
    return {
        "records": total_records,
        "elapsed_s": round(elapsed_s, 3),
        "records_per_s": round(total_records / elapsed_s, 1),
        "mean_record_bytes": round(total_bytes / total_records, 2),
    }


def measure_producer(
    config: SimulationConfig, records: int, settings: ProducerSettings, bootstrap: str
) -> dict[str, Any]:
    """Acked records/s of our producer for `records` simulated ticks."""
    sink = KafkaTickSink(producer_config(bootstrap, settings), settings.topic)
    cpu_started = time.process_time()
    report = publish(SimulatedFeed(config, records), sink, flush_timeout_s=settings.flush_timeout_s)
    return {**report.as_dict(), "process_cpu_s": round(time.process_time() - cpu_started, 3)}


def perf_test_args(records: int, record_bytes: int, settings: ProducerSettings, bootstrap: str) -> list[str]:
    """ProducerPerformance arguments matching our producer's configuration."""
    props = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": "true",
        "compression.type": settings.compression,
        "linger.ms": str(settings.linger_ms),
        "batch.size": str(settings.batch_size_bytes),
    }
    return [
        "--topic",
        settings.topic,
        "--num-records",
        str(records),
        "--record-size",
        str(record_bytes),
        "--throughput",
        "-1",
        "--producer-props",
        *(f"{key}={value}" for key, value in props.items()),
    ]


def measure_kafka_perf(
    records: int, record_bytes: int, settings: ProducerSettings, bootstrap: str
) -> dict[str, Any]:
    """Run kafka-producer-perf-test and parse its summary line."""
    started = time.perf_counter()
    completed = KafkaService(PathsSettings(), KafkaSettings()).run_tool(
        PERF_MAIN_CLASS,
        perf_test_args(records, record_bytes, settings, bootstrap),
        capture_output=True,
        timeout=1_800,
    )
    summary = PERF_SUMMARY.findall(completed.stdout)
    if completed.returncode != 0 or not summary:
        raise RuntimeError(f"{PERF_MAIN_CLASS} failed ({completed.returncode}): {completed.stderr[-2000:]}")
    sent, per_s, mb_per_s = summary[-1]
    return {
        "records": int(sent),
        "records_per_s": float(per_s),
        "mb_per_s": float(mb_per_s),
        "wall_s_including_jvm_start": round(time.perf_counter() - started, 3),
        "summary": completed.stdout.strip().splitlines()[-1],
    }


DESCRIPTION = __doc__.splitlines()[0]
app = command_app(DESCRIPTION)


@app.command(help=DESCRIPTION)
def benchmark(
    records: Annotated[int, typer.Option(help="Records per measurement.")] = 2_000_000,
    compression: Annotated[Compression, typer.Option(help="lz4, zstd, snappy, gzip or none.")] = "lz4",
    delivery_reports: Annotated[Literal["all", "errors"], typer.Option(help="See ProducerSettings.")] = "all",
    output: Annotated[Path, typer.Option(help="results file")] = RESULTS_PATH,
) -> None:
    """Run the three measurements, write and print the results."""
    bootstrap = KafkaSettings().bootstrap_servers
    ensure_topics(bootstrap, [BENCH_TOPIC])
    settings = ProducerSettings(
        topic=BENCH_TOPIC.name, compression=compression, delivery_reports=delivery_reports
    )
    config = SimulationConfig(start_ts_us=now_us())

    generation = measure_generation(config, records)
    ours = measure_producer(config, records, settings, bootstrap)
    record_bytes = round(generation["mean_record_bytes"])
    kafka = measure_kafka_perf(records, record_bytes, settings, bootstrap)
    ratio = ours["records_per_s"] / kafka["records_per_s"]
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "python": platform.python_version()},
        "records": records,
        "record_bytes": record_bytes,
        "settings": settings.model_dump(
            include={"compression", "linger_ms", "batch_size_bytes", "delivery_reports"}
        ),
        "generation_only": generation,
        "tickstream_producer": ours,
        "kafka_producer_perf_test": kafka,
        "ratio_tickstream_to_kafka": round(ratio, 3),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"generation only {generation['records_per_s']:,.0f}/s"
        f" | tickstream producer {ours['records_per_s']:,.0f}/s"
        f" | kafka-producer-perf-test {kafka['records_per_s']:,.0f}/s | ratio {ratio:.2f} -> {output}"
    )


def main() -> None:
    """Entry point (`./pants run bench/producer_bench.py -- ...`)."""
    app()


if __name__ == "__main__":
    main()
