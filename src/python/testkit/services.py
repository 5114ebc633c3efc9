"""pytest fixtures giving tests a running local Kafka and S3 server, and lakes of their own.

src/python/conftest.py loads this module as a pytest plugin for every test under src/python. Fixtures are
session-scoped: a healthy instance already listening (the developer's `tickstream services up`, or a
container) is reused as is; otherwise the fixture starts one and stops at session end only what it started.
Set TICKSTREAM_TEST_HOME to keep test data and PID files apart from the developer's TICKSTREAM_HOME (with
other ports, via TICKSTREAM_KAFKA_* / TICKSTREAM_S3_* / TICKSTREAM_SEAWEEDFS_*, if the shared instance runs
at the same time).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest
from pydantic import SecretStr

from ops.credentials import ensure_install_secrets
from ops.services.kafka import KafkaService
from ops.services.process import Service, port_is_free
from ops.services.seaweedfs import GRPC_OFFSET, SeaweedFSService, SeaweedFSSettings
from ops.services.spark_jars import install_spark_jars
from testkit.lake import TestLake, private_catalog_settings
from tickstream.settings import KafkaSettings, PathsSettings, S3Settings


@contextmanager
def running(service: Service, run_dir: Path) -> Iterator[None]:
    """Keep `service` running while any test process uses it; the last user stops what tests started.

    Several pytest processes (Pants runs test batches in parallel) share one instance. Each holds a
    shared lock on `<run_dir>/<name>.users.lock` while it uses the service. Starting and stopping happen
    under the exclusive `<run_dir>/<name>.start.lock`, which is held only for that, so a process joins a
    running instance at once however long another one uses it; a marker file records that tests (not a
    developer) started it. At the end, a process that can take the users lock exclusively without waiting
    is the last user: it stops the service if tests started it. A developer's running instance is reused
    and never stopped.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    started_by_tests = run_dir / f"{service.name}.started-by-tests"
    with (
        (run_dir / f"{service.name}.users.lock").open("a") as users,
        (run_dir / f"{service.name}.start.lock").open("a") as starting,
    ):
        with _locked(starting):
            if service.healthy():
                service.provision()
            else:
                try:
                    if service.up():
                        started_by_tests.touch()
                except BaseException:
                    service.down()
                    raise
            fcntl.flock(users, fcntl.LOCK_SH)
        try:
            yield
        finally:
            with _locked(starting):  # nobody joins while the last user decides to stop it
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass  # another test process still uses it; the last one stops it
                else:
                    if started_by_tests.exists():
                        service.down()
                        started_by_tests.unlink()


@contextmanager
def _locked(handle: IO[str]) -> Iterator[None]:
    """An exclusive flock on `handle` for the block."""
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session", autouse=True)
def spark_local_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Spark's scratch space (SPARK_LOCAL_DIRS) for this test session and every process it starts: a pytest
    temporary directory, so what a killed driver leaves behind (its copies of the connector jars, ~135 MB a
    session) goes with pytest's old temporary directories instead of piling up in /tmp."""
    directory = tmp_path_factory.mktemp("spark-local")
    previous = os.environ.get("SPARK_LOCAL_DIRS")
    os.environ["SPARK_LOCAL_DIRS"] = str(directory)
    yield directory
    if previous is None:
        os.environ.pop("SPARK_LOCAL_DIRS", None)
    else:
        os.environ["SPARK_LOCAL_DIRS"] = previous
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def services_paths() -> Iterator[PathsSettings]:
    """PathsSettings for the test session (TICKSTREAM_HOME := TICKSTREAM_TEST_HOME if that is set), with the
    install's generated secrets, as `tickstream up` makes them."""
    with pytest.MonkeyPatch.context() as patch:
        test_home = os.environ.get("TICKSTREAM_TEST_HOME")
        if test_home:
            patch.setenv("TICKSTREAM_HOME", test_home)
        paths = PathsSettings()
        ensure_install_secrets(paths)
        yield paths


@pytest.fixture(scope="session")
def kafka_service(services_paths: PathsSettings) -> Iterator[KafkaService]:
    """The local Kafka broker, running for the session."""
    service = KafkaService(services_paths, KafkaSettings())
    with running(service, services_paths.run_dir):
        yield service


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_service: KafkaService) -> str:
    """Bootstrap servers of a running Kafka with the topology's topics."""
    return kafka_service.endpoint


