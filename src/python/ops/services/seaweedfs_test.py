"""S3 server service: configuration rendering and error reporting (unit tests, no server)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from pydantic import SecretStr

from ops.services import process
from ops.services.process import ServiceError
from ops.services.seaweedfs import SeaweedFSService, SeaweedFSSettings, s3_port
from tickstream.settings import PathsSettings, S3Settings


@pytest.fixture(autouse=True)
def no_install_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read no install's secrets file (TICKSTREAM_HOME is empty)."""
    monkeypatch.setenv("TICKSTREAM_HOME", str(tmp_path / "empty-home"))


@pytest.fixture
def service(tmp_path: Path) -> SeaweedFSService:
    paths = PathsSettings(home=tmp_path / "home", cache_dir=tmp_path / "cache")
    s3 = S3Settings(
        endpoint_url="http://127.0.0.1:18433", access_key_id="ak", secret_access_key=SecretStr("sk")
    )
    settings = SeaweedFSSettings(
        master_port=19433,
        volume_size_limit_mb=64,
        jwt_key=SecretStr("v-key"),
        filer_jwt_key=SecretStr("f-key"),
    )
    return SeaweedFSService(paths, s3, settings)


def flag(command: list[str], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"-{name}=")]
    assert len(values) == 1, f"-{name} given {len(values)} times"
    return values[0]


def test_command_binds_loopback_with_required_credentials(service: SeaweedFSService) -> None:
    command = service.command()
    assert command[:3] == [str(service.weed), "-logtostderr", "server"]
    assert flag(command, "ip") == flag(command, "ip.bind") == "127.0.0.1"
    assert flag(command, "s3.port") == "18433"
    assert flag(command, "master.port") == "19433"
    assert flag(command, "master.volumeSizeLimitMB") == "64"
    assert flag(command, "master.telemetry") == "false"
    assert Path(flag(command, "dir")) == service.paths.home / "data" / "seaweedfs"
    assert Path(flag(command, "s3.config")) == service.s3_config
    assert "-s3" in command and "-filer" in command


def test_s3_config_has_only_our_identity(service: SeaweedFSService) -> None:
    service.write_config()
    config = json.loads(service.s3_config.read_text())
    assert [identity["name"] for identity in config["identities"]] == ["tickstream"]
    assert config["identities"][0]["credentials"] == [{"accessKey": "ak", "secretKey": "sk"}]
    assert service.s3_config.stat().st_mode & 0o077 == 0


def test_ports_cover_http_and_grpc(service: SeaweedFSService) -> None:
    ports = service.ports()
    assert ports["S3 port"] == 18433 and ports["S3 gRPC port"] == 28433
    assert ports["master port"] == 19433 and ports["master gRPC port"] == 29433
    assert len(set(ports.values())) == len(ports)


@pytest.mark.parametrize("url", ["https://s3.amazonaws.com", "http://10.0.0.5:8333", "http://127.0.0.1"])
def test_non_local_endpoint_is_rejected(url: str) -> None:
    with pytest.raises(ServiceError, match="not a local endpoint"):
        s3_port(S3Settings(endpoint_url=url))


def test_port_in_use_is_reported_before_any_build(
    service: SeaweedFSService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "PORT_GRACE_S", 0.2)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 19433))
        listener.listen()
        with pytest.raises(ServiceError, match=r"s3: port 19433 \(master port\).*TICKSTREAM_SEAWEEDFS"):
            service.up()
    assert not service.bin_dir.exists()


def test_volume_server_and_filer_require_signed_requests(service: SeaweedFSService) -> None:
    signed = SeaweedFSService(
        service.paths,
        service.s3,
        service.settings.model_copy(
            update={"jwt_key": SecretStr("v-key"), "filer_jwt_key": SecretStr("f-key")}
        ),
    )
    env = signed.environment()
    assert env["WEED_JWT_SIGNING_KEY"] == env["WEED_JWT_SIGNING_READ_KEY"] == "v-key"
    assert env["WEED_JWT_FILER_SIGNING_KEY"] == env["WEED_JWT_FILER_SIGNING_READ_KEY"] == "f-key"
    assert env["WEED_FILER_EXPOSE_DIRECTORY_METADATA_ENABLED"] == "false"
    service.check_secrets()


def test_missing_secrets_are_named_before_any_build(service: SeaweedFSService) -> None:
    unkeyed = SeaweedFSService(  # neither keys nor free ports: the missing keys are named first
        service.paths, S3Settings(endpoint_url="http://127.0.0.1:18433"), SeaweedFSSettings()
    )
    with pytest.raises(ServiceError, match=r"TICKSTREAM_S3_ACCESS_KEY_ID.*TICKSTREAM_SEAWEEDFS_JWT_KEY.*up"):
        unkeyed.up()
    assert not service.bin_dir.exists()
