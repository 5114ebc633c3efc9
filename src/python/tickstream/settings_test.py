"""Tests of the shared settings: environment overrides and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import SettingsConfigDict

from tickstream.settings import KafkaSettings, LakeRootSettings, PathsSettings, S3Settings, environment
from tickstream.topology import LAKE_BUCKET


def test_s3_settings_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKSTREAM_S3_ENDPOINT_URL", "http://s3.example:9000")
    monkeypatch.setenv("TICKSTREAM_S3_PATH_STYLE", "false")
    settings = S3Settings()
    assert settings.endpoint_url == "http://s3.example:9000"
    assert settings.path_style is False
    assert settings.bucket == LAKE_BUCKET


def test_kafka_defaults_point_at_local_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert KafkaSettings().bootstrap_servers == "127.0.0.1:9092"


def test_paths_derive_from_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TICKSTREAM_HOME", str(tmp_path))
    paths = PathsSettings()
    assert paths.logs_dir == tmp_path / "logs"
    assert paths.run_dir == tmp_path / "run"


def test_one_lake_root_variable_whatever_the_components_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    class Component(LakeRootSettings):
        model_config = SettingsConfigDict(env_prefix="TICKSTREAM_COMPONENT_")

        port: int = 1

    monkeypatch.setenv("TICKSTREAM_LAKE_ROOT", "s3://bucket/prefix")
    monkeypatch.setenv("TICKSTREAM_COMPONENT_LAKE_ROOT", "s3://not-this")
    monkeypatch.setenv("TICKSTREAM_COMPONENT_PORT", "2")
    component = Component()
    assert (component.lake_root, component.port) == ("s3://bucket/prefix", 2)
    assert Component(lake_root="/here").lake_root == "/here"
    # handed to a subprocess under the same one variable
    assert environment(component) == {
        "TICKSTREAM_LAKE_ROOT": "s3://bucket/prefix",
        "TICKSTREAM_COMPONENT_PORT": "2",
    }
