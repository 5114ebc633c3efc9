"""The compose stack (deploy/docker-compose.yml) running on this machine's Docker engine, from the images
`./pants package` built for this test: 3 Kafka brokers, a Spark master with 2 workers, SeaweedFS, the
catalog's PostgreSQL, Airflow, the dashboard, the producer and the streaming job.

The stack is a compose project of its own (its own volumes and network) whose only host ports are the UIs
and, from a test override file, the brokers' extra HOST listeners, S3 and the catalog database, so that the
test reads Kafka and the lake directly. The expectation is computed from the records in the topic with the
contract's reference parser and polars (`e2e.expectations`): every accepted tick once in the lake, the bars of
every complete minute equal. A recorded hour two days old, published by the test itself, goes further: the
hourly DAG is run for it through Airflow's API, then the dashboard's own data layer, in its container, must
show that hour's bars and the marts dbt built, as `analytics.testing` computes them. Each fault test first
proves its fault happened, then checks the lake again.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka import Producer
from pydantic import SecretStr

from analytics.testing import assert_matches, expected_activity_hourly, expected_ohlcv_daily, tick
from e2e.airflow_api import sign_in, trigger_hour, wait_for_run
from e2e.expectations import Expected, consume_all
from ops.containers import Stack
from ops.credentials import ensure_install_secrets, read_secrets
from ops.services.docker_engine import DockerEngine, docker_cli
from testkit.lake import TestLake
from testkit.services import free_port
from tickstream.contracts import Tick, encode_tick, kafka_key, to_us
from tickstream.lake import BARS_1M, TICKS
from tickstream.settings import CatalogSettings, PathsSettings, S3Settings
from tickstream.topology import TICKS_TOPIC

pytestmark = pytest.mark.integration

BROKERS = ("kafka-1", "kafka-2", "kafka-3")
UP_TIMEOUT_S = 1200.0
CATCH_UP_TIMEOUT_S = 600.0


@dataclass
class RunningStack:
    """The running compose project and how the test reaches it from the host."""

    stack: Stack
    bootstrap: str
    lake: TestLake
    airflow_url: str
    airflow_password: str
    acknowledged_by_removed_producers: int = 0
    """What producer containers removed by `down` reported acknowledged (their logs went with them)."""
    published_by_test: int = 0
    """Records this test published itself (acknowledged by every in-sync replica)."""

    def compose(self, *args: str) -> str:
        """`docker-compose ARGS` on the stack; its output."""
        return self.stack.compose(*args, capture=True).stdout

    def container(self, service: str) -> str:
        """The container id of a service."""
        return self.stack.containers()[service]["id"]

    def restart_count(self, service: str) -> int:
        """How many times Docker restarted a service's container (its restart policy)."""
        out = subprocess.run(
            [docker_cli(), "inspect", "--format", "{{.RestartCount}}", self.container(service)],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout.strip())

    def logs(self, service: str) -> str:
        """Everything a service's container printed, across restarts."""
        return self.compose("logs", "--no-color", service)

    def reopen_lake(self) -> None:
        """Open the catalog again (after the stack was recreated, the old connections are dead)."""
        self.lake = TestLake(self.lake.settings, self.lake.s3)

    def lake_ticks(self) -> list[tuple[Any, ...]]:
        """(symbol, seq, ts_us, price, size, bid, ask) of every row of the ticks table, sorted."""
        columns = ["symbol", "seq", "ts_us", "price", "size", "bid", "ask"]
        rows = self.lake.read(TICKS).select(columns).to_pylist()
        return sorted(tuple(row[name] for name in columns) for row in rows)

    def lake_bars(self) -> list[tuple[Any, ...]]:
        """The bars table as (symbol, window start µs, OHLC, volume, vwap, count), sorted."""
        table = self.lake.read(BARS_1M)
        start_us = table["window_start"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
        names = ("symbol", "open", "high", "low", "close", "volume", "vwap", "trade_count")
        rows = table.select(list(names)).to_pylist()
        return sorted(
            (row["symbol"], start, *(row[name] for name in names[1:]))
            for row, start in zip(rows, start_us, strict=True)
        )


def write_override(path: Path, kafka_ports: list[int], s3_port: int, catalog_port: int) -> Path:
    """A compose override that publishes, on 127.0.0.1, each broker's extra HOST listener, S3 and the
    catalog database (compose files are YAML, and JSON is YAML)."""
    services: dict[str, Any] = {}
    for broker, port in zip(BROKERS, kafka_ports, strict=True):
        services[broker] = {
            "environment": {
                "KAFKA_LISTENERS": "INTERNAL://:9092,CONTROLLER://:9093,HOST://:29092",
                "KAFKA_ADVERTISED_LISTENERS": f"INTERNAL://{broker}:9092,HOST://127.0.0.1:{port}",
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
                    "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT,HOST:PLAINTEXT"
                ),
            },
            "ports": [f"127.0.0.1:{port}:29092"],
        }
    services["seaweedfs"] = {"ports": [f"127.0.0.1:{s3_port}:8333"]}
    services["catalog-db"] = {"ports": [f"127.0.0.1:{catalog_port}:5432"]}
    path.write_text(json.dumps({"services": services}, indent=2))
    return path


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The whole stack up and healthy, with this test's own secrets and volumes; removed afterwards."""
    home = tmp_path_factory.mktemp("compose-home")
    paths = PathsSettings(home=home)
    assert DockerEngine(paths).healthy(), "no Docker engine: run the tests with `./tickstream test`"
    ensure_install_secrets(paths)
    secrets = read_secrets(paths.secrets_file)
    kafka_ports = [free_port() for _ in BROKERS]
    s3_port, catalog_port = free_port(), free_port()
    override = write_override(home / "compose.test.json", kafka_ports, s3_port, catalog_port)
    settings = {
        "TICKSTREAM_COMPOSE_DASHBOARD_PORT": str(free_port()),
        "TICKSTREAM_COMPOSE_AIRFLOW_PORT": str(free_port()),
        "TICKSTREAM_COMPOSE_SPARK_UI_PORT": str(free_port()),
        # sized for a 2-core machine that runs the whole stack
        "TICKSTREAM_UP_PRODUCER_RATE": "500",
        "TICKSTREAM_STREAMING_DRIVER_MEMORY": "2g",
    }
    stack = Stack(paths, project=f"tickstream-it-{uuid.uuid4().hex[:6]}", overrides=[override], env=settings)
    try:
        stack.up(UP_TIMEOUT_S)
        s3 = S3Settings(
            endpoint_url=f"http://127.0.0.1:{s3_port}",
            access_key_id=secrets["TICKSTREAM_S3_ACCESS_KEY_ID"],
            secret_access_key=SecretStr(secrets["TICKSTREAM_S3_SECRET_ACCESS_KEY"]),
        )
        catalog = CatalogSettings(
            uri=(
                f"postgresql+psycopg2://iceberg:{secrets['TICKSTREAM_COMPOSE_CATALOG_PASSWORD']}"
                f"@127.0.0.1:{catalog_port}/iceberg_catalog"
            ),
            warehouse="s3://tickstream-lake/warehouse",
        )
        bootstrap = ",".join(f"127.0.0.1:{port}" for port in kafka_ports)
        airflow_url = f"http://127.0.0.1:{settings['TICKSTREAM_COMPOSE_AIRFLOW_PORT']}"
        password = secrets["TICKSTREAM_AIRFLOW_ADMIN_PASSWORD"]
        yield RunningStack(stack, bootstrap, TestLake(catalog, s3), airflow_url, password)
    except Exception:
        print(stack.compose("ps", check=False, capture=True).stdout)
        print(stack.compose("logs", "--no-color", "--tail", "40", check=False, capture=True).stdout[-20000:])
        raise
    finally:
        stack.down(volumes=True)


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = CATCH_UP_TIMEOUT_S) -> None:
    """Poll `check` every 5 s until true; fail naming `what` when time runs out."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        time.sleep(5)


def wait_until_equal(
    what: str,
    actual: Callable[[], list[Any]],
    wanted: list[Any],
    explain: Callable[[], str],
    timeout_s: float = CATCH_UP_TIMEOUT_S,
) -> None:
    """Poll `actual` every 5 s until it equals `wanted`; fail showing the difference and `explain()`."""
    deadline = time.monotonic() + timeout_s
    while (got := actual()) != wanted:
        if time.monotonic() > deadline:
            missing = [row for row in wanted if row not in got]
            unexpected = [row for row in got if row not in wanted]
            pytest.fail(
                f"timed out after {timeout_s:.0f}s waiting for {what}: {len(got)} rows, {len(wanted)} wanted;"
                f" missing {len(missing)}, e.g. {missing[:3]}; unexpected {len(unexpected)}, e.g."
                f" {unexpected[:3]}\n{explain()}"
            )
        time.sleep(5)


def acknowledged_by_producer(stack: RunningStack) -> int:
    """The records the producer's runs report as acknowledged by Kafka (their `producer.finished` lines),
    checking that each run lost none."""
    acknowledged = stack.acknowledged_by_removed_producers
    for line in stack.logs("producer").splitlines():
        payload = line.split("|", 1)[-1].strip()
        if '"producer.finished"' in payload:
            report = json.loads(payload)
            assert report["failed"] == report["refused"] == report["unconfirmed"] == 0, report
            acknowledged += int(report["acked"])
    return acknowledged


def assert_lake_exact(stack: RunningStack) -> Expected:
    """Stop the producer, wait until the lake holds every accepted tick of the topic, then compare ticks and
    the bars of every complete minute with the independent computation."""
    stack.compose("stop", "producer")
    assert stack.stack.containers()["producer"]["exit_code"] == "0", "the producer did not stop gracefully"
    values = consume_all(stack.bootstrap, TICKS_TOPIC.name, TICKS_TOPIC.partitions)
    acknowledged = acknowledged_by_producer(stack) + stack.published_by_test
    assert len(values) == acknowledged, "the topic holds other than the acknowledged records"
    expected = Expected.from_records(values)
    wanted = expected.ticks_between(0, 2**62)
    wait_until(f"{len(wanted)} ticks in the lake", lambda: len(stack.lake_ticks()) >= len(wanted))
    assert stack.lake_ticks() == wanted
    bars = stack.lake_bars()
    assert bars, "no bars yet"
    through_us = max(bar[1] for bar in bars) + 60_000_000
    assert bars == expected.bars_between(0, through_us)
    return expected


def crash(stack: RunningStack, service: str) -> int:
    """SIGKILL a service's main process from the host, as a crash would (not `docker stop`, after which the
    restart policy would wait for an operator); return the restart count it had."""
    restarts = stack.restart_count(service)
    pid = subprocess.run(
        [docker_cli(), "inspect", "--format", "{{.State.Pid}}", stack.container(service)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(["kill", "-9", pid], check=True)
    return restarts


def restarted_by_docker(stack: RunningStack, service: str, restarts_before: int) -> None:
    """Wait until Docker's restart policy has restarted the service and it is healthy again."""
    wait_until(
        f"{service} restarted by Docker and healthy",
        lambda: stack.restart_count(service) > restarts_before
        and stack.stack.containers()[service]["health"] == "healthy",
        timeout_s=300,
    )


