"""Tests of the shared settings: environment overrides and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from tickstream.settings import (
    KafkaSettings,
    LakeRootSettings,
    PathsSettings,
    S3Settings,
    environment,
    settings_json,
)
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


def test_kafka_clients_are_plaintext_by_default() -> None:
    kafka = KafkaSettings(bootstrap_servers="b:9092")
    assert kafka.client_security() == {"security.protocol": "PLAINTEXT"}
    assert kafka.spark_options() == {
        "kafka.bootstrap.servers": "b:9092",
        "kafka.security.protocol": "PLAINTEXT",
    }


def test_kafka_sasl_ssl_reaches_librdkafka_and_the_java_client_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TICKSTREAM_KAFKA_SASL_USERNAME", "tickstream")
    monkeypatch.setenv("TICKSTREAM_KAFKA_SASL_PASSWORD", 'p"w\\d')
    monkeypatch.setenv("TICKSTREAM_KAFKA_SSL_CA_LOCATION", "/etc/kafka/ca.pem")
    kafka = KafkaSettings()
    assert kafka.client_security() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "tickstream",
        "sasl.password": 'p"w\\d',
        "ssl.ca.location": "/etc/kafka/ca.pem",
    }
    options = kafka.spark_options()
    assert options["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert options["kafka.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="tickstream" password="p\\"w\\\\d";'
    )
    assert options["kafka.ssl.truststore.type"] == "PEM"
    assert options["kafka.ssl.truststore.location"] == "/etc/kafka/ca.pem"
    assert 'p"w' not in repr(kafka)  # the password is a SecretStr: never in a repr or log line
    # a subprocess gets the same settings, password included
    assert environment(kafka)["TICKSTREAM_KAFKA_SASL_PASSWORD"] == 'p"w\\d'


def test_kafka_sasl_without_credentials_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="TICKSTREAM_KAFKA_SASL_USERNAME"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT")
    plain = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SecretStr("p"),
    )
    assert plain.spark_options()["kafka.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.plain.PlainLoginModule required"
    )


def test_the_retired_public_s3_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKSTREAM_S3_SECRET_ACCESS_KEY", "tickstream-local-secret")
    with pytest.raises(ValidationError, match="public default of older releases"):
        S3Settings()
    monkeypatch.setenv("TICKSTREAM_S3_SECRET_ACCESS_KEY", "a-key-of-this-install")
    settings = S3Settings()
    assert "a-key-of-this-install" not in repr(settings)  # a SecretStr: never in a repr or log line
    assert environment(settings)["TICKSTREAM_S3_SECRET_ACCESS_KEY"] == "a-key-of-this-install"


def test_settings_json_round_trips_the_secrets_pydantic_masks() -> None:
    s3 = S3Settings(endpoint_url="http://s3:1", access_key_id="ak", secret_access_key=SecretStr("sk"))
    assert "sk" not in s3.model_dump_json()  # pydantic masks it ...
    rebuilt = S3Settings.model_validate_json(settings_json(s3))  # ... settings_json keeps it
    assert rebuilt.secret_access_key.get_secret_value() == "sk" and rebuilt == s3
