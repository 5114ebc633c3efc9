"""Tests of the platform components' definitions (no processes started)."""

from __future__ import annotations

import http.server
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tickstream.components import ComponentsSettings, components
from tickstream.services.process import ServiceError
from tickstream.settings import S3Settings


def test_components_start_producer_before_streaming(tmp_path: Path) -> None:
    names = [c.name for c in components(ComponentsSettings(pex_dir=tmp_path), S3Settings())]
    assert names.index("producer") < names.index("streaming")


def test_missing_pex_names_the_pants_target(tmp_path: Path) -> None:
    settings = ComponentsSettings(pex_dir=tmp_path)
    streaming = {c.name: c for c in components(settings, S3Settings())}["streaming"]
    with pytest.raises(ServiceError, match=r"\./pants package src/python/streaming:bin"):
        streaming.argv(settings)


def test_argv_runs_the_pex_with_the_up_producer_rate(tmp_path: Path) -> None:
    settings = ComponentsSettings(pex_dir=tmp_path, up_producer_rate=123.0)
    producer = {c.name: c for c in components(settings, S3Settings())}["producer"]
    pex = tmp_path / "src.python.producer" / "bin.pex"
    pex.parent.mkdir()
    pex.touch()
    assert producer.argv(settings) == [str(pex), "simulate", "--rate", "123.0"]


def test_dashboard_is_healthy_only_when_its_url_answers(tmp_path: Path) -> None:
    settings = ComponentsSettings(pex_dir=tmp_path, dashboard_url="http://127.0.0.1:9")  # nothing listens
    dashboard = {c.name: c for c in components(settings, S3Settings())}["dashboard"]
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
        dashboard = {c.name: c for c in components(settings, S3Settings())}["dashboard"]
        assert dashboard.healthy(datetime.now(UTC)) is True
        server.shutdown()
