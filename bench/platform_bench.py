"""Whole-platform benchmark: freshness to the lake, the dashboard's data and the screen, and the CPU each
process costs, with everything running.

`tickstream up` (the packaged CLI, `dist/src.python.ops/cli.pex`, with a TICKSTREAM_HOME of its own and free
ports; bench/run_all.py packages it) brings up Kafka, S3, the catalog, the streaming job, the producer at
`--rate` ticks/s, Airflow and the dashboard, exactly as a user gets them. Then:

1. **CPU at the producer's rate.** After `--settle` seconds, the CPU time of each component (the process in
   its PID file under TICKSTREAM_HOME/run and every descendant, from /proc through psutil) over
   `--cpu-seconds`: cores used, and CPU-seconds per million ticks (the topic's end offsets over the same
   window). Target: the whole platform <= 0.5 core at 2k ticks/s.
2. **Freshness at the producer's rate plus `--probe-rate`** (10k ticks/s in all by default) for `--seconds`:
   an independent client publishes stamped probe ticks (ts_us = send time) of PROBE_SYMBOLS, and each probe
   tick's latency is measured to where it is first seen:
   - `kafka` (the baseline, same run): a plain consumer receives it;
   - `lake`: the catalog is polled for the ticks table's snapshot and DuckDB reads the new probe rows
     (committed and readable by any engine); target p95 <= 3 s;
   - `dashboard_data`: the dashboard's own data layer (`dashboard.data.Sources`, its default settings,
     caches included) returns a live bar of the first probe symbol whose close is that tick's price (every
     probe tick of that symbol has its own price, so the price names the tick);
   - `screen`: the "Latest price" the dashboard draws in headless Chromium shows it; target p95 <= 5 s.
   The CPU of each component is measured over this phase as well.
3. **Operations**: the seconds `up` took (a warm install: binaries and PEXes cached, fresh data) and the
   seconds `tickstream down` takes. Targets: up <= 60 s, down <= 15 s.

Writes bench/results/platform.json. Needs the PEXes (`./pants package src/python/ops:cli
src/python/producer:bin src/python/streaming:bin src/python/compaction:bin src/python/analytics:bin
src/python/dashboard:bin src/dags:airflow`), Chromium (installed with apt if missing) and an idle machine;
the platform's ports are free ones, so a running `tickstream up` is left alone.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import psutil
import typer
from confluent_kafka import Consumer, Producer, TopicPartition
from figures import percentile, write_results

from ops.services.process import daemon_processes
from testkit.browser import CHROMIUM_ARGS, ensure_chromium
from testkit.platform import LocalPlatform, local_platform
from tickstream.catalog import metadata_location, open_catalog
from tickstream.commands import command_app
from tickstream.contracts import decode_tick, encode_tick_columns, kafka_key, now_us
from tickstream.duckdb_lake import connect, iceberg_scan
from tickstream.lake import TICKS
from tickstream.settings import CatalogSettings, S3Settings
from tickstream.topology import TICKS_TOPIC

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = ROOT / "bench" / "results" / "platform.json"
CLI = ROOT / "dist" / "src.python.ops" / "cli.pex"
PROBE_SYMBOLS = tuple(f"A{i}PROBE" for i in range(8))
"""Probe tickers: they sort before every simulated one, so the dashboard shows the first by default."""
SCREEN_SYMBOL = PROBE_SYMBOLS[0]
PROBE_BASE_PRICE = 100.0
POLL_S = 0.1
TARGETS = {
    "lake_p95_ms": 3_000,
    "screen_p95_ms": 5_000,
    "cores_at_2k": 0.5,
    "up_s": 60,
    "down_s": 15,
    "backlog_ticks_per_s": 100_000,
}


def probe_price(count: int) -> float:
    """The price of the `count`-th probe tick of a symbol (1, 2, ...): a cent more each time."""
    return round(PROBE_BASE_PRICE + count / 100, 2)


def probe_count(price: float) -> int:
    """The inverse of `probe_price`."""
    return round((price - PROBE_BASE_PRICE) * 100)


def timed(platform_: LocalPlatform, command: str, timeout: float) -> float:
    """Run `tickstream COMMAND` on the platform; its duration in seconds (raises if it failed)."""
    started = time.monotonic()
    done = platform_.tickstream(command, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"tickstream {command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.monotonic() - started


@contextmanager
def running(platform_: LocalPlatform, timings: dict[str, float]) -> Iterator[LocalPlatform]:
    """The platform up for the block (`up` timed), then down (timed) whatever happened."""
    try:
        timings["up_s"] = round(timed(platform_, "up", 900), 1)
        yield platform_
    finally:
        timings["down_s"] = round(timed(platform_, "down", 300), 1)


def topic_end(bootstrap: str) -> int:
    """The sum of the ticks topic's end offsets: every record ever published to it."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "platform-bench-offsets"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(TICKS_TOPIC.name, p), timeout=10)[1]
            for p in range(TICKS_TOPIC.partitions)
        )
    finally:
        consumer.close()


