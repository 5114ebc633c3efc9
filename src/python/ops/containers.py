"""`tickstream containers ...`: the platform as containers on this machine's Docker engine
(docs/deployment.md).

- `prepare`: the engine (Debian's docker.io and docker-compose, dockerd started by the project when none
  runs) and the base image (ops.base_image). `./tickstream containers up` runs it, then builds every image
  with `./pants package` (the docker_image targets), then `up`.
- `up`: `docker-compose up -d` of deploy/docker-compose.yml with the install's generated secrets as its env
  file, then waits until every long-running service is healthy.
- `status`; `down` (volumes kept unless --volumes); `stop-engine` (dockerd, if the project started it).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import typer

from ops.base_image import ensure_base_image
from ops.credentials import ensure_install_secrets
from ops.services.docker_engine import COMPOSE, DockerEngine, docker_cli
from ops.services.install import deploy_dir
from ops.services.process import ServiceError
from tickstream.commands import command_app
from tickstream.logs import get_logger
from tickstream.settings import PathsSettings

PROJECT = "tickstream"
HEALTHY_TIMEOUT_S = 900.0

log = get_logger("containers")
containers_app = command_app(
    help="The platform as containers: Docker engine, images, the compose stack.", no_args_is_help=True
)


class Stack:
    """One compose project of deploy/docker-compose.yml (plus override files), with the install's secrets."""

    def __init__(
        self,
        paths: PathsSettings,
        project: str = PROJECT,
        overrides: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """The stack `project`, whose secrets are the install's (`paths.secrets_file`); `env` adds variables
        for compose's interpolation (e.g. TICKSTREAM_COMPOSE_DASHBOARD_PORT)."""
        self.paths = paths
        self.project = project
        self.files = [deploy_dir() / "docker-compose.yml", *overrides]
        self.env = {**os.environ, **(env or {})}

    def compose(
        self, *args: str, check: bool = True, capture: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run `docker-compose ARGS` on this stack."""
        argv = [str(COMPOSE), "--project-name", self.project, "--env-file", str(self.paths.secrets_file)]
        for file in self.files:
            argv += ["--file", str(file)]
        result = subprocess.run([*argv, *args], capture_output=capture, text=True, env=self.env, check=False)
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip()[-800:] if capture else "see output above"
            raise ServiceError(f"docker-compose {' '.join(args)} failed ({result.returncode}): {detail}")
        return result

    def containers(self) -> dict[str, dict[str, str]]:
        """Each container of the project by service: its state and health ('' without a healthcheck)."""
        listed = subprocess.run(
            [docker_cli(), "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={self.project}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if not listed:
            return {}
        inspected = json.loads(
            subprocess.run(
                [docker_cli(), "inspect", *listed], capture_output=True, text=True, check=True
            ).stdout
        )
        states: dict[str, dict[str, str]] = {}
        for container in inspected:
            service = container["Config"]["Labels"].get("com.docker.compose.service", container["Name"])
            state = container["State"]
            states[service] = {
                "status": state["Status"],
                "health": (state.get("Health") or {}).get("Status", ""),
                "exit_code": str(state.get("ExitCode", "")),
                "id": container["Id"],
            }
        return states

    def up(self, timeout_s: float = HEALTHY_TIMEOUT_S) -> None:
        """Start every service and wait until each one with a healthcheck is healthy and the one-shot
        services (init-*, catalog-init, airflow-init) exited with 0."""
        self.compose("up", "--detach", "--no-build", "--remove-orphans")
        self.wait_healthy(timeout_s)

    def wait_healthy(self, timeout_s: float = HEALTHY_TIMEOUT_S) -> None:
        """Wait until every container is healthy, running without a healthcheck, or exited with 0."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.containers()
            failed = {
                name: s for name, s in states.items() if s["status"] == "exited" and s["exit_code"] != "0"
            }
            if failed:
                names = ", ".join(sorted(failed))
                raise ServiceError(f"{names} exited with an error; see `docker-compose logs {min(failed)}`")
            waiting = sorted(
                name
                for name, s in states.items()
                if s["status"] != "exited"
                and (s["health"] not in ("", "healthy") or s["status"] != "running")
            )
            if states and not waiting:
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"not healthy within {timeout_s:.0f}s: {', '.join(waiting) or 'no containers'}"
                )
            time.sleep(5)

    def down(self, volumes: bool = False) -> None:
        """Stop and remove the containers and networks (and the volumes with `volumes`)."""
        self.compose("down", "--remove-orphans", *(["--volumes"] if volumes else []))


def prepare(paths: PathsSettings) -> DockerEngine:
    """The engine up (installed and started if needed), the install's secrets, the base image."""
    engine = DockerEngine(paths)
    typer.echo("containers: Docker engine (Debian's docker.io; installed and started if missing) ...")
    engine.up()
    ensure_install_secrets(paths)
    typer.echo("containers: base image (debootstrap of Debian bookworm on first run, ~1.5 min) ...")
    ensure_base_image()
    return engine


@containers_app.command("prepare")
def prepare_command() -> None:
    """Install and start the Docker engine if needed and build the base image."""
    try:
        prepare(PathsSettings())
    except ServiceError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from exc


@containers_app.command("up")
def up_command() -> None:
    """Start the compose stack (images built by `./tickstream containers up`) and wait until healthy."""
    try:
        paths = PathsSettings()
        prepare(paths)
        Stack(paths).up()
    except ServiceError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from exc
    typer.echo(
        "containers: up. Dashboard http://127.0.0.1:8501, Airflow http://127.0.0.1:8080, Spark http://127.0.0.1:8090"
    )


@containers_app.command("status")
def status_command() -> None:
    """Show each service's container state and health."""
    for name, state in sorted(Stack(PathsSettings()).containers().items()):
        typer.echo(f"{name:24} {state['status']:10} {state['health']}")


@containers_app.command("down")
def down_command(
    volumes: Annotated[bool, typer.Option(help="Also remove the volumes (all data).")] = False,
) -> None:
    """Stop the compose stack; its data stays in its volumes unless --volumes."""
    paths = PathsSettings()
    if DockerEngine(paths).healthy():
        Stack(paths).down(volumes=volumes)


@containers_app.command("stop-engine")
def stop_engine_command() -> None:
    """Stop dockerd if the project started it (an engine started otherwise is left running)."""
    if DockerEngine(PathsSettings()).down():
        typer.echo("containers: stopped the Docker engine the project started")