@pytest.fixture(scope="session")
def s3_service(services_paths: PathsSettings) -> Iterator[SeaweedFSService]:
    """The local S3 server, running for the session."""
    service = SeaweedFSService(services_paths, S3Settings(), SeaweedFSSettings())
    with running(service, services_paths.run_dir):
        yield service


@pytest.fixture(scope="session")
def s3_settings(s3_service: SeaweedFSService) -> S3Settings:
    """S3Settings of a running S3 server with the topology's buckets."""
    return s3_service.s3


SEAWEEDFS_PORTS = (0, GRPC_OFFSET)
"""A SeaweedFS port is usable when it and its gRPC port (+ GRPC_OFFSET) are free: `free_port`'s offsets."""


def free_port(offsets: tuple[int, ...] = (0,)) -> int:
    """A loopback port that is free, together with port + each of `offsets` (SeaweedFS: gRPC = +10000)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + max(offsets) < 65536 and all(port_is_free("127.0.0.1", port + off) for off in offsets):
            return port
    raise RuntimeError("no free loopback port found")


@contextmanager
def private_kafka_broker(home: Path, **security: Any) -> Iterator[KafkaService]:
    """A Kafka broker of the caller alone (`home`, free ports); `security`: KafkaSettings' security fields."""
    port, controller_port = free_port(), free_port()
    settings = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{port}",
        port=port,
        controller_port=controller_port,
        heap="512m",
        **security,
    )
    service = KafkaService(PathsSettings(home=home), settings)
    service.up()
    try:
        yield service
    finally:
        service.down()


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[KafkaService]:
    """A Kafka broker of this test alone (own home and ports): for tests that kill or restart it."""
    with private_kafka_broker(tmp_path / "home") as service:
        yield service


@pytest.fixture
def private_sasl_kafka(tmp_path: Path) -> Iterator[KafkaService]:
    """A Kafka broker of this test alone that admits only SASL/PLAIN clients of its one user (a random
    password): `service.settings` are the clients' settings."""
    sasl = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "tickstream",
        "sasl_password": SecretStr(secrets.token_urlsafe(16)),
    }
    with private_kafka_broker(tmp_path / "sasl-home", **sasl) as service:
        yield service


@contextmanager
def private_s3_server(home: Path | None = None) -> Iterator[SeaweedFSService]:
    """An S3 server of the caller alone: its own home (`home`, else a temporary directory removed at the end)
    and free ports (other sessions may hold the defaults)."""
    own_home = home or Path(tempfile.mkdtemp(prefix="tickstream-private-s3-"))
    s3 = S3Settings(  # keys of its own: the only place code makes up credentials
        endpoint_url=f"http://127.0.0.1:{free_port(SEAWEEDFS_PORTS)}",
        access_key_id=f"private-{secrets.token_hex(4)}",
        secret_access_key=SecretStr(secrets.token_urlsafe(24)),
    )
    seaweed = SeaweedFSSettings(
        master_port=free_port(SEAWEEDFS_PORTS),
        volume_port=free_port(SEAWEEDFS_PORTS),
        filer_port=free_port(SEAWEEDFS_PORTS),
        jwt_key=SecretStr(secrets.token_urlsafe(24)),
        filer_jwt_key=SecretStr(secrets.token_urlsafe(24)),
    )
    service = SeaweedFSService(PathsSettings(home=own_home), s3, seaweed)
    service.up()
    try:
        yield service
    finally:
        service.down()
        if home is None:
            shutil.rmtree(own_home, ignore_errors=True)


@pytest.fixture
def private_s3(tmp_path: Path) -> Iterator[SeaweedFSService]:
    """An S3 server of this test alone (own home and ports): for tests that kill or restart it."""
    with private_s3_server(tmp_path / "home") as service:
        yield service


@pytest.fixture(scope="session")
def spark_connector_jars(services_paths: PathsSettings) -> list[Path]:
    """Spark's Kafka and s3a connector jars, installed into the cache if missing (never at job run time)."""
    return install_spark_jars(services_paths)


@pytest.fixture
def s3_lake(tmp_path: Path, s3_settings: S3Settings) -> TestLake:
    """A lake of this test alone: its own SQLite catalog, files under a fresh prefix of the test bucket."""
    return TestLake(private_catalog_settings(tmp_path / "lake", s3_settings), s3_settings)


@pytest.fixture
def local_lake(tmp_path: Path) -> TestLake:
    """A lake of this test alone in a local directory (no S3 server needed)."""
    return TestLake(private_catalog_settings(tmp_path / "lake", None), None)
