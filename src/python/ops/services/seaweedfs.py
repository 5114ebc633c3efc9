"""Local S3 server: SeaweedFS (`weed server` = master + volume + filer + S3 gateway), credentials required.

Layout: binary in <cache>/seaweedfs-<version>/bin/weed (built from the Go module proxy), data in
<home>/data/seaweedfs, S3 identities in <home>/run/seaweedfs/s3.json, output in <home>/logs/s3.log.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from ops.credentials import missing_secrets
from ops.services.install import install_problem, mark_installed, run_logged
from ops.services.process import (
    Daemon,
    ServiceError,
    ensure_ports_free,
    port_accepts,
    require_executable,
)
from tickstream.logs import get_logger
from tickstream.settings import InstallSecretsSettings, PathsSettings, S3Settings
from tickstream.topology import BUCKETS

MODULE = "github.com/seaweedfs/seaweedfs"
VERSION = "v0.0.0-20261109003541-7506e5f91cd6"
HOST = "127.0.0.1"
GRPC_OFFSET = 10000
START_TIMEOUT_S = 90.0
LOCAL_HOSTS = ("127.0.0.1", "localhost")

log = get_logger("services.seaweedfs")


class SeaweedFSSettings(InstallSecretsSettings):
    """Internal ports, signing keys and sizing of the local SeaweedFS (the S3 port is
    TICKSTREAM_S3_ENDPOINT_URL's)."""

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_SEAWEEDFS_")

    master_port: int = Field(default=9333, description="Master HTTP port (gRPC: +10000).")
    volume_port: int = Field(default=9340, description="Volume server HTTP port (gRPC: +10000).")
    filer_port: int = Field(default=9350, description="Filer HTTP port (gRPC: +10000).")
    volume_size_limit_mb: int = Field(default=256, description="Size at which a volume stops taking writes.")
    memory_limit: str = Field(default="512MiB", description="Soft memory limit of the process (GOMEMLIMIT).")
    jwt_key: SecretStr = Field(
        default=SecretStr(""),
        description="Signs reads and writes on the volume server (generated per install; required).",
    )
    filer_jwt_key: SecretStr = Field(
        default=SecretStr(""),
        description="Signs reads and writes through the filer's HTTP port (generated per install; required).",
    )


def s3_client(settings: S3Settings) -> Any:
    """A boto3 S3 client for `settings` (path-style if configured, short timeouts, no retries)."""
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url or None,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key.get_secret_value(),
        region_name=settings.region,
        config=Config(
            s3={"addressing_style": "path" if settings.path_style else "auto"},
            connect_timeout=3,
            read_timeout=10,
            retries={"max_attempts": 1},
        ),
    )


def s3_port(settings: S3Settings) -> int:
    """The local port of TICKSTREAM_S3_ENDPOINT_URL; ServiceError if it is not a local http endpoint."""
    url = urlsplit(settings.endpoint_url)
    if url.scheme != "http" or url.hostname not in LOCAL_HOSTS or url.port is None:
        raise ServiceError(
            f"TICKSTREAM_S3_ENDPOINT_URL={settings.endpoint_url!r} is not a local endpoint the local S3 "
            "server can serve; set it to http://127.0.0.1:<port>"
        )
    return url.port