def cpu_seconds(process: psutil.Process) -> float | None:
    """User + system CPU seconds of a process so far; None if it has gone."""
    try:
        used = process.cpu_times()
    except psutil.Error:
        return None
    return used.user + used.system


def cpu_times(run_dir: Path) -> dict[int, tuple[str, float]]:
    """pid -> (component, CPU seconds so far) of every process of the platform."""
    times: dict[int, tuple[str, float]] = {}
    for component, processes in daemon_processes(run_dir).items():
        for process in processes:
            used = cpu_seconds(process)
            if used is not None:
                times[process.pid] = (component, used)
    return times


def benchmark_cpu_seconds() -> float:
    """CPU seconds so far of this benchmark and its children (the probe publisher, the observers, Chromium):
    on a 2-core machine they compete with the platform they measure."""
    this = psutil.Process()
    return sum(cpu_seconds(process) or 0.0 for process in (this, *this.children(recursive=True)))


def measure_cpu(
    platform_: LocalPlatform, seconds: float, during: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Cores each component used over `seconds` (or while `during` runs) and its CPU-seconds per million
    ticks published in that time; processes that started meanwhile count from zero."""
    run_dir = platform_.home / "run"
    before, ticks_before, started = cpu_times(run_dir), topic_end(platform_.bootstrap), time.monotonic()
    benchmark_before = benchmark_cpu_seconds()
    if during is None:
        time.sleep(seconds)
    else:
        during()
    after, ticks = cpu_times(run_dir), topic_end(platform_.bootstrap) - ticks_before
    elapsed = time.monotonic() - started
    benchmark = benchmark_cpu_seconds() - benchmark_before
    used: dict[str, float] = {}
    for pid, (component, total) in after.items():
        used[component] = used.get(component, 0.0) + total - before.get(pid, (component, 0.0))[1]
    per_component = {
        name: {
            "cores": round(cpu / elapsed, 3),
            "cpu_s_per_million_ticks": round(cpu / ticks * 1e6, 1) if ticks else None,
        }
        for name, cpu in sorted(used.items())
    }
    total = sum(used.values())
    return {
        "seconds": round(elapsed, 1),
        "ticks": ticks,
        "ticks_per_s": round(ticks / elapsed, 1),
        "total_cores": round(total / elapsed, 3),
        "total_cpu_s_per_million_ticks": round(total / ticks * 1e6, 1) if ticks else None,
        "components": per_component,
        "benchmark_cores": round(benchmark / elapsed, 3),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass
class Probes:
    """The stamped probe ticks sent so far, and the latencies each observer saw."""

    sent_us: dict[tuple[str, int], int] = field(default_factory=dict)
    seen: dict[str, dict[tuple[str, int], float]] = field(default_factory=dict)
    highest: dict[tuple[str, str], int] = field(default_factory=dict)
    """(observer, symbol) -> the highest probe count `saw_up_to` was given."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, observer: str, keys: list[tuple[str, int]], at_us: int) -> None:
        """`observer` saw these (symbol, count) probes at `at_us` (only the first sighting counts)."""
        with self.lock:
            mine = self.seen.setdefault(observer, {})
            for key in keys:
                if key not in mine and key in self.sent_us:
                    mine[key] = (at_us - self.sent_us[key]) / 1000

    def saw_up_to(self, observer: str, symbol: str, count: int, at_us: int) -> None:
        """`observer` saw probe `count` of `symbol`, so every earlier one too (one partition, in order)."""
        with self.lock:
            first = 1 + self.highest.get((observer, symbol), 0)
            self.highest[(observer, symbol)] = max(count, first - 1)
        self.saw(observer, [(symbol, c) for c in range(first, count + 1)], at_us)

    def summary(self, observer: str, warmup_us: int) -> dict[str, Any]:
        """p50/p95/p99/max of the observer's latencies of probes sent after `warmup_us`."""
        with self.lock:
            values = sorted(
                ms for key, ms in self.seen.get(observer, {}).items() if self.sent_us[key] >= warmup_us
            )
            sent = sum(1 for ts in self.sent_us.values() if ts >= warmup_us)
        return {
            "probes_sent": sent,
            "probes_seen": len(values),
            "p50_ms": percentile(values, 0.50),
            "p95_ms": percentile(values, 0.95),
            "p99_ms": percentile(values, 0.99),
            "max_ms": values[-1] if values else None,
        }


def publish_probes(bootstrap: str, probes: Probes, rate: float, seconds: float) -> None:
    """Publish stamped probe ticks at `rate`/s for `seconds`, round-robin over PROBE_SYMBOLS."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    counts = dict.fromkeys(PROBE_SYMBOLS, 0)
    started, sent = time.monotonic(), 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) - sent
        if due > 0:
            ts = now_us()
            symbols = [PROBE_SYMBOLS[(sent + i) % len(PROBE_SYMBOLS)] for i in range(due)]
            numbers = []
            for symbol in symbols:
                counts[symbol] += 1
                numbers.append(counts[symbol])
            prices = [probe_price(n) for n in numbers]
            values = encode_tick_columns(
                symbols,
                numbers,
                [ts] * due,
                prices,
                [10] * due,
                [p - 0.01 for p in prices],
                [p + 0.01 for p in prices],
            )
            with probes.lock:
                probes.sent_us.update({(s, n): ts for s, n in zip(symbols, numbers, strict=True)})
            for symbol, value in zip(symbols, values, strict=True):
                producer.produce(TICKS_TOPIC.name, key=kafka_key(symbol), value=value)
            producer.poll(0)
            sent += due
        time.sleep(0.002)
    producer.flush(30)


def watch_kafka(bootstrap: str, probes: Probes, stop: threading.Event) -> None:
    """The baseline observer: a plain consumer from the topic's end."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "platform-bench", "enable.auto.commit": False}
    )
    ends = [
        TopicPartition(
            TICKS_TOPIC.name, p, consumer.get_watermark_offsets(TopicPartition(TICKS_TOPIC.name, p))[1]
        )
        for p in range(TICKS_TOPIC.partitions)
    ]
    consumer.assign(ends)
    try:
        while not stop.is_set():
            messages = consumer.consume(1000, timeout=0.1)
            at = now_us()
            keys = []
            for message in messages:
                tick = decode_tick(message.value() or b"")
                if isinstance(tick, dict) and tick["symbol"] in PROBE_SYMBOLS:
                    keys.append((tick["symbol"], tick["seq"]))
            probes.saw("kafka", keys, at)
    finally:
        consumer.close()