def query_ids(stack: RunningStack) -> list[str]:
    """The ids of the streaming queries the current driver container started (its `query_started` lines)."""
    ids = []
    for line in stack.logs("streaming").splitlines():
        payload = line.split("|", 1)[-1].strip()
        if '"query_started"' in payload:
            ids.append(json.loads(payload)["query_id"])
    return ids


def test_ticks_flow_from_producer_to_lake_and_bars_exactly_once(running_stack: RunningStack) -> None:
    wait_until("ticks in the lake", lambda: len(running_stack.lake_ticks()) > 10_000)
    expected = assert_lake_exact(running_stack)
    assert len(expected.ticks) > 10_000


HISTORY_SYMBOLS = ("HISTA", "HISTB", "HISTC")
"""Symbols the simulator never sends: the test's recorded hour is all their ticks."""
DAG_TIMEOUT_S = 1500.0
"""Compaction (two local-mode Spark drivers) and dbt in the scheduler container, on 2 cores shared with the
whole stack: about 10 minutes under load."""
DASHBOARD_PROBE = """
import json
from datetime import datetime, timedelta
import polars as pl
from dashboard.bars import TimeRange
from dashboard.data import Sources
from dashboard.settings import DashboardSettings
from tickstream.settings import CatalogSettings, KafkaSettings, S3Settings
hour, symbols = datetime.fromisoformat(HOUR), list(SYMBOLS)
sources = Sources(DashboardSettings(), S3Settings(), CatalogSettings(), KafkaSettings())
def rows(frame):
    return frame.filter(pl.col("symbol").is_in(symbols)).to_dicts()
bars = sources.bars(TimeRange(hour, hour + timedelta(hours=1)))
bars = bars.with_columns(pl.col("window_start").dt.epoch("us"))
marts = {model: rows(sources.mart(model)) for model in ("fct_ohlcv_daily", "fct_activity_hourly")}
print(json.dumps({"bars": rows(bars), **marts}, default=str))
"""
"""Run by the dashboard's own PEX in its container: what the live view and the History page get for the
recorded hour, through the dashboard's data layer (`Sources`) and the container's configuration."""


