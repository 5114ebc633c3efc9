"""A whole platform as a user runs it (`tickstream up` from the packaged CLI), in a TICKSTREAM_HOME of its own
and on free ports, so that a platform already running on the machine keeps its own: for the end-to-end test
of `tickstream up` and for the whole-platform benchmark."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ops.credentials import read_secrets
from testkit.services import SEAWEEDFS_PORTS, free_port
from tickstream.settings import CatalogSettings, S3Settings


@dataclass
class LocalPlatform:
    """Where a platform lives, the environment its CLI runs with, and its ports."""

    home: Path
    env: dict[str, str]
    ports: dict[str, int]
    cli: Path
    up_output: str = ""
    """What the last `up` printed."""

    def tickstream(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the packaged CLI with the platform's environment."""
        return subprocess.run(
            [str(self.cli), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['airflow']}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['dashboard']}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['kafka']}"

    def secrets(self) -> dict[str, str]:
        """The install's generated secrets (after the first `up`)."""
        return read_secrets(self.home / "secrets.env")

    def s3(self) -> S3Settings:
        """How to reach the platform's S3 server with its generated key pair."""
        secrets = self.secrets()
        return S3Settings.model_validate(
            {
                "endpoint_url": f"http://127.0.0.1:{self.ports['s3']}",
                "access_key_id": secrets["TICKSTREAM_S3_ACCESS_KEY_ID"],
                "secret_access_key": secrets["TICKSTREAM_S3_SECRET_ACCESS_KEY"],
            }
        )

    def catalog(self) -> CatalogSettings:
        """The platform's catalog (the default SQLite one under its home)."""
        return CatalogSettings(
            uri=f"sqlite:///{self.home / 'data' / 'catalog' / 'iceberg_catalog.db'}",
            warehouse=f"s3://{self.s3().bucket}/warehouse",
        )


def local_platform(
    home: Path, cli: Path, dags_folder: Path, dbt_project_dir: Path, settings: dict[str, str]
) -> LocalPlatform:
    """A platform in `home` on free ports, run by the CLI PEX `cli` (the other PEXes beside it, as Pants's
    dist/ lays them out), with extra TICKSTREAM_* `settings`; the rest of the environment is inherited."""
    ports = {name: free_port() for name in ("kafka", "controller", "airflow", "dashboard")}
    ports |= {name: free_port(SEAWEEDFS_PORTS) for name in ("s3", "master", "volume", "filer")}
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
        "TICKSTREAM_S3_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3']}",
        "TICKSTREAM_SEAWEEDFS_MASTER_PORT": str(ports["master"]),
        "TICKSTREAM_SEAWEEDFS_VOLUME_PORT": str(ports["volume"]),
        "TICKSTREAM_SEAWEEDFS_FILER_PORT": str(ports["filer"]),
        "TICKSTREAM_AIRFLOW_PORT": str(ports["airflow"]),
        "TICKSTREAM_AIRFLOW_DAGS_FOLDER": str(dags_folder),
        "TICKSTREAM_AIRFLOW_DBT_PROJECT_DIR": str(dbt_project_dir),
        "TICKSTREAM_DASHBOARD_PORT": str(ports["dashboard"]),
        "TICKSTREAM_DASHBOARD_URL": f"http://127.0.0.1:{ports['dashboard']}",
        **settings,
    }
    return LocalPlatform(home, env, ports, cli)
