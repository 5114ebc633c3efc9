"""Kafka service: configuration rendering and error reporting (unit tests, no server)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import SecretStr

from ops.services import kafka, process
from ops.services.kafka import KafkaService, new_cluster_id, read_properties
from ops.services.process import ServiceError
from tickstream.settings import KafkaSettings, PathsSettings


@pytest.fixture
def service(tmp_path: Path) -> KafkaService:
    paths = PathsSettings(home=tmp_path / "home", cache_dir=tmp_path / "cache")
    return KafkaService(paths, KafkaSettings(port=19092, controller_port=19093, heap="256m"))


def test_server_config_uses_settings_ports_and_loopback_only(service: KafkaService) -> None:
    service.write_config()
    config = read_properties(service.server_properties)
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert config["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert config["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert config["process.roles"] == "broker,controller"
    assert Path(config["log.dirs"]) == service.paths.home / "data" / "kafka" / "log"
    assert service.endpoint == "127.0.0.1:19092"


def test_java_command_has_heap_classpath_and_main_class(
    service: KafkaService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka, "java_executable", lambda: "/usr/bin/java")
    command = service.java_command("kafka.Kafka", ["server.properties"], "1g", "log4j2.properties")
    assert command[:3] == ["/usr/bin/java", "-Xms1g", "-Xmx1g"]
    assert command[command.index("-cp") + 1] == f"{service.libs_dir}/*"
    assert command[-2:] == ["kafka.Kafka", "server.properties"]
    assert service.libs_dir == service.paths.cache_dir / f"kafka-{service.version}" / "libs"


def test_cluster_id_is_created_once(service: KafkaService) -> None:
    first = service.cluster_id()
    assert len(first) == 22 and not first.startswith("-")
    assert service.cluster_id() == first
    assert new_cluster_id() != first


def test_empty_storage_needs_format(service: KafkaService) -> None:
    assert service.storage_formatted() is False


def test_formatted_storage_is_recognised(service: KafkaService) -> None:
    service.storage_dir.mkdir(parents=True)
    (service.storage_dir / "meta.properties").write_text(
        f"version=1\ncluster.id={service.cluster_id()}\nnode.id=1\n"
    )
    assert service.storage_formatted() is True


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (b"\xff\xfe\x00garbage", "unreadable"),
        (b"version=1\nnode.id=1\n", "unreadable"),
        (
            b"version=1\ncluster.id=someOtherClusterId0000\nnode.id=1\n",
            "belongs to cluster someOtherClusterId0000",
        ),
    ],
)
def test_corrupted_storage_is_a_one_line_error(service: KafkaService, content: bytes, cause: str) -> None:
    service.storage_dir.mkdir(parents=True)
    (service.storage_dir / "meta.properties").write_bytes(content)
    with pytest.raises(ServiceError, match=cause) as info:
        service.storage_formatted()
    assert "\n" not in str(info.value)
    assert f"move {service.data_dir} aside" in str(info.value)


def test_storage_with_data_but_no_meta_properties_is_an_error(service: KafkaService) -> None:
    (service.storage_dir / "ticks-0").mkdir(parents=True)
    with pytest.raises(ServiceError, match="has data but no meta.properties"):
        service.storage_formatted()


def test_missing_java_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    kafka.java_executable.cache_clear()
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    try:
        with pytest.raises(ServiceError, match=r"`java` not found in JAVA_HOME=.*set JAVA_HOME"):
            kafka.java_executable()
    finally:
        kafka.java_executable.cache_clear()


def test_port_in_use_is_reported_before_any_download(
    service: KafkaService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka, "java_executable", lambda: "/usr/bin/java")
    monkeypatch.setattr(process, "PORT_GRACE_S", 0.2)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", service.settings.port))
        listener.listen()
        with pytest.raises(ServiceError, match=r"port 19092 \(client port\).*TICKSTREAM_KAFKA_PORT"):
            service.up()
    assert not service.libs_dir.exists()


def test_sasl_plaintext_broker_config_names_its_one_user(tmp_path: Path) -> None:
    settings = KafkaSettings(
        port=19092,
        controller_port=19093,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="tickstream",
        sasl_password=SecretStr('pa"ss\\word'),
    )
    sasl = KafkaService(PathsSettings(home=tmp_path / "home", cache_dir=tmp_path / "cache"), settings)
    config = sasl.server_config()
    assert config["listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert config["listener.security.protocol.map"] == "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert config["sasl.enabled.mechanisms"] == "PLAIN"
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="tickstream" password="pa\\"ss\\\\word" user_tickstream="pa\\"ss\\\\word";'
    )
    assert config["listener.name.sasl_plaintext.plain.sasl.jaas.config"] == jaas
    sasl.write_config()  # Java's Properties reads backslash escapes: each one is doubled in the file
    written = read_properties(sasl.server_properties)
    assert written["listener.name.sasl_plaintext.plain.sasl.jaas.config"] == jaas.replace("\\", "\\\\")
    assert sasl.server_properties.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("protocol", "mechanism"), [("SASL_SSL", "PLAIN"), ("SASL_PLAINTEXT", "SCRAM-SHA-512")]
)
def test_local_broker_refuses_what_it_cannot_serve(tmp_path: Path, protocol: str, mechanism: str) -> None:
    settings = KafkaSettings.model_validate(
        {
            "security_protocol": protocol,
            "sasl_mechanism": mechanism,
            "sasl_username": "u",
            "sasl_password": "p",
        }
    )
    with pytest.raises(ServiceError, match="local Kafka serves PLAINTEXT or SASL_PLAINTEXT with PLAIN"):
        KafkaService(PathsSettings(home=tmp_path), settings).server_config()