def watch_lake(
    s3: S3Settings, catalog: CatalogSettings, probes: Probes, since_us: int, stop: threading.Event
) -> None:
    """Poll the catalog; read each new snapshot's probe rows with DuckDB (the last 10 s of event time)."""
    handle = open_catalog(catalog, s3)
    reader = connect(s3)
    seen_location = None
    newest_us = since_us
    symbols = ", ".join(f"'{s}'" for s in PROBE_SYMBOLS)
    while not stop.is_set():
        location = metadata_location(handle, catalog, TICKS)
        if location is not None and location != seen_location:
            seen_location, at = location, now_us()
            rows = reader.execute(
                f"SELECT symbol, seq, ts_us FROM {iceberg_scan(location)} "
                f"WHERE event_time >= to_timestamp(? / 1e6) AND symbol IN ({symbols})",
                [newest_us - 10_000_000],
            ).fetchall()
            probes.saw("lake", [(symbol, seq) for symbol, seq, _ in rows], at)
            newest_us = max([newest_us, *(ts for _, _, ts in rows)])
        time.sleep(POLL_S)


def watch_dashboard_data(env: dict[str, str], probes: Probes, stop: threading.Event) -> None:
    """The dashboard's data layer with the dashboard's settings: the live bar of SCREEN_SYMBOL."""
    os.environ.update({k: v for k, v in env.items() if k.startswith("TICKSTREAM_")})
    logging.getLogger("streamlit").setLevel(logging.ERROR)  # "no runtime" warnings on every read
    from dashboard.bars import TimeRange
    from dashboard.data import Sources
    from dashboard.errors import NoData, SourceUnavailable
    from dashboard.settings import DashboardSettings
    from tickstream.settings import KafkaSettings

    sources = Sources(DashboardSettings(), S3Settings(), CatalogSettings(), KafkaSettings())
    while not stop.is_set():
        try:
            bars = sources.bars(TimeRange.last(timedelta(minutes=5), datetime.now(UTC)))
            at = now_us()
            mine = bars.filter(bars["symbol"] == SCREEN_SYMBOL).sort("window_start")
            if mine.height:
                probes.saw_up_to("dashboard_data", SCREEN_SYMBOL, probe_count(mine["close"][-1]), at)
        except (NoData, SourceUnavailable) as exc:  # no probe in the lake yet, or S3 busy: poll again
            print(f"dashboard data: {exc}")
        time.sleep(POLL_S)