def recorded_hour(hour: datetime) -> list[Tick]:
    """One tick every 10 s per history symbol through `hour`, on a deterministic price walk."""
    rng = random.Random(11)
    ticks = []
    for index, symbol in enumerate(HISTORY_SYMBOLS):
        price = 50.0 * (index + 1)
        for seq in range(1, 361):
            price = round(price * (1 + rng.uniform(-0.002, 0.002)), 4)
            at_us = to_us(hour) + (seq - 1) * 10_000_000 + rng.randrange(10_000_000)
            ticks.append(tick(symbol, seq, at_us, price, rng.randrange(1, 500)))
    return ticks


def publish(bootstrap: str, ticks: list[Tick]) -> int:
    """Publish ticks as an independent client (acks from all in-sync replicas); how many were acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    errors: list[Any] = []
    for one in ticks:
        producer.produce(
            TICKS_TOPIC.name,
            key=kafka_key(one["symbol"]),
            value=encode_tick(one),
            on_delivery=lambda error, _message: errors.append(error) if error else None,
        )
        producer.poll(0)
    assert producer.flush(60) == 0 and errors == [], errors
    return len(ticks)


def dashboard_probe(stack: RunningStack, hour: datetime) -> dict[str, list[dict[str, Any]]]:
    """DASHBOARD_PROBE's answer for the recorded hour, from the running dashboard container."""
    script = DASHBOARD_PROBE.replace("HOUR", repr(hour.isoformat())).replace("SYMBOLS", repr(HISTORY_SYMBOLS))
    done = subprocess.run(
        [
            docker_cli(),
            "exec",
            "-e",
            "PEX_INTERPRETER=1",
            stack.container("dashboard"),
            "/app/dashboard.pex",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_recorded_hour_reaches_the_lake_the_marts_and_the_dashboard(running_stack: RunningStack) -> None:
    stack = running_stack
    hour = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    ticks = recorded_hour(hour)
    shuffled = random.Random(5).sample(ticks, len(ticks))  # out of event-time order, and 30 sent twice
    stack.published_by_test += publish(stack.bootstrap, shuffled + shuffled[:30])
    expected = Expected.from_records([encode_tick(one) for one in ticks])
    start_us, end_us = to_us(hour), to_us(hour + timedelta(hours=1))

    def stored() -> list[tuple[Any, ...]]:
        return [row for row in stack.lake_ticks() if row[0] in HISTORY_SYMBOLS]

    # Two days late, out of order, some twice: each tick stored once, the hour's bars redone by the stream.
    wait_until("the recorded hour in the lake", lambda: len(stored()) >= len(ticks))
    assert stored() == expected.ticks_between(start_us, end_us)
    want_bars = expected.bars_between(start_us, end_us)
    wait_until_equal(
        "the recorded hour's bars",
        lambda: [bar for bar in stack.lake_bars() if bar[0] in HISTORY_SYMBOLS],
        want_bars,
        explain=lambda: "\n".join(
            line for line in stack.logs("streaming").splitlines() if '"bars' in line or "late" in line
        )[-6000:],
    )

    # The hourly DAG, run through Airflow's API for that hour: compaction, then dbt for the interval.
    token = sign_in(stack.airflow_url, stack.airflow_password)
    run_id = f"e2e-{uuid.uuid4().hex[:8]}"
    trigger_hour(stack.airflow_url, token, hour, run_id)
    states = wait_for_run(stack.airflow_url, token, run_id, DAG_TIMEOUT_S)
    tasks = ("wait_until_closed", "compact_ticks", "compact_bars_1m", "run_dbt")
    assert states == dict.fromkeys(tasks, "success"), states
    assert stored() == expected.ticks_between(start_us, end_us)  # compaction rewrote files, not rows

    # What the dashboard shows, read by its own data layer in its container.
    shown = dashboard_probe(stack, hour)
    columns = ("symbol", "window_start", "open", "high", "low", "close", "volume", "vwap", "trade_count")
    bars = sorted(tuple(row[name] for name in columns) for row in shown["bars"])
    assert [bar[:2] for bar in bars] == [bar[:2] for bar in want_bars]
    for got, want in zip(bars, want_bars, strict=True):
        assert got[2:] == pytest.approx(want[2:]), got
    daily = {(row["symbol"], row["trade_date"]): row for row in shown["fct_ohlcv_daily"]}
    assert_matches(daily, expected_ohlcv_daily(ticks))
    hourly = {
        (row["symbol"], row["trade_date"], int(row["trade_hour"])): row
        for row in shown["fct_activity_hourly"]
    }
    assert_matches(hourly, expected_activity_hourly(ticks))


def test_losing_a_broker_under_load_loses_and_duplicates_nothing(running_stack: RunningStack) -> None:
    stack = running_stack
    stored = len(stack.lake_ticks())
    stack.compose("start", "producer")
    wait_until("new ticks in the lake", lambda: len(stack.lake_ticks()) > stored + 2_000)
    restarts = crash(stack, "kafka-2")
    time.sleep(20)  # the producer keeps publishing to the two brokers left (min.insync.replicas 2)
    restarted_by_docker(stack, "kafka-2", restarts)  # the crash happened, and no operator was needed
    assert_lake_exact(stack)


def test_losing_a_spark_worker_mid_batch_retries_the_batch_and_the_lake_stays_exact(
    running_stack: RunningStack,
) -> None:
    stack = running_stack
    stored = len(stack.lake_ticks())
    stack.compose("start", "producer")
    wait_until("new ticks in the lake", lambda: len(stack.lake_ticks()) > stored + 2_000)
    restarts = crash(stack, "spark-worker-1")
    # The fault happened: the driver lost that worker's executor and the tasks it was running.
    wait_until(
        "the driver to report the lost executor", lambda: "Lost executor" in stack.logs("streaming"), 180
    )
    restarted_by_docker(stack, "spark-worker-1", restarts)
    assert_lake_exact(stack)


def test_down_then_up_keeps_the_data_and_resumes_from_the_checkpoints(running_stack: RunningStack) -> None:
    stack = running_stack
    before = stack.lake_ticks()
    (query_id,) = set(query_ids(stack))
    stack.acknowledged_by_removed_producers = acknowledged_by_producer(stack)
    stack.stack.down()
    assert stack.stack.containers() == {}
    stack.stack.up(UP_TIMEOUT_S)
    stack.reopen_lake()
    assert set(before) <= set(stack.lake_ticks())  # the volumes kept the lake
    # The new driver resumed the query from its checkpoint (same query id) rather than starting a new one.
    wait_until("the query to start again", lambda: bool(query_ids(stack)), timeout_s=300)
    assert set(query_ids(stack)) == {query_id}
    stack.compose("start", "producer")
    wait_until("new ticks after the restart", lambda: len(stack.lake_ticks()) > len(before) + 2_000)
    assert_lake_exact(stack)
