"""Rebuilding a lake hour from Kafka (real Kafka, S3 and Spark): `python -m compaction.rebuild`.

The hour's rows in the lake are wrong (synthetic rows that never went through Kafka); the topic holds the
truth: ticks of the hour with re-sends and malformed records, plus ticks outside it. After the rebuild
DuckDB reads, through the catalog, exactly the hour's valid first sends, and bars equal to a polars
computation; a second run writes the same rows; an open hour is refused; a rebuild that would shrink an
hour is refused unless --force. (That a commit racing the rebuild fails it: `rebuild_test.py`.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from compaction.testdata import fill_hour, write_status
from ops.services.kafka import ensure_topics
from testkit.expected import EXPECTED_BAR_SQL_COLUMNS, expected_bars
from testkit.lake import TestLake, tick_rows
from tickstream.catalog import metadata_location
from tickstream.contracts import Tick, encode_tick, make_tick
from tickstream.duckdb_lake import connect, iceberg_scan
from tickstream.lake import BARS_1M, TICKS, LakeLocation, LakeTable
from tickstream.topology import Topic

pytestmark = pytest.mark.integration

SRC = Path(__file__).resolve().parents[1]
HOUR_START = datetime(2024, 3, 1, 9, tzinfo=UTC)
H_US = int(HOUR_START.timestamp() * 1_000_000)
SYMBOLS = ("AAPL", "MSFT", "SPY")


def tick(i: int, ts_us: int) -> Tick:
    """Tick i of a round-robin over SYMBOLS, with a deterministic price and size."""
    cents = 10_000 + (i * 7919) % 3_000
    return make_tick(
        SYMBOLS[i % 3], i // 3 + 1, ts_us, cents / 100, 1 + i % 97, (cents - 1) / 100, (cents + 1) / 100
    )


def records() -> tuple[list[tuple[bytes, bytes]], list[Tick]]:
    """What is sent (in order), and the hour's valid first sends."""
    inside = [tick(i, H_US + i * 1_200_000) for i in range(3_000)]  # every 1.2 s through the hour
    outside = [tick(3_000 + i, H_US + 3_600_000_000 + i * 1_000_000) for i in range(30)]  # the next hour
    sent: list[tuple[bytes, bytes]] = []
    for i, t in enumerate(inside + outside):
        sent.append((t["symbol"].encode(), encode_tick(t)))
        if i % 25 == 0:  # a re-send
            sent.append((t["symbol"].encode(), encode_tick(t)))
        if i % 500 == 0:
            sent.append((b"AAPL", b'{"not": "a tick"}'))
    return sent, inside


def rebuild(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    """Run the rebuild job; return exit code, JSON report and stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "compaction.rebuild", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, (json.loads(lines[-1]) if lines else {}), done.stderr


def read(lake: TestLake, table: LakeTable, columns: str) -> list[tuple[Any, ...]]:
    location = metadata_location(lake.catalog, lake.settings, table)
    assert location is not None
    with connect(lake.s3) as con:
        return sorted(
            con.execute(
                f"SELECT {columns} FROM {iceberg_scan(location)} WHERE {table.partition_column} >= ? "
                f"AND {table.partition_column} < ?",
                [HOUR_START, HOUR_START + timedelta(hours=1)],
            ).fetchall()
        )


TICK_COLUMNS = "schema_version, symbol, seq, ts_us, price, size, bid, ask"


def test_rebuild_replaces_an_hour_with_what_kafka_holds(
    kafka_bootstrap: str, s3_lake: TestLake, spark_connector_jars: list[Path]
) -> None:
    lake, s3 = s3_lake, s3_lake.s3
    run = uuid.uuid4().hex[:8]
    topic = f"ticks-rebuild-{run}"
    ensure_topics(kafka_bootstrap, [Topic(topic, 3, 7 * 86_400_000, "rebuild test")])
    sent, truth = records()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for key, value in sent:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(60) == 0

    fill_hour(lake, "2024-03-01", "09", batches=5, rows_per_batch=10)  # rows (and bars) not in Kafka
    status = LakeLocation(f"{lake.settings.warehouse}-status", s3)
    write_status(status, datetime(2024, 3, 1, 10, 30, tzinfo=UTC))  # 09h closed, 10h open
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "PYSPARK_PYTHON": sys.executable,
        "TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        **lake.env(),
        "TICKSTREAM_COMPACTION_JARS": ",".join(str(jar) for jar in spark_connector_jars),
        "TICKSTREAM_LAKE_ROOT": status.root,
    }
    hour = ("--from", "2024-03-01T09", "--to", "2024-03-01T10", "--topic", topic)

    code, report, stderr = rebuild(env, "--from", "2024-03-01T09", "--to", "2024-03-01T11", "--topic", topic)
    assert code == 3 and report["status"] == "refused" and "10" in report["error"], stderr[-2000:]

    code, report, stderr = rebuild(env, *hour)
    assert code == 0, stderr[-3000:]
    rebuilt = {h["partition"]: h for h in report["hours"]}
    assert (rebuilt["ticks/2024-03-01T09"]["rows_before"], rebuilt["ticks/2024-03-01T09"]["rows"]) == (
        50,
        len(truth),
    )
    assert sum(high - low for low, high in report["offsets"].values()) == len(sent)

    assert read(lake, TICKS, TICK_COLUMNS) == sorted(tuple(t.values()) for t in truth)
    assert read(lake, BARS_1M, EXPECTED_BAR_SQL_COLUMNS) == expected_bars(truth)

    code, again, stderr = rebuild(env, *hour)  # the same input: the same rows
    assert code == 0, stderr[-3000:]
    assert read(lake, TICKS, TICK_COLUMNS) == sorted(tuple(t.values()) for t in truth)
    assert read(lake, BARS_1M, EXPECTED_BAR_SQL_COLUMNS) == expected_bars(truth)

    # the hour gained rows the topic does not hold: replacing it would shrink it
    extra = [make_tick("MSFT", 900_000 + i, H_US + i * 1_000, 101.0, 5, 100.99, 101.01) for i in range(10)]
    lake.append(TICKS, tick_rows(extra))
    code, refused, stderr = rebuild(env, *hour)
    assert code == 3 and "refusing to shrink" in refused["error"] and "--force" in refused["error"], stderr[
        -2000:
    ]
    assert len(read(lake, TICKS, TICK_COLUMNS)) == len(truth) + 10  # nothing changed
    code, forced, stderr = rebuild(env, *hour, "--force")
    assert code == 0, stderr[-3000:]
    assert read(lake, TICKS, TICK_COLUMNS) == sorted(tuple(t.values()) for t in truth)
