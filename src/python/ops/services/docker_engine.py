"""The Docker engine that builds and runs the container images: Debian's `docker.io` and `docker-compose` (the
v1 CLI), installed with apt when missing, and `dockerd` started by the project when no engine answers.

An engine that is already running (someone else's) is used and never stopped. One the project started is a
Daemon like Kafka (PID file <home>/run/docker.pid, log <home>/logs/docker.log) and `down` stops it, then
removes what dockerd leaves behind when it stops: its iptables chains and rules, the `docker0` bridge and
compose's `br-*` bridges. Images, volumes and the build cache stay in /var/lib/docker.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ops.debian import ensure_packages
from ops.services.process import Daemon, ServiceError
from tickstream.logs import get_logger
from tickstream.settings import PathsSettings

PACKAGES = ("docker.io", "docker-compose", "debootstrap")
"""Debian packages: the engine (20.10), compose v1 (1.29) and debootstrap (the base image)."""
DOCKERD = Path("/usr/sbin/dockerd")
COMPOSE = Path("/usr/bin/docker-compose")
DEBOOTSTRAP = Path("/usr/sbin/debootstrap")
MARKER = "tickstream-dockerd"
START_TIMEOUT_S = 60.0

log = get_logger("services.docker")


def docker_cli() -> str:
    """The docker client on PATH (the engine's own, or a newer client: both speak the engine's API)."""
    client = shutil.which("docker")
    if client is None:
        raise ServiceError("no `docker` client on PATH; `tickstream containers up` installs docker.io")
    return client


class DockerEngine:
    """Install (apt), start, health-check and stop the local Docker engine."""

    name = "docker"

    def __init__(self, paths: PathsSettings) -> None:
        """Keep the PID file and log under `paths`."""
        self.daemon = Daemon(
            name=self.name,
            pid_file=paths.run_dir / "docker.pid",
            log_file=paths.logs_dir / "docker.log",
            cmdline_marker=MARKER,
        )

    @property
    def endpoint(self) -> str:
        """Where clients reach the engine."""
        return "unix:///var/run/docker.sock"

    def healthy(self) -> bool:
        """True if an engine answers `docker info`."""
        client = shutil.which("docker")
        if client is None:
            return False
        try:
            result = subprocess.run(
                [client, "info", "--format", "{{.ServerVersion}}"],
                capture_output=True,
                timeout=15,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def install(self) -> None:
        """Install the engine, compose and debootstrap from Debian's packages if any is missing."""
        if not all(path.exists() for path in (DOCKERD, COMPOSE, DEBOOTSTRAP)):
            log.info("installing", packages=list(PACKAGES))
        ensure_packages(PACKAGES, (DOCKERD, COMPOSE, DEBOOTSTRAP))

    def up(self) -> bool:
        """Install if needed and start dockerd unless an engine answers; True if this call started it."""
        self.install()
        if self.daemon.pid() is None and self.healthy():
            return False  # an engine the project did not start: use it, never stop it
        return self.daemon.ensure_running(self._launch, self.healthy, START_TIMEOUT_S)

    def _launch(self) -> None:
        self.daemon.start([str(DOCKERD)])

    def provision(self) -> None:
        """Nothing to provision: images are built by `./pants package` (docs/deployment.md)."""

    def down(self) -> bool:
        """Stop dockerd if the project started it and clean up its network leftovers; True if stopped."""
        stopped = self.daemon.stop(timeout=60.0)
        if stopped:
            remove_network_leftovers()
        return stopped


def remove_network_leftovers() -> None:
    """Remove dockerd's iptables chains and rules and its bridges (left behind when dockerd stops)."""
    for table in ("filter", "nat"):
        saved = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, check=False)
        if saved.returncode != 0:
            continue
        kept = [line for line in saved.stdout.splitlines() if not _docker_rule(line)]
        subprocess.run(
            ["iptables-restore", "-T", table], input="\n".join(kept) + "\n", text=True, check=False
        )
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name == "docker0" or name.startswith("br-"):
            subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)


def _docker_rule(line: str) -> bool:
    """True for an iptables-save line that dockerd added (a DOCKER* chain, or a rule about its bridges)."""
    return "DOCKER" in line or "docker0" in line or " br-" in line
