"""The platform's application components (producer, streaming job, ...) as local processes.

Each component runs from the PEX Pants builds for it (`./tickstream` packages them into dist/), is
started detached with its own log and PID file under TICKSTREAM_HOME, and has a health check that says
whether it is doing its job, not only whether its process exists.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ops.airflow_local import (
    AirflowSettings,
    airflow_command,
    airflow_environment,
    airflow_healthy,
    ensure_venv,
    venv_dir,
)
from ops.services.process import Daemon, ServiceError
from tickstream.lake import LakeLocation, read_status
from tickstream.settings import PathsSettings, S3Settings


class ComponentsSettings(BaseSettings):
    """How `tickstream up` runs the application components."""

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_")

    pex_dir: Path = Field(
        default=Path("dist"), description="Where the components' PEXes are (./pants package output)."
    )
    up_producer_rate: float = Field(
        default=2000.0, description="Simulated ticks per second of `up`'s producer."
    )
    start_timeout_s: float = Field(default=240.0, description="How long a component may take to be healthy.")
    dashboard_url: str = Field(
        default="http://127.0.0.1:8501",
        description="Where the dashboard serves (keep in step with TICKSTREAM_DASHBOARD_ADDRESS/_PORT).",
    )


@dataclass(frozen=True)
class Component:
    """One application process: how to start it and how to tell that it works."""

    name: str
    pex: str
    args: tuple[str, ...]
    healthy: Callable[[datetime], bool]
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold secrets
    launcher: Callable[[Path], list[str]] | None = None
    """Turns the PEX's path into the command line (default: run the PEX with `args`)."""
    url: str | None = None
    """Where a user opens it, if it has a UI."""
    stop_timeout_s: float = 30.0
    """How long `down` waits after SIGTERM before it kills the component's processes."""

    def daemon(self, paths: PathsSettings) -> Daemon:
        """The PID/log bookkeeping of this component under TICKSTREAM_HOME."""
        return Daemon(
            name=self.name,
            pid_file=paths.run_dir / f"{self.name}.pid",
            log_file=paths.logs_dir / f"{self.name}.log",
            cmdline_marker=self.pex,
        )

    def argv(self, settings: ComponentsSettings) -> list[str]:
        """The command line that starts the component from its PEX."""
        pex = settings.pex_dir / self.pex
        if not pex.is_file():
            raise ServiceError(f"{self.name}: {pex} not found; build it with `./pants package {self.target}`")
        return self.launcher(pex) if self.launcher else [str(pex), *self.args]

    @property
    def target(self) -> str:
        """The Pants target that builds this component's PEX."""
        directory, name = self.pex.rsplit("/", 1)
        return f"{directory.replace('.', '/')}:{name.removesuffix('.pex')}"


def streaming_status_updated_since(s3: S3Settings) -> Callable[[datetime], bool]:
    """Health of the streaming job: its status object in S3 was written after the job started."""

    def check(started: datetime) -> bool:
        try:
            updated = datetime.fromisoformat(read_status(LakeLocation.for_bucket(s3))["updated_at"])
        except Exception:  # not there yet, S3 hiccup, half-written: not healthy yet
            return False
        return updated >= started

    return check


def http_ok(url: str) -> Callable[[datetime], bool]:
    """Health of a web component: `url` answers 200."""

    def check(_: datetime) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    return check


def always(_: datetime) -> bool:
    """Health of a component whose running process is the whole check."""
    return True


def components(settings: ComponentsSettings, s3: S3Settings, paths: PathsSettings) -> list[Component]:
    """The application components in start order."""
    airflow = AirflowSettings()
    airflow_venv = venv_dir(paths)
    return [
        Component(
            name="producer",
            pex="src.python.producer/bin.pex",
            args=("simulate", "--rate", str(settings.up_producer_rate)),
            healthy=always,
        ),
        Component(
            name="streaming",
            pex="src.python.streaming/bin.pex",
            args=(),
            healthy=streaming_status_updated_since(s3),
        ),
        Component(
            name="airflow",
            pex="src.dags/airflow.pex",
            args=(),
            healthy=airflow_healthy(airflow),
            env=airflow_environment(airflow, paths, settings.pex_dir, airflow_venv),
            launcher=lambda pex: airflow_command(ensure_venv(pex, airflow_venv), airflow, paths),
            url=airflow.url,
            # its scheduler waits for running tasks (a compaction takes minutes) until killed; a killed task
            # is retried by the DAG, and its jobs are idempotent and commit atomically
            stop_timeout_s=10.0,
        ),
        Component(
            name="dashboard",
            pex="src.python.dashboard/bin.pex",
            args=(),
            healthy=http_ok(f"{settings.dashboard_url}/_stcore/health"),
            url=settings.dashboard_url,
        ),
    ]


def start(component: Component, paths: PathsSettings, settings: ComponentsSettings) -> bool:
    """Start `component` unless it runs, and wait until healthy; True if this call started it."""
    daemon = component.daemon(paths)
    started_at = datetime.now(UTC)
    return daemon.ensure_running(
        lambda: daemon.start(component.argv(settings), component.env),
        lambda: component.healthy(started_at),
        settings.start_timeout_s,
    )
