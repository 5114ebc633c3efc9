"""Rebuilding a lake hour from Kafka (real Kafka, S3 and Spark): `python -m compaction.rebuild`.

The hour's objects in the lake are wrong (synthetic rows that never went through Kafka); the topic holds
the truth: ticks of the hour with re-sends and malformed records, plus ticks outside it. After the rebuild
DuckDB reads, through the reader rule, exactly the hour's valid first sends, and bars equal to a polars
computation; a second run changes nothing; an open hour is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from compaction.testdata import StreamWriter, duckdb_connection, write_status
from tickstream.contracts import Tick, encode_tick, make_tick
from tickstream.lake import BARS_1M, TICKS, LakeLocation, committed_hour
from tickstream.services.kafka import ensure_topics
from tickstream.settings import S3Settings
from tickstream.testing.expected import expected_bars
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


def test_rebuild_replaces_an_hour_with_what_kafka_holds(
    kafka_bootstrap: str, s3_settings: S3Settings, spark_connector_jars: list[Path]
) -> None:
    run = uuid.uuid4().hex[:8]
    topic = f"ticks-rebuild-{run}"
    ensure_topics(kafka_bootstrap, [Topic(topic, 3, 7 * 86_400_000, "rebuild test")])
    sent, truth = records()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for key, value in sent:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(60) == 0

    root = f"s3://{s3_settings.bucket}/rebuild-it-{run}"
    location = LakeLocation(root, s3_settings)
    damaged = StreamWriter(location, "2024-03-01", "09")
    damaged.ticks(5, 50)  # rows that are not in Kafka
    damaged.bars(5)
    write_status(location, datetime(2024, 3, 1, 10, 30, tzinfo=UTC))  # 09h closed, 10h open
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "PYSPARK_PYTHON": sys.executable,
        "TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TICKSTREAM_S3_ENDPOINT_URL": s3_settings.endpoint_url,
        "TICKSTREAM_S3_ACCESS_KEY_ID": s3_settings.access_key_id,
        "TICKSTREAM_S3_SECRET_ACCESS_KEY": s3_settings.secret_access_key,
        "TICKSTREAM_S3_BUCKET": s3_settings.bucket,
        "TICKSTREAM_COMPACTION_JARS": ",".join(str(jar) for jar in spark_connector_jars),
        "TICKSTREAM_COMPACTION_LAKE_ROOT": root,
    }

    code, report, stderr = rebuild(env, "--from", "2024-03-01T09", "--to", "2024-03-01T11", "--topic", topic)
    assert code == 3 and report["status"] == "refused" and "10" in report["error"], stderr[-2000:]

    code, report, stderr = rebuild(env, "--from", "2024-03-01T09", "--to", "2024-03-01T10", "--topic", topic)
    assert code == 0, stderr[-3000:]
    assert {h["partition"]: h["rows"] for h in report["hours"]}["ticks/date=2024-03-01/hour=09"] == len(truth)

    con = duckdb_connection(s3_settings)

    def read(table: str, columns: str) -> list[tuple[Any, ...]]:
        view = committed_hour(location, table, "2024-03-01", "09")
        assert view.manifest is not None and not view.stream  # the damaged objects are no longer read
        files = [location.url(key) for key in view.keys]
        return sorted(con.execute(f"SELECT {columns} FROM read_parquet(?)", [files]).fetchall())

    tick_columns = "schema_version, symbol, seq, ts_us, price, size, bid, ask"
    assert read(TICKS.name, tick_columns) == sorted(tuple(t.values()) for t in truth)
    bar_columns = "symbol, epoch_us(window_start), open, high, low, close, volume, vwap, trade_count"
    assert read(BARS_1M.name, bar_columns) == expected_bars(truth)
    first = {t: committed_hour(location, t, "2024-03-01", "09").manifest for t in (TICKS.name, BARS_1M.name)}

    code, again, stderr = rebuild(env, "--from", "2024-03-01T09", "--to", "2024-03-01T10", "--topic", topic)
    assert code == 0, stderr[-3000:]
    for table, manifest in first.items():
        now = committed_hour(location, table, "2024-03-01", "09").manifest
        assert manifest is not None and now is not None
        assert (now.run_id, now.objects, now.rows) == (manifest.run_id, manifest.objects, manifest.rows)
    assert read(TICKS.name, tick_columns) == sorted(tuple(t.values()) for t in truth)
