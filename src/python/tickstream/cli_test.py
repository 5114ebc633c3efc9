"""The services CLI: clear one-line errors and exit codes (no services are started)."""

from __future__ import annotations

import socket
from pathlib import Path

from typer.testing import CliRunner

from tickstream.cli import app


def env_for(tmp_path: Path, kafka_port: int) -> dict[str, str]:
    return {
        "TICKSTREAM_HOME": str(tmp_path / "home"),
        "TICKSTREAM_CACHE_DIR": str(tmp_path / "cache"),
        "TICKSTREAM_KAFKA_PORT": str(kafka_port),
        "TICKSTREAM_KAFKA_CONTROLLER_PORT": str(kafka_port + 1),
        "TICKSTREAM_S3_ENDPOINT_URL": "http://127.0.0.1:1",
    }


def test_status_of_stopped_services_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["services", "status"], env=env_for(tmp_path, 39092))
    assert result.exit_code == 1
    assert "kafka: stopped at 127.0.0.1:39092" in result.output
    assert "s3: stopped at http://127.0.0.1:1" in result.output


def test_up_with_port_taken_is_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = CliRunner().invoke(app, ["services", "up", "kafka"], env=env_for(tmp_path, port))
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert f"port {port} (client port)" in errors[0]
    assert "TICKSTREAM_KAFKA_PORT" in errors[0]


def test_logs_follow_needs_one_service(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["services", "logs", "-f"], env=env_for(tmp_path, 39092))
    assert result.exit_code == 1
    assert "--follow needs one service" in result.output


def test_unknown_service_is_rejected(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["services", "up", "zookeeper"], env=env_for(tmp_path, 39092))
    assert result.exit_code == 2