TICKER_SELECTOR = '[data-testid="stSelectbox"]'
TICKER_JS = """(selector) => {
  const box = document.querySelector(selector);
  if (!box) return null;
  const inputs = [...box.querySelectorAll('input')];
  return [box.innerText, ...inputs.map(i => `${i.value} ${i.getAttribute('aria-label') || ''}`)].join(' ');
}"""
"""The ticker the page shows: the selectbox's text, or its input's value and label (filterable select)."""
LATEST_PRICE_JS = """() => {
  for (const metric of document.querySelectorAll('[data-testid="stMetric"]')) {
    if (metric.innerText.includes('Latest price')) {
      return metric.querySelector('[data-testid="stMetricValue"]').innerText;
    }
  }
  return null;
}"""


def watch_screen(url: str, probes: Probes, stop: threading.Event) -> None:
    """The "Latest price" the dashboard draws in headless Chromium (its default ticker: SCREEN_SYMBOL)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    chromium = ensure_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            while not stop.is_set():
                try:
                    page.wait_for_selector(TICKER_SELECTOR, timeout=60_000)
                except PlaywrightTimeout:
                    page.reload()
                    continue
                if SCREEN_SYMBOL not in (page.evaluate(TICKER_JS, TICKER_SELECTOR) or ""):
                    # a new session picks the first ticker: the probe's, once its ticks are in the lake
                    page.wait_for_timeout(5000)
                    page.reload()
                    continue
                shown = page.evaluate(LATEST_PRICE_JS)
                at = now_us()
                if shown:
                    price = float(shown.split()[0].replace(",", ""))
                    probes.saw_up_to("screen", SCREEN_SYMBOL, probe_count(price), at)
                page.wait_for_timeout(POLL_S * 1000)
        finally:
            browser.close()


def measure_freshness(
    platform_: LocalPlatform, probe_rate: float, seconds: float, warmup_s: float
) -> dict[str, Any]:
    """Publish probes for `seconds` while every observer watches; their latency summaries and the CPU."""
    probes, stop, started_us = Probes(), threading.Event(), now_us()
    observers = [
        threading.Thread(target=watch_kafka, args=(platform_.bootstrap, probes, stop)),
        threading.Thread(
            target=watch_lake, args=(platform_.s3(), platform_.catalog(), probes, started_us, stop)
        ),
        threading.Thread(target=watch_dashboard_data, args=(platform_.env, probes, stop)),
        threading.Thread(target=watch_screen, args=(platform_.dashboard_url, probes, stop)),
    ]
    for observer in observers:
        observer.start()
    time.sleep(15)  # the browser and the readers start before the first probe

    def publish_then_drain() -> None:
        publish_probes(platform_.bootstrap, probes, probe_rate, seconds)
        time.sleep(15)  # the last probes reach every observer

    try:
        cpu = measure_cpu(platform_, seconds, publish_then_drain)
    finally:
        stop.set()
        for observer in observers:
            observer.join(60)
    warmup_us = started_us + int((15 + warmup_s) * 1e6)
    return {
        "probe_rate_ticks_per_s": probe_rate,
        "seconds": seconds,
        "warmup_s": warmup_s,
        "latency": {
            name: probes.summary(name, warmup_us) for name in ("kafka", "lake", "dashboard_data", "screen")
        },
        "cpu": cpu,
    }


DESCRIPTION = __doc__.splitlines()[0]
app = command_app(DESCRIPTION)


@app.command(help=DESCRIPTION)
def benchmark(
    rate: Annotated[
        float, typer.Option(help="the platform producer's ticks/s (tickstream up's default)")
    ] = 2_000.0,
    probe_rate: Annotated[float, typer.Option(help="probe ticks/s on top of the producer's")] = 8_000.0,
    seconds: Annotated[float, typer.Option(help="duration of the freshness phase")] = 60.0,
    warmup: Annotated[float, typer.Option(help="seconds of the freshness phase not measured")] = 10.0,
    settle: Annotated[
        float,
        typer.Option(
            help="seconds after up before measuring (the streaming JVM's JIT compiles for its first minutes)"
        ),
    ] = 180.0,
    cpu_seconds: Annotated[
        float, typer.Option(help="duration of the CPU phase at the producer's rate")
    ] = 60.0,
    out: Annotated[Path, typer.Option(help="results file")] = RESULTS_PATH,
) -> None:
    """Bring the platform up, measure, bring it down, write the results file."""
    if not CLI.is_file():
        raise typer.BadParameter(
            f"{CLI} missing: `./pants package src/python/ops:cli` (and the components) first"
        )
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    home = Path(tempfile.mkdtemp(prefix="platform-bench-")) / "home"
    timings: dict[str, float] = {}
    try:
        settings = {"TICKSTREAM_UP_PRODUCER_RATE": str(rate)}
        new = local_platform(home, CLI, ROOT / "src" / "dags", ROOT / "src" / "sql" / "dbt", settings)
        with running(new, timings) as up:
            time.sleep(settle)
            cpu_at_rate = measure_cpu(up, cpu_seconds)
            freshness = measure_freshness(up, probe_rate, seconds, warmup)
    finally:
        shutil.rmtree(home.parent, ignore_errors=True)
    results = {
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {"producer_rate": rate, "probe_rate": probe_rate, "settle_s": settle},
        "load_average_at_start": load_at_start,
        "operations": timings,
        "cpu_at_producer_rate": cpu_at_rate,
        "freshness": freshness,
        "targets": TARGETS,
    }
    write_results(out, results)


def main() -> None:
    """Entry point (`./pants run bench/platform_bench.py -- ...`)."""
    app()


if __name__ == "__main__":
    main()
