"""Tests of the platform components' definitions (no processes started)."""

from __future__ import annotations

import http.server
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ops.airflow_local import (
    AirflowSettings,
    airflow_command,
    airflow_healthy,
    ensure_venv,
    passwords_file,
)
from ops.components import ComponentsSettings, components
from ops.credentials import ensure_install_secrets, read_secrets
from ops.services.process import ServiceError
from tickstream.settings import PathsSettings, S3Settings


def paths(home: Path) -> PathsSettings:
    return PathsSettings(home=home)


def test_components_start_in_dependency_order(tmp_path: Path) -> None:
    settings = ComponentsSettings(pex_dir=tmp_path)
    names = [c.name for c in components(settings, S3Settings(), PathsSettings(home=tmp_path))]
    assert names == ["producer", "streaming", "airflow", "dashboard"]


def test_missing_pex_names_the_pants_target(tmp_path: Path) -> None:
    settings = ComponentsSettings(pex_dir=tmp_path)
    streaming = {c.name: c for c in components(settings, S3Settings(), paths(tmp_path))}["streaming"]
    with pytest.raises(ServiceError, match=r"\./pants package src/python/streaming:bin"):
        streaming.argv(settings)


def test_argv_runs_the_pex_with_the_up_producer_rate(tmp_path: Path) -> None:
    settings = ComponentsSettings(pex_dir=tmp_path, up_producer_rate=123.0)
    producer = {c.name: c for c in components(settings, S3Settings(), paths(tmp_path))}["producer"]
    pex = tmp_path / "src.python.producer" / "bin.pex"
    pex.parent.mkdir()
    pex.touch()
    assert producer.argv(settings) == [str(pex), "simulate", "--rate", "123.0"]


def test_dashboard_is_healthy_only_when_its_url_answers(tmp_path: Path) -> None:
    settings = ComponentsSettings(pex_dir=tmp_path, dashboard_url="http://127.0.0.1:9")  # nothing listens
    dashboard = {c.name: c for c in components(settings, S3Settings(), paths(tmp_path))}["dashboard"]
    assert dashboard.healthy(datetime.now(UTC)) is False


def test_dashboard_is_healthy_when_its_health_url_answers_200(tmp_path: Path) -> None:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/_stcore/health" else 404)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    with http.server.HTTPServer(("127.0.0.1", 0), Health) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        settings = ComponentsSettings(pex_dir=tmp_path, dashboard_url=url)
        dashboard = {c.name: c for c in components(settings, S3Settings(), paths(tmp_path))}["dashboard"]
        assert dashboard.healthy(datetime.now(UTC)) is True
        server.shutdown()


def test_airflow_runs_from_a_venv_with_the_repo_dags_and_component_pexes(tmp_path: Path) -> None:
    settings = ComponentsSettings(pex_dir=tmp_path / "dist")
    airflow = {c.name: c for c in components(settings, S3Settings(), paths(tmp_path))}["airflow"]
    env = airflow.env
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / "venvs" / "airflow" / "bin")
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert Path(env["AIRFLOW__CORE__DAGS_FOLDER"]) == Path("src/dags").resolve()
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) <= 4
    assert env["TICKSTREAM_COMPACTION_COMMAND"] == str(
        tmp_path / "dist" / "src.python.compaction" / "bin.pex"
    )
    assert env["TICKSTREAM_ANALYTICS_COMMAND"] == str(tmp_path / "dist" / "src.python.analytics" / "bin.pex")
    with pytest.raises(ServiceError, match=r"\./pants package src/dags:airflow"):
        airflow.argv(settings)


def test_airflow_is_healthy_only_when_scheduler_and_dag_processor_are() -> None:
    answer: dict[str, object] = {}

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answer).encode()
            self.send_response(200 if self.path == "/api/v2/monitor/health" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    with http.server.HTTPServer(("127.0.0.1", 0), Health) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        healthy = airflow_healthy(AirflowSettings(port=server.server_address[1]))
        now = datetime.now(UTC)
        answer.update(metadatabase={"status": "healthy"}, scheduler={"status": "unhealthy"})
        assert healthy(now) is False
        answer.update(scheduler={"status": "healthy"}, dag_processor={"status": "unhealthy"})
        assert healthy(now) is False
        answer.update(dag_processor={"status": "healthy"})
        assert healthy(now) is True
        server.shutdown()
    assert healthy(now) is False  # nothing answers


def test_venv_is_built_once_per_pex_and_rebuilt_when_it_changes(tmp_path: Path) -> None:
    pex = tmp_path / "fake.pex"
    log = tmp_path / "calls"
    # Stands in for a PEX run with PEX_TOOLS=1: `<pex> venv --force <dir>` creates bin/airflow.
    pex.write_text(
        "#!/bin/sh\n"
        f'[ "$PEX_TOOLS" = 1 ] && [ "$1" = venv ] || exit 9\necho call >> {log}\n'
        'mkdir -p "$3/bin" && touch "$3/bin/airflow"\n'
    )
    pex.chmod(0o755)
    venv = tmp_path / "venv"
    assert ensure_venv(pex, venv) == venv and (venv / "bin" / "airflow").exists()
    ensure_venv(pex, venv)
    assert log.read_text().count("call") == 1
    pex.write_text(pex.read_text() + "# changed\n")
    ensure_venv(pex, venv)
    assert log.read_text().count("call") == 2


def test_airflow_requires_sign_in_and_binds_loopback_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKSTREAM_HOME", str(tmp_path))
    home = paths(tmp_path)
    ensure_install_secrets(home)
    secrets = read_secrets(home.secrets_file)
    airflow = {c.name: c for c in components(ComponentsSettings(), S3Settings(), home)}["airflow"]
    env = airflow.env
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == secrets["TICKSTREAM_AIRFLOW_JWT_SECRET"]
    assert env["AIRFLOW__CORE__FERNET_KEY"] == secrets["TICKSTREAM_AIRFLOW_FERNET_KEY"]
    command = airflow_command(tmp_path / "venv", AirflowSettings(), home)
    script = command[-1]
    assert "scheduler --skip-serve-logs" in script
    assert "triggerer" not in script  # no deferrable task: the triggerer would only poll
    assert "standalone" not in script
    stored = json.loads(passwords_file(home).read_text())
    assert stored == {"admin": secrets["TICKSTREAM_AIRFLOW_ADMIN_PASSWORD"]}
    assert passwords_file(home).stat().st_mode & 0o077 == 0
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(passwords_file(home))


def test_airflow_without_generated_secrets_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKSTREAM_HOME", str(tmp_path))
    with pytest.raises(ServiceError, match="tickstream up"):
        airflow_command(tmp_path / "venv", AirflowSettings(), paths(tmp_path))
