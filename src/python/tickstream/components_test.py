"""Tests of the platform components' definitions (no processes started)."""

from __future__ import annotations

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
