"""deploy/docker-compose.yml declares the same topics and buckets as tickstream.topology."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.services.install import deploy_dir
from tickstream.topology import BUCKETS, TOPICS


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    path: Path = deploy_dir() / "docker-compose.yml"
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_services_present(compose: dict[str, Any]) -> None:
    assert {"kafka-1", "kafka-2", "kafka-3", "seaweedfs", "init-topics", "init-buckets"} <= set(
        compose["services"]
    )
    assert compose["services"]["kafka-1"]["image"] == "tickstream/kafka:latest"
    assert compose["services"]["seaweedfs"]["image"] == "tickstream/seaweedfs:latest"


def test_topics_equal_topology(compose: dict[str, Any]) -> None:
    specs = compose["services"]["init-topics"]["environment"]["TOPICS"].split()
    declared = [tuple(spec.split(":")) for spec in specs]
    expected = [(t.name, str(t.partitions), str(t.retention_ms)) for t in TOPICS]
    assert declared == expected


def test_buckets_equal_topology(compose: dict[str, Any]) -> None:
    assert tuple(compose["services"]["init-buckets"]["environment"]["BUCKETS"].split()) == BUCKETS


def test_s3_requires_credentials(compose: dict[str, Any]) -> None:
    (command,) = compose["services"]["seaweedfs"]["command"]
    assert "-s3.config=/etc/seaweedfs/s3.json" in command
    assert '"name": "tickstream"' in command and "anonymous" not in command
