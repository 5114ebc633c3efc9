"""The services CLI: clear one-line errors and exit codes (no services are started)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from typer.testing import CliRunner

from ops.cli import app


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


def test_rebuild_lake_and_analytics_pass_their_arguments_to_the_pex(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    for pex in ("src.python.compaction/rebuild.pex", "src.python.analytics/bin.pex"):
        path = tmp_path / "dist" / pex
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'#!/bin/sh\necho "{pex} $*" >> {calls}\nexit 3\n')
        path.chmod(0o755)
    env = {**env_for(tmp_path, 39092), "TICKSTREAM_PEX_DIR": str(tmp_path / "dist")}
    rebuild = CliRunner().invoke(
        app, ["rebuild-lake", "--from", "2026-11-20T09", "--to", "2026-11-20T12"], env=env
    )
    analytics = CliRunner().invoke(
        app, ["analytics", "build", "--start", "2026-11-20", "--end", "2026-11-21"], env=env
    )
    assert (rebuild.exit_code, analytics.exit_code) == (3, 3)  # the PEX's exit code
    assert calls.read_text().splitlines() == [
        "src.python.compaction/rebuild.pex --from 2026-11-20T09 --to 2026-11-20T12",
        "src.python.analytics/bin.pex build --start 2026-11-20 --end 2026-11-21",
    ]


def test_passthrough_without_its_pex_says_how_to_build_it(tmp_path: Path) -> None:
    env = {**env_for(tmp_path, 39092), "TICKSTREAM_PEX_DIR": str(tmp_path / "none")}
    result = CliRunner().invoke(app, ["analytics", "build"], env=env)
    assert result.exit_code == 1 and "./tickstream up" in result.output


def test_secrets_command_generates_once_without_starting_anything(tmp_path: Path) -> None:
    env = {"TICKSTREAM_HOME": str(tmp_path / "home")}
    first = CliRunner().invoke(app, ["secrets"], env=env)
    assert first.exit_code == 0, first.output
    secrets_file = tmp_path / "home" / "secrets.env"
    assert f"secrets: {secrets_file}" in first.output and "generated" in first.output
    stored = secrets_file.read_text()
    assert not any(value in first.output for value in re.findall(r"=(\S+)", stored))  # says where, not what
    again = CliRunner().invoke(app, ["secrets"], env=env)
    assert again.exit_code == 0 and "generated" not in again.output
    assert secrets_file.read_text() == stored
    assert not (tmp_path / "home" / "run").exists()  # nothing was started
