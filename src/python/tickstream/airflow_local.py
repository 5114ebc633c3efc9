"""Airflow on one machine for `tickstream up`: `airflow standalone` from the Airflow PEX, no manual set-up.

The Airflow PEX (`src/dags:airflow`) is turned into a virtualenv once per PEX build (`PEX_TOOLS=1 <pex>
venv`), because `airflow standalone` starts its scheduler, DAG processor, triggerer and API server as
`airflow ...` subprocesses found on PATH. Metadata lives in SQLite under TICKSTREAM_HOME/airflow; the DAGs
folder is the repository's src/dags; DAGs start unpaused; the local API server lets everyone in as admin
(a local-only default; never expose it). The DAG's jobs run from the compaction and analytics PEXes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickstream.logs import get_logger
from tickstream.services.process import ServiceError
from tickstream.settings import DagSettings, PathsSettings, environment

log = get_logger("airflow")

VENV_STAMP = ".built-from"
"""File in the virtualenv holding the sha256 of the PEX it was built from."""


class AirflowSettings(BaseSettings):
    """How `tickstream up` runs Airflow locally."""

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_AIRFLOW_")

    port: int = Field(default=8080, description="Port of Airflow's API server and UI.")
    parallelism: int = Field(default=2, ge=1, description="AIRFLOW__CORE__PARALLELISM (tasks at once).")
    dags_folder: Path = Field(
        default=Path("src/dags"), description="The DAGs folder (relative paths: from the working directory)."
    )
    dbt_project_dir: Path = Field(
        default=Path("src/sql/dbt"),
        description="The dbt project the analytics PEX runs (relative: as above).",
    )

    @property
    def url(self) -> str:
        """Where the UI and API answer."""
        return f"http://127.0.0.1:{self.port}"


def airflow_home(paths: PathsSettings) -> Path:
    """AIRFLOW_HOME of the local platform: SQLite metadata DB, logs, generated config."""
    return paths.home / "airflow"


def venv_dir(paths: PathsSettings) -> Path:
    """Where the virtualenv built from the Airflow PEX lives."""
    return paths.home / "venvs" / "airflow"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_venv(pex: Path, venv: Path) -> Path:
    """A virtualenv holding the PEX's distributions and console scripts, rebuilt when the PEX changes."""
    if not pex.is_file():
        raise ServiceError(f"{pex} not found; build it with `./pants package src/dags:airflow`")
    digest = file_sha256(pex)
    stamp = venv / VENV_STAMP
    if stamp.is_file() and stamp.read_text().strip() == digest and (venv / "bin" / "airflow").exists():
        return venv
    log.info("building_airflow_venv", pex=str(pex), venv=str(venv), note="first run after a build: ~30 s")
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(pex), "venv", "--force", str(venv)],
        env={**os.environ, "PEX_TOOLS": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ServiceError(f"could not build the Airflow virtualenv from {pex}: {done.stderr[-1500:]}")
    stamp.write_text(digest + "\n")
    return venv


def airflow_environment(
    settings: AirflowSettings, paths: PathsSettings, pex_dir: Path, venv: Path
) -> dict[str, str]:
    """Environment of `airflow standalone` and of the DAG's tasks (which run the component PEXes)."""
    pex_dir = pex_dir.resolve()
    return {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(airflow_home(paths)),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_folder.resolve()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__DAG_IGNORE_FILE_SYNTAX": "glob",
        "AIRFLOW__CORE__PARALLELISM": str(settings.parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(settings.parallelism),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(settings.port),
        "AIRFLOW__API__WORKERS": "1",
        **environment(
            DagSettings(
                compaction_command=str(pex_dir / "src.python.compaction" / "bin.pex"),
                analytics_command=str(pex_dir / "src.python.analytics" / "bin.pex"),
            )
        ),
        "TICKSTREAM_DBT_PROJECT_DIR": str(settings.dbt_project_dir.resolve()),
    }


def airflow_healthy(settings: AirflowSettings) -> Callable[[datetime], bool]:
    """Health of Airflow: the API server answers and reports its scheduler and DAG processor healthy."""

    def check(_: datetime) -> bool:
        try:
            with urllib.request.urlopen(f"{settings.url}/api/v2/monitor/health", timeout=3) as response:
                health = json.load(response)
        except (OSError, ValueError):
            return False
        parts = [part for part in ("metadatabase", "scheduler", "dag_processor") if part in health]
        return "scheduler" in parts and all(health[part].get("status") == "healthy" for part in parts)

    return check
