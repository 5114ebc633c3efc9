"""`tickstream up` on a fresh install, from the packaged CLI: nothing listens beyond loopback, Airflow wants a
password, the generated secrets stay private and out of every log, and `tickstream down` stops everything.

The platform runs with its own TICKSTREAM_HOME and free ports (so the shared test services keep theirs), a
small producer rate and small heaps; the socket table is read from the OS (psutil) for every process the
platform started and their descendants.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from e2e.airflow_api import http, sign_in
from e2e.artifacts import package, source_dir
from ops.credentials import read_secrets
from testkit.services import free_port

pytestmark = pytest.mark.integration

UP_TIMEOUT_S = 900


@dataclass(frozen=True)
class Platform:
    """A platform brought up by the CLI: where it lives, its environment and what `up` printed."""

    home: Path
    env: dict[str, str]
    ports: dict[str, int]
    up_output: str
    cli: Path

    def tickstream(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the packaged CLI with the platform's environment."""
        return subprocess.run(
            [str(self.cli), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['airflow']}"

    def secrets(self) -> dict[str, str]:
        return read_secrets(self.home / "secrets.env")


def platform_processes(home: Path) -> list[psutil.Process]:
    """Every process the platform started (the PID files under `home`) and their descendants."""
    found = []
    for pid_file in sorted((home / "run").glob("*.pid")):
        try:
            leader = psutil.Process(int(pid_file.read_text().strip()))
            found += [leader, *leader.children(recursive=True)]
        except (ValueError, psutil.NoSuchProcess):
            continue
    return found


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
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The whole platform, up from a fresh TICKSTREAM_HOME; brought down at the end whatever happened."""
    home = tmp_path_factory.mktemp("platform") / "home"
    cli = package("src.python.ops", "cli.pex")
    grpc = (0, 10000)  # SeaweedFS serves gRPC on port + 10000
    ports = {
        "kafka": free_port(),
        "controller": free_port(),
        "s3": free_port(grpc),
        "master": free_port(grpc),
        "volume": free_port(grpc),
        "filer": free_port(grpc),
        "airflow": free_port(),
        "dashboard": free_port(),
    }
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("TICKSTREAM_", "AIRFLOW"))}
    env = {
        **inherited,
        "TICKSTREAM_CACHE_DIR": os.environ.get(
            "TICKSTREAM_CACHE_DIR", str(Path.home() / ".cache/tickstream")
        ),
        "TICKSTREAM_HOME": str(home),
        "TICKSTREAM_PEX_DIR": str(cli.parent.parent),
        "TICKSTREAM_KAFKA_PORT": str(ports["kafka"]),
        "TICKSTREAM_KAFKA_CONTROLLER_PORT": str(ports["controller"]),
        "TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports['kafka']}",
        "TICKSTREAM_KAFKA_HEAP": "512m",
        "TICKSTREAM_S3_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3']}",
        "TICKSTREAM_SEAWEEDFS_MASTER_PORT": str(ports["master"]),
        "TICKSTREAM_SEAWEEDFS_VOLUME_PORT": str(ports["volume"]),
        "TICKSTREAM_SEAWEEDFS_FILER_PORT": str(ports["filer"]),
        "TICKSTREAM_AIRFLOW_PORT": str(ports["airflow"]),
        "TICKSTREAM_AIRFLOW_DAGS_FOLDER": str(source_dir("src/dags")),
        "TICKSTREAM_AIRFLOW_DBT_PROJECT_DIR": str(source_dir("src/sql/dbt")),
        "TICKSTREAM_DASHBOARD_PORT": str(ports["dashboard"]),
        "TICKSTREAM_DASHBOARD_URL": f"http://127.0.0.1:{ports['dashboard']}",
        "TICKSTREAM_UP_PRODUCER_RATE": "100",
        "TICKSTREAM_STREAMING_DRIVER_MEMORY": "1g",
        "TICKSTREAM_START_TIMEOUT_S": "600",
    }
    up = Platform(home, env, ports, "", cli)
    try:
        done = up.tickstream("up", timeout=UP_TIMEOUT_S)
        assert done.returncode == 0, f"up failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        yield Platform(home, env, ports, done.stdout, cli)
    finally:
        up.tickstream("down")


def test_nothing_listens_beyond_loopback(platform: Platform) -> None:
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


def test_airflow_refuses_anonymous_callers_and_admits_the_generated_admin(platform: Platform) -> None:
    url = platform.airflow_url
    assert http("GET", f"{url}/api/v2/dags")[0] == 401
    assert http("POST", f"{url}/auth/token", {"username": "admin", "password": "admin"})[0] == 401
    password = platform.secrets()["TICKSTREAM_AIRFLOW_ADMIN_PASSWORD"]
    status, body = http("GET", f"{url}/api/v2/dags", token=sign_in(url, password))
    assert status == 200, body
    assert "tickstream_compaction" in {dag["dag_id"] for dag in json.loads(body)["dags"]}


def test_up_says_where_the_password_is_and_shows_it_once(platform: Platform) -> None:
    secrets_file = platform.home / "secrets.env"
    password = platform.secrets()["TICKSTREAM_AIRFLOW_ADMIN_PASSWORD"]
    assert f"the password is TICKSTREAM_AIRFLOW_ADMIN_PASSWORD in {secrets_file}" in platform.up_output
    assert platform.up_output.count(password) == 1
    again = platform.tickstream("up")  # everything runs: a second `up` is a no-op that shows no secret
    assert again.returncode == 0, again.stderr
    assert str(secrets_file) in again.stdout and password not in again.stdout


def test_generated_secrets_are_private_and_never_logged(platform: Platform) -> None:
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


def test_down_stops_every_process(platform: Platform) -> None:
    processes = platform_processes(platform.home)
    assert len(processes) >= 6
    done = platform.tickstream("down")
    assert done.returncode == 0, done.stderr
    gone, alive = psutil.wait_procs(processes, timeout=60)
    assert alive == [], [p.info if hasattr(p, "info") else p.pid for p in alive]
