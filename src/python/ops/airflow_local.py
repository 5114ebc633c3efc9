"""Airflow on one machine for `tickstream up`: its four services from the Airflow PEX, no manual set-up.

The Airflow PEX (`src/dags:airflow`) is turned into a virtualenv once per PEX build (`PEX_TOOLS=1 <pex>
venv`). `airflow_command` runs what `airflow standalone` runs (database migration, then scheduler, DAG
processor and API server as one process group; no triggerer, as no task defers), but bound to loopback:
standalone cannot skip the log servers, which bind every interface with no setting for it; here they are
skipped and the API server reads task logs from the local files. Metadata lives in SQLite under
TICKSTREAM_HOME/airflow; the DAGs folder is the repository's src/dags; DAGs start unpaused. Sign-in is
required: the simple auth manager with one `admin` user whose password (like the API's JWT, session and
Fernet keys) is generated per install
(ops.credentials). The DAG's jobs run from the compaction and analytics PEXes.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from ops.credentials import missing_secrets
from ops.services.install import file_sha256
from ops.services.process import ServiceError
from tickstream.logs import get_logger
from tickstream.settings import DagSettings, InstallSecretsSettings, PathsSettings, environment

log = get_logger("airflow")

VENV_STAMP = ".built-from"
"""File in the virtualenv holding the sha256 of the PEX it was built from."""
HOST = "127.0.0.1"
ADMIN = "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


class AirflowSettings(InstallSecretsSettings):
    """How `tickstream up` runs Airflow locally (the secrets: generated per install)."""

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
    admin_password: SecretStr = Field(default=SecretStr(""), description="Password of the `admin` user.")
    jwt_secret: SecretStr = Field(default=SecretStr(""), description="Signs the API's tokens.")
    secret_key: SecretStr = Field(default=SecretStr(""), description="The API server's session key.")
    fernet_key: SecretStr = Field(default=SecretStr(""), description="Encrypts connections in the database.")

    @property
    def url(self) -> str:
        """Where the UI and API answer."""
        return f"http://{HOST}:{self.port}"


def airflow_home(paths: PathsSettings) -> Path:
    """AIRFLOW_HOME of the local platform: SQLite metadata DB, logs, generated config."""
    return paths.home / "airflow"


def venv_dir(paths: PathsSettings) -> Path:
    """Where the virtualenv built from the Airflow PEX lives."""
    return paths.home / "venvs" / "airflow"


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


def passwords_file(paths: PathsSettings) -> Path:
    """The simple auth manager's users' passwords (JSON, mode 0600), written from the install's secrets."""
    return airflow_home(paths) / "passwords.json"


def airflow_command(venv: Path, settings: AirflowSettings, paths: PathsSettings) -> list[str]:
    """Write the passwords file, then return the command line that runs the local Airflow.

    The command migrates the database, then runs the scheduler (without its log server), the DAG
    processor and the API server (loopback, settings in the environment) together; when one of them exits,
    or on SIGTERM, the others are stopped too.
    """
    missing = missing_secrets(settings)
    if missing:
        raise ServiceError(
            f"{', '.join(missing)} not set: `tickstream up` generates them into {paths.secrets_file}"
        )
    target = passwords_file(paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch(mode=0o600)
    os.chmod(target, 0o600)
    target.write_text(json.dumps({ADMIN: settings.admin_password.get_secret_value()}))
    airflow = shlex.quote(str(venv / "bin" / "airflow"))
    script = f"""
trap 'kill $(jobs -p) 2>/dev/null; wait; exit 0' TERM INT
{airflow} db migrate || exit 1
{airflow} scheduler --skip-serve-logs &
{airflow} dag-processor &
{airflow} api-server &
wait -n
code=$?
kill $(jobs -p) 2>/dev/null
wait
exit $code
"""
    return ["bash", "-c", script]


def airflow_environment(
    settings: AirflowSettings, paths: PathsSettings, pex_dir: Path, venv: Path
) -> dict[str, str]:
    """Environment of the local Airflow and of the DAG's tasks (which run the component PEXes)."""
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
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(paths)),
        "AIRFLOW__CORE__FERNET_KEY": settings.fernet_key.get_secret_value(),
        "AIRFLOW__API_AUTH__JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "AIRFLOW__API__SECRET_KEY": settings.secret_key.get_secret_value(),
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(settings.port),
        "AIRFLOW__API__BASE_URL": settings.url,
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
