"""`tickstream up` on a fresh install, from the packaged CLI: nothing listens beyond loopback, Airflow wants a
password, the generated secrets stay private and out of every log, and `tickstream down` stops everything.

The platform runs with its own TICKSTREAM_HOME and free ports (so the shared test services keep theirs), a
small producer rate and small heaps; the socket table is read from the OS (psutil) for every process the
platform started and their descendants.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from e2e.airflow_api import http, sign_in
from e2e.artifacts import package, source_dir
from ops.services.process import daemon_processes
from testkit.platform import LocalPlatform, local_platform

pytestmark = pytest.mark.integration

UP_TIMEOUT_S = 900


def platform_processes(home: Path) -> list[psutil.Process]:
    """Every process the platform started (the PID files under `home`) and their descendants."""
    return [process for tree in daemon_processes(home / "run").values() for process in tree]


def loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.0.0.1)."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def listening(processes: list[psutil.Process]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every TCP socket the processes listen on."""
    sockets = []
    for process in processes:
        try:
            for conn in process.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    sockets.append((process.name(), conn.laddr.ip, conn.laddr.port))
        except psutil.NoSuchProcess:
            continue
    return sockets


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    """The whole platform, up from a fresh TICKSTREAM_HOME; brought down at the end whatever happened."""
    up = local_platform(
        tmp_path_factory.mktemp("platform") / "home",
        package("src.python.ops", "cli.pex"),
        source_dir("src/dags"),
        source_dir("src/sql/dbt"),
        {
            "TICKSTREAM_KAFKA_HEAP": "512m",
            "TICKSTREAM_UP_PRODUCER_RATE": "100",
            "TICKSTREAM_STREAMING_DRIVER_MEMORY": "1g",
            "TICKSTREAM_START_TIMEOUT_S": "600",
        },
    )
    try:
        done = up.tickstream("up", timeout=UP_TIMEOUT_S)
        assert done.returncode == 0, f"up failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        up.up_output = done.stdout
        yield up
    finally:
        up.tickstream("down")


def test_nothing_listens_beyond_loopback(platform: LocalPlatform) -> None:
    sockets = listening(platform_processes(platform.home))
    ports = {port for _, _, port in sockets}
    # the scan sees every service and component that serves (else it would prove nothing)
    assert set(platform.ports.values()) <= ports, sockets
    exposed = [(name, ip, port) for name, ip, port in sockets if not loopback(ip)]
    assert exposed == []
    # the streaming job's Spark driver listens too (RPC, block manager): on loopback, as checked above
    streaming_pid = int((platform.home / "run" / "streaming.pid").read_text())
    streaming = psutil.Process(streaming_pid)
    assert listening([streaming, *streaming.children(recursive=True)])


def test_airflow_refuses_anonymous_callers_and_admits_the_generated_admin(platform: LocalPlatform) -> None:
    url = platform.airflow_url
    assert http("GET", f"{url}/api/v2/dags")[0] == 401
    assert http("POST", f"{url}/auth/token", {"username": "admin", "password": "admin"})[0] == 401
    password = platform.secrets()["TICKSTREAM_AIRFLOW_ADMIN_PASSWORD"]
    status, body = http("GET", f"{url}/api/v2/dags", token=sign_in(url, password))
    assert status == 200, body
    assert "tickstream_compaction" in {dag["dag_id"] for dag in json.loads(body)["dags"]}


def test_up_says_where_the_password_is_and_shows_it_once(platform: LocalPlatform) -> None:
    secrets_file = platform.home / "secrets.env"
    password = platform.secrets()["TICKSTREAM_AIRFLOW_ADMIN_PASSWORD"]
    assert f"the password is TICKSTREAM_AIRFLOW_ADMIN_PASSWORD in {secrets_file}" in platform.up_output
    assert platform.up_output.count(password) == 1
    again = platform.tickstream("up")  # everything runs: a second `up` is a no-op that shows no secret
    assert again.returncode == 0, again.stderr
    assert str(secrets_file) in again.stdout and password not in again.stdout


def test_generated_secrets_are_private_and_never_logged(platform: LocalPlatform) -> None:
    secrets = platform.secrets()
    assert len(secrets) >= 10
    for private in (platform.home / "secrets.env", platform.home / "airflow" / "passwords.json"):
        assert private.stat().st_mode & 0o077 == 0, private
    logged = [path for path in platform.home.rglob("*.log") if path.is_file()]
    assert any(path.name == "airflow.log" for path in logged)
    for path in logged:
        text = path.read_text(errors="replace")
        leaked = [name for name, value in secrets.items() if value in text]
        assert leaked == [], f"{path} contains {leaked}"


def test_down_stops_every_process(platform: LocalPlatform) -> None:
    processes = platform_processes(platform.home)
    assert len(processes) >= 6
    done = platform.tickstream("down")
    assert done.returncode == 0, done.stderr
    gone, alive = psutil.wait_procs(processes, timeout=60)
    assert alive == [], [p.info if hasattr(p, "info") else p.pid for p in alive]
