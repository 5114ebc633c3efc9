"""End to end in headless Chromium: the app as a subprocess against the real S3 server, updating by itself.

Builds an Iceberg lake of its own (a private catalog, files under a fresh prefix of the bucket), starts
`python -m dashboard`, checks the ticker chart renders, then commits a new bar and new ticks and waits for
them to show up without reloading the page. Leaves a screenshot in the test's tmp dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from dashboard.testing import DashboardLake, tick
from ops.debian import PackagesUnavailable
from ops.services.seaweedfs import SeaweedFSService
from testkit.browser import CHROMIUM_ARGS, ensure_chromium
from testkit.lake import TestLake, private_catalog_settings
from testkit.services import free_port
from tickstream.contracts import Tick
from tickstream.lake import LakeLocation

pytestmark = pytest.mark.integration

SYMBOLS = ("AAA", "BBB", "CCC")
LIVE_PRICE = 777.77


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed by the project's own installer if missing (fails, never skips)."""
    try:
        return ensure_chromium()
    except PackagesUnavailable as exc:
        pytest.fail(f"the browser test needs Chromium: {exc}")


def lake_on_s3(lake: TestLake) -> DashboardLake:
    """The test lake with its plain objects (status) next to its warehouse prefix in the bucket."""
    return DashboardLake(
        lake, LakeLocation(root=lake.settings.warehouse.rstrip("/") + "-objects", s3=lake.s3)
    )


@pytest.fixture
def dashboard_lake(s3_lake: TestLake) -> Iterator[DashboardLake]:
    """An Iceberg lake of this test on the shared S3 server; its files are deleted afterwards."""
    lake = lake_on_s3(s3_lake)
    yield lake
    for root in (lake.lake.settings.warehouse, lake.objects.root):
        filesystem, base = LakeLocation(root=root, s3=lake.lake.s3).filesystem()
        filesystem.delete_dir_contents(base, missing_dir_ok=True)


def minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def history(now: datetime) -> list[Tick]:
    """Ticks of the 30 minutes up to 3 minutes ago: two per symbol and minute."""
    rows = []
    start = minute(now) - timedelta(minutes=30)
    for m in range(27):
        for i, symbol in enumerate(SYMBOLS):
            for second, step in ((5, 0.0), (35, 0.5)):
                ts = start + timedelta(minutes=m, seconds=second)
                price = 100.0 * (i + 1) + m * 0.25 + step
                rows.append(tick(symbol, 2 * m + (step > 0) + 1, int(ts.timestamp() * 1e6), price, 100))
    return rows


class DashboardServer:
    """The dashboard as a subprocess (`python -m dashboard`) on a fixed port; can be stopped and restarted."""

    def __init__(self, lake: DashboardLake, logs: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.logs = logs
        self.process: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "TICKSTREAM_DASHBOARD_PORT": str(self.port),
            "TICKSTREAM_DASHBOARD_REFRESH_SECONDS": "2",
            "TICKSTREAM_DASHBOARD_HEALTH_REFRESH_SECONDS": "2",
            "TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "TICKSTREAM_DASHBOARD_KAFKA_TIMEOUT_SECONDS": "1",
            **lake.env(),
        }

    def start(self) -> None:
        """Start the server and wait until it answers its health URL."""
        log = (self.logs / "dashboard.log").open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dashboard"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the dashboard did not start: {(self.logs / 'dashboard.log').read_text()[-3000:]}"
                )
            time.sleep(0.3)

    def stop(self) -> None:
        """Terminate the server (kill after 15 s)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def dashboard_url(dashboard_lake: DashboardLake, tmp_path: Path) -> Iterator[str]:
    """The dashboard served by a subprocess on a free port."""
    server = DashboardServer(dashboard_lake, tmp_path)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def candle_count(page: Page) -> int:
    """Candles in the ticker chart (Plotly keeps the figure's data on its div)."""
    return int(page.evaluate("() => document.querySelector('.js-plotly-plot').data[0].x.length"))


def build(lake: DashboardLake, now: datetime) -> None:
    """History: ticks in two commits, their bars, and a status object without entries."""
    ticks = history(now)
    lake.append_ticks(ticks[: len(ticks) // 2], 0)
    lake.append_ticks(ticks[len(ticks) // 2 :], 1)
    lake.append_bars(ticks)
    lake.write_status({"updated_at": now.isoformat(), "queries": {}})


def test_live_chart_updates_without_reload(
    chromium: Path, dashboard_lake: DashboardLake, dashboard_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    build(dashboard_lake, now)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(dashboard_url)
            page.wait_for_selector(".js-plotly-plot", timeout=60_000)
            page.wait_for_function("() => document.querySelector('.js-plotly-plot').data", timeout=30_000)
            before = candle_count(page)
            assert before == 27
            assert page.get_by_text("Latest price").is_visible()
            navigations: list[str] = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))

            # A bar of a minute that just completed, and a tick of the current minute (the live edge).
            newest = minute(now) - timedelta(minutes=3)
            bar_ticks = [
                tick("AAA", 1000, int((newest + timedelta(seconds=10)).timestamp() * 1e6), 150.0, 10)
            ]
            dashboard_lake.append_ticks(bar_ticks, 2)
            dashboard_lake.append_bars(bar_ticks)
            live_ts = int(datetime.now(UTC).timestamp() * 1e6)
            dashboard_lake.append_ticks([tick("AAA", 1001, live_ts, LIVE_PRICE, 10)], 3)

            page.get_by_text(f"{LIVE_PRICE:,.2f} USD").wait_for(timeout=30_000)
            page.wait_for_function(
                f"() => document.querySelector('.js-plotly-plot').data[0].x.length >= {before + 2}",
                timeout=30_000,
            )
            assert navigations == [], "the page reloaded"
            page.wait_for_timeout(500)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            assert candle_count(page) >= before + 2
        finally:
            browser.close()


def test_health_page_shows_an_s3_outage_and_the_dashboard_survives_a_restart(
    chromium: Path, private_s3: SeaweedFSService, tmp_path: Path
) -> None:
    """S3 down: the health page says so while it lasts, then recovers by itself; a restarted server serves."""
    lake = lake_on_s3(TestLake(private_catalog_settings(tmp_path / "lake", private_s3.s3), private_s3.s3))
    build(lake, datetime.now(UTC))
    server = DashboardServer(lake, tmp_path)
    server.start()
    unavailable = "Data freshness: source unavailable"  # (Kafka is unreachable throughout: ignored)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(chromium), args=list(CHROMIUM_ARGS), headless=True
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1300})
                page.goto(server.url)
                page.get_by_text("Pipeline health", exact=True).first.click()
                page.get_by_text("Data freshness:").first.wait_for(timeout=60_000)
                assert unavailable not in page.inner_text("body")

                private_s3.down()  # the lake is unreachable: the page must say so, not go blank or stale
                page.get_by_text(unavailable).first.wait_for(timeout=60_000)
                page.screenshot(path=str(tmp_path / "health-s3-down.png"), full_page=True)

                private_s3.up()  # and recover without a reload
                page.wait_for_function(
                    f"() => !document.body.innerText.includes('{unavailable}')", timeout=90_000
                )
                page.get_by_text("Data freshness:").first.wait_for(timeout=30_000)

                server.stop()  # a dashboard restart: a new process serves the same page again
                server.start()
                page.goto(server.url)
                page.wait_for_function(
                    "() => document.querySelector('.js-plotly-plot')?.data?.[0]?.x?.length >= 27",
                    timeout=60_000,
                )
            finally:
                browser.close()
    finally:
        server.stop()