def s3_identities(settings: S3Settings) -> dict[str, Any]:
    """SeaweedFS S3 config: one identity with our credentials and no anonymous one (anonymous is denied)."""
    return {
        "identities": [
            {
                "name": "tickstream",
                "credentials": [
                    {
                        "accessKey": settings.access_key_id,
                        "secretKey": settings.secret_access_key.get_secret_value(),
                    }
                ],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }


class SeaweedFSService:
    """Build, start, check and stop the local S3 server, and create the topology's buckets."""

    name = "s3"

    def __init__(
        self,
        paths: PathsSettings,
        s3: S3Settings,
        settings: SeaweedFSSettings,
    ) -> None:
        self.paths = paths
        self.s3 = s3
        self.settings = settings
        self.bin_dir = self.paths.cache_dir / f"seaweedfs-{VERSION}" / "bin"
        self.data_dir = self.paths.data_dir / "seaweedfs"
        self.config_dir = self.paths.run_dir / "seaweedfs"
        self.s3_config = self.config_dir / "s3.json"
        self.install_log = self.paths.logs_dir / "install-seaweedfs.log"
        self.daemon = Daemon(
            name=self.name,
            pid_file=self.paths.run_dir / "s3.pid",
            log_file=self.paths.logs_dir / "s3.log",
            cmdline_marker=f"-dir={self.data_dir}",
        )

    @property
    def weed(self) -> Path:
        """Path of the `weed` binary."""
        return self.bin_dir / "weed"

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return self.s3.endpoint_url

    def install(self) -> Path:
        """Build `weed` from the Go module proxy unless a complete build is cached; return its path."""
        problem = install_problem(self.bin_dir, VERSION)
        if problem is None:
            return self.weed
        go = require_executable(
            "go", "install Go 1.26+ (https://go.dev/dl, or the golang package) and run again"
        )
        log.info(
            "installing",
            what=f"SeaweedFS {VERSION} (go build, several minutes on first run)",
            into=str(self.bin_dir),
            state=problem,
            log=str(self.install_log),
        )
        started = time.monotonic()
        fix = "check that the Go module proxy is reachable, then run again"
        # `go install module@version` refuses modules whose go.mod has replace directives (this one does),
        # so download the module and build it as the main module instead.
        download = subprocess.run(
            [go, "mod", "download", "-json", f"{MODULE}@{VERSION}"],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        try:
            source_dir = Path(json.loads(download.stdout)["Dir"])
        except (ValueError, KeyError) as exc:
            detail = (download.stderr or download.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ServiceError(f"downloading {MODULE}@{VERSION} failed ({detail[0]}); {fix}") from exc
        if self.bin_dir.exists():
            for stale in self.bin_dir.iterdir():
                stale.unlink()
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        run_logged(
            [go, "build", "-ldflags=-s -w", "-o", str(self.weed), "./weed"],
            self.install_log,
            what="building SeaweedFS",
            fix=fix,
            cwd=source_dir,
        )
        mark_installed(self.bin_dir, VERSION)
        log.info(
            "installed", what="SeaweedFS", into=str(self.bin_dir), seconds=round(time.monotonic() - started)
        )
        return self.weed

    def ports(self) -> dict[str, int]:
        """Every TCP port the server binds, by role."""
        s = self.settings
        port = s3_port(self.s3)
        return {
            "S3 port": port,
            "S3 gRPC port": port + GRPC_OFFSET,
            "master port": s.master_port,
            "master gRPC port": s.master_port + GRPC_OFFSET,
            "volume port": s.volume_port,
            "volume gRPC port": s.volume_port + GRPC_OFFSET,
            "filer port": s.filer_port,
            "filer gRPC port": s.filer_port + GRPC_OFFSET,
        }

    def command(self) -> list[str]:
        """The `weed server` command line: loopback only, S3 with required credentials, small volumes."""
        s = self.settings
        return [
            str(self.weed),
            "-logtostderr",  # log to our log file only, not to files in /tmp
            "server",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-master.port={s.master_port}",
            f"-master.volumeSizeLimitMB={s.volume_size_limit_mb}",
            "-master.telemetry=false",
            "-master.electionTimeout=2s",
            f"-volume.port={s.volume_port}",
            "-volume.max=0",
            "-volume.preStopSeconds=1",
            "-filer",
            f"-filer.port={s.filer_port}",
            "-s3",
            f"-s3.port={s3_port(self.s3)}",
            f"-s3.config={self.s3_config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.iam=false",
        ]

    def environment(self) -> dict[str, str]:
        """Environment for `weed`: grow one volume per collection at a time, bounded memory, and its
        security.toml settings: the volume server and the filer accept only JWT-signed reads and writes
        (the S3 gateway signs its own), no volume UI and no directory listings through the filer's port.
        (No [guard] white list: its check refuses SeaweedFS's own gRPC calls over unix sockets.)"""
        volume_key = self.settings.jwt_key.get_secret_value()
        filer_key = self.settings.filer_jwt_key.get_secret_value()
        return {
            "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1",
            "GOMEMLIMIT": self.settings.memory_limit,
            "WEED_JWT_SIGNING_KEY": volume_key,
            "WEED_JWT_SIGNING_READ_KEY": volume_key,
            "WEED_JWT_FILER_SIGNING_KEY": filer_key,
            "WEED_JWT_FILER_SIGNING_READ_KEY": filer_key,
            "WEED_ACCESS_UI": "false",
            "WEED_FILER_EXPOSE_DIRECTORY_METADATA_ENABLED": "false",
        }

    def check_secrets(self) -> None:
        """ServiceError unless the S3 key pair and signing keys are set (the first `up` generates them)."""
        missing = missing_secrets(self.s3, self.settings)
        if missing:
            raise ServiceError(
                f"{', '.join(missing)} not set: `tickstream up` generates them into "
                f"{self.paths.secrets_file}; or set them in the environment"
            )

    def write_config(self) -> None:
        """Write the S3 identities file (readable by the owner only)."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.s3_config.touch(mode=0o600)
        os.chmod(self.s3_config, 0o600)
        self.s3_config.write_text(json.dumps(s3_identities(self.s3), indent=2))

    def master_ready(self) -> bool:
        """True if the master has a leader and a volume server has registered (reads and writes can work).

        After an unclean stop the S3 gateway answers ListBuckets well before this holds.
        """
        base = f"http://{HOST}:{self.settings.master_port}"
        try:
            with urllib.request.urlopen(f"{base}/cluster/healthz", timeout=3):
                pass
            with urllib.request.urlopen(f"{base}/dir/status", timeout=3) as response:
                topology = json.load(response).get("Topology", {})
        except (OSError, ValueError):
            return False
        return int(topology.get("Max", 0)) > 0

    def healthy(self) -> bool:
        """True if the master is ready and the S3 gateway answers an authenticated ListBuckets."""
        if not port_accepts(HOST, s3_port(self.s3)) or not self.master_ready():
            return False
        try:
            s3_client(self.s3).list_buckets()
        except (BotoCoreError, ClientError):
            return False
        return True

    def up(self) -> bool:
        """Ensure the server runs and the topology's buckets exist; return True if this call started it."""
        started = self.daemon.ensure_running(self._launch, self.healthy, START_TIMEOUT_S)
        self.provision()
        return started

    def provision(self) -> None:
        """Create the topology's buckets that are missing."""
        ensure_buckets(self.s3, BUCKETS)

    def _launch(self) -> None:
        self.check_secrets()
        ensure_ports_free(
            self.name,
            HOST,
            self.ports(),
            "set TICKSTREAM_S3_ENDPOINT_URL / TICKSTREAM_SEAWEEDFS_*_PORT to free ports",
        )
        self.install()
        self.write_config()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log.info("starting", service=self.name, endpoint=self.endpoint, log=str(self.daemon.log_file))
        self.daemon.start(self.command(), env=self.environment(), cwd=self.data_dir)

    def down(self) -> bool:
        """Stop the server; return True if it was running."""
        return self.daemon.stop(timeout=30)


def ensure_buckets(settings: S3Settings, buckets: tuple[str, ...]) -> list[str]:
    """Create the buckets that do not exist yet (idempotent); return the names created."""
    client = s3_client(settings)
    try:
        existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
    except (BotoCoreError, ClientError) as exc:
        raise ServiceError(f"listing buckets at {settings.endpoint_url} failed: {exc}") from exc
    created = []
    for bucket in buckets:
        if bucket in existing:
            continue
        try:
            client.create_bucket(Bucket=bucket)
            created.append(bucket)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise ServiceError(f"creating bucket {bucket} failed: {exc}") from exc
    if created:
        log.info("created buckets", buckets=created)
    return created
