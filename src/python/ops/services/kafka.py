"""Local single-node Kafka (KRaft broker + controller) run from Maven Central jars.

Layout: jars in <cache>/kafka-<version>/libs, data in <home>/data/kafka (cluster.id + log/), rendered
config in <home>/run/kafka/, broker output in <home>/logs/kafka.log.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from ops.services.install import deploy_dir, maven_install, pom_property
from ops.services.process import (
    Daemon,
    ServiceError,
    ensure_ports_free,
    port_accepts,
)
from tickstream.logs import get_logger
from tickstream.settings import KafkaSettings, PathsSettings
from tickstream.topology import TOPICS, Topic

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
TOOL_HEAP = "512m"

log = get_logger("services.kafka")

TOOLS_LOG4J2 = """\
status = warn
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
"""


def kafka_version() -> str:
    """The Kafka version pinned in deploy/kafka/pom.xml."""
    return pom_property(deploy_dir() / "kafka" / "pom.xml", "kafka.version")


@functools.cache
def java_executable() -> str:
    """Path of a Java 17+ `java`, from JAVA_HOME or PATH; ServiceError if none."""
    fix = "install a JDK 17+ (apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).is_file():
        where = f"JAVA_HOME={java_home}" if java_home else "PATH"
        raise ServiceError(f"`java` not found in {where}; {fix}")
    output = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    match = re.search(r'version "(\d+)', output)
    if match is None or int(match.group(1)) < 17:
        raise ServiceError(f"{java} is not Java 17+ ({output.splitlines()[:1]}); {fix}")
    return java


def new_cluster_id() -> str:
    """A random KRaft cluster id (22 URL-safe base64 characters, never starting with '-')."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def read_properties(path: Path) -> dict[str, str]:
    """Parse a Java .properties file of simple key=value lines (raises ValueError on other content)."""
    properties: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"line without '=': {line[:40]!r}")
        properties[key.strip()] = value.strip()
    return properties


def render_properties(properties: dict[str, str]) -> str:
    """Render a dict as .properties text (backslashes and line breaks in values escaped)."""
    escaped = {key: value.replace("\\", "\\\\").replace("\n", "\\n") for key, value in properties.items()}
    return "".join(f"{key}={value}\n" for key, value in escaped.items())


class KafkaService:
    """Install, format, start, check and stop the local broker."""

    name = "kafka"

    def __init__(self, paths: PathsSettings, settings: KafkaSettings) -> None:
        self.paths = paths
        self.settings = settings
        self.version = kafka_version()
        self.libs_dir = self.paths.cache_dir / f"kafka-{self.version}" / "libs"
        self.data_dir = self.paths.data_dir / "kafka"
        self.storage_dir = self.data_dir / "log"
        self.config_dir = self.paths.run_dir / "kafka"
        self.server_properties = self.config_dir / "server.properties"
        self.install_log = self.paths.logs_dir / "install-kafka.log"
        self.daemon = Daemon(
            name=self.name,
            pid_file=self.paths.run_dir / "kafka.pid",
            log_file=self.paths.logs_dir / "kafka.log",
            cmdline_marker=str(self.server_properties),
        )

    @property
    def endpoint(self) -> str:
        """Bootstrap address of the local broker."""
        return f"{HOST}:{self.settings.port}"

    def install(self) -> Path:
        """Download the Kafka jars unless a complete copy is cached; return the libs directory."""
        return maven_install(
            deploy_dir() / "kafka" / "pom.xml", self.libs_dir, f"Kafka {self.version} jars", self.install_log
        )

    def server_config(self) -> dict[str, str]:
        """The broker's server.properties: single node, KRaft, loopback only; clients in PLAINTEXT, or with
        TICKSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT authenticated by SASL/PLAIN as the one user
        TICKSTREAM_KAFKA_SASL_USERNAME."""
        port, controller_port = self.settings.port, self.settings.controller_port
        client = self.settings.security_protocol
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{controller_port}",
            "listeners": f"{client}://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
            "advertised.listeners": f"{client}://{HOST}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": client,
            "listener.security.protocol.map": f"{client}:{client},CONTROLLER:PLAINTEXT",
            **self.sasl_config(),
            "log.dirs": str(self.storage_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }

    def sasl_config(self) -> dict[str, str]:
        """The broker's SASL/PLAIN settings (its one user, also the broker's own), or none for PLAINTEXT;
        ServiceError for what the local broker does not serve (TLS, SCRAM)."""
        settings = self.settings
        if settings.security_protocol == "PLAINTEXT":
            return {}
        if settings.security_protocol != "SASL_PLAINTEXT" or settings.sasl_mechanism != "PLAIN":
            raise ServiceError(
                f"the local Kafka serves PLAINTEXT or SASL_PLAINTEXT with PLAIN, not "
                f"{settings.security_protocol} with {settings.sasl_mechanism}; set "
                "TICKSTREAM_KAFKA_SECURITY_PROTOCOL / TICKSTREAM_KAFKA_SASL_MECHANISM (TLS and SCRAM: a "
                "deployed cluster, docs/security.md)"
            )
        user, password = settings.sasl_username, settings.sasl_password.get_secret_value()
        login = "org.apache.kafka.common.security.plain.PlainLoginModule"
        quoted = {name: json.dumps(value) for name, value in (("user", user), ("password", password))}
        return {
            "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
                f"{login} required username={quoted['user']} password={quoted['password']} "
                f"user_{user}={quoted['password']};"
            ),
        }

    def write_config(self) -> None:
        """Render server.properties (readable by the owner only: it may hold the SASL password) and the
        log4j2 configs into the run directory."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.server_properties.touch(mode=0o600)
        os.chmod(self.server_properties, 0o600)
        self.server_properties.write_text(render_properties(self.server_config()))
        shutil.copyfile(deploy_dir() / "kafka" / "log4j2.properties", self.config_dir / "log4j2.properties")
        (self.config_dir / "tools-log4j2.properties").write_text(TOOLS_LOG4J2)

    def cluster_id(self) -> str:
        """The cluster id saved in the data directory (created on first use)."""
        path = self.data_dir / "cluster.id"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id() + "\n")
        return path.read_text().strip()

    def storage_formatted(self) -> bool:
        """True if storage is formatted for our cluster id, False if empty; ServiceError if corrupted."""
        meta = self.storage_dir / "meta.properties"
        fix = (
            f"move {self.data_dir} aside (or delete it, losing all Kafka data) and run "
            "`tickstream services up kafka` again"
        )
        if not meta.exists():
            if self.storage_dir.exists() and any(self.storage_dir.iterdir()):
                raise ServiceError(f"Kafka storage {self.storage_dir} has data but no meta.properties; {fix}")
            return False
        try:
            found = read_properties(meta)["cluster.id"]
        except (OSError, UnicodeDecodeError, ValueError, KeyError) as exc:
            raise ServiceError(
                f"Kafka storage is corrupted: {meta} is unreadable ({type(exc).__name__}); {fix}"
            ) from exc
        if found != self.cluster_id():
            raise ServiceError(
                f"Kafka storage {meta} belongs to cluster {found}, not {self.cluster_id()} "
                f"(from {self.data_dir / 'cluster.id'}); {fix}"
            )
        return True

    def java_command(self, main_class: str, args: Sequence[str], heap: str, log4j2: str) -> list[str]:
        """A `java` command line running `main_class` from the Kafka jars."""
        return [
            java_executable(),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.config_dir / log4j2}",
            f"-Dkafka.logs.dir={self.paths.logs_dir}",
            "-cp",
            f"{self.libs_dir}/*",
            main_class,
            *args,
        ]

    def format_storage(self) -> None:
        """Format the KRaft storage once (kafka.tools.StorageTool) with the saved cluster id."""
        if self.storage_formatted():
            return
        log.info("formatting storage", service=self.name, dir=str(self.storage_dir))
        args = ["format", "-t", self.cluster_id(), "-c", str(self.server_properties)]
        command = self.java_command("kafka.tools.StorageTool", args, TOOL_HEAP, "tools-log4j2.properties")
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ServiceError(f"formatting Kafka storage {self.storage_dir} failed: {detail[0]}")

    def healthy(self) -> bool:
        """True if the broker answers a metadata request."""
        if not port_accepts(HOST, self.settings.port):
            return False
        admin = AdminClient(
            {**self.settings.client_security(), "bootstrap.servers": self.endpoint, "socket.timeout.ms": 3000}
        )
        try:
            admin.list_topics(timeout=3)
        except KafkaException:
            return False
        return True

    def up(self) -> bool:
        """Ensure the broker runs and the topology's topics exist; return True if this call started it."""
        started = self.daemon.ensure_running(self._launch, self.healthy, START_TIMEOUT_S)
        self.provision()
        return started

    def provision(self) -> None:
        """Create the topology's topics that are missing."""
        ensure_topics(self.endpoint, TOPICS, self.settings.client_security())

    def _launch(self) -> None:
        java_executable()
        ensure_ports_free(
            self.name,
            HOST,
            {"client port": self.settings.port, "controller port": self.settings.controller_port},
            "set TICKSTREAM_KAFKA_PORT / TICKSTREAM_KAFKA_CONTROLLER_PORT (and "
            "TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS) to free ports",
        )
        self.install()
        self.write_config()
        self.format_storage()
        log.info("starting", service=self.name, bootstrap=self.endpoint, log=str(self.daemon.log_file))
        command = self.java_command(
            "kafka.Kafka", [str(self.server_properties)], self.settings.heap, "log4j2.properties"
        )
        self.daemon.start(command, cwd=self.data_dir)

    def down(self) -> bool:
        """Stop the broker (controlled shutdown on SIGTERM); return True if it was running."""
        return self.daemon.stop(timeout=60)

    def run_tool(
        self, main_class: str, args: Sequence[str], capture_output: bool = False, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a Kafka command-line tool's main class (e.g. org.apache.kafka.tools.ProducerPerformance)."""
        self.install()
        self.write_config()
        command = self.java_command(main_class, args, TOOL_HEAP, "tools-log4j2.properties")
        return subprocess.run(command, capture_output=capture_output, text=True, timeout=timeout, check=False)


def ensure_topics(
    bootstrap: str, topics: Sequence[Topic], security: Mapping[str, str] | None = None
) -> list[str]:
    """Create the topics that do not exist yet (idempotent); return the names created. `security`: the
    client's TLS/SASL settings (KafkaSettings.client_security)."""
    admin = AdminClient({**(security or {}), "bootstrap.servers": bootstrap})
    try:
        existing = admin.list_topics(timeout=10).topics
    except KafkaException as exc:
        raise ServiceError(
            f"listing Kafka topics at {bootstrap} failed: {exc}; check the broker log"
        ) from exc
    for topic in topics:
        if topic.name in existing and len(existing[topic.name].partitions) != topic.partitions:
            log.warning(
                "partition count differs from topology",
                topic=topic.name,
                actual=len(existing[topic.name].partitions),
                declared=topic.partitions,
            )
    missing = [
        NewTopic(
            topic.name,
            num_partitions=topic.partitions,
            replication_factor=1,
            config={"retention.ms": str(topic.retention_ms)},
        )
        for topic in topics
        if topic.name not in existing
    ]
    if not missing:
        return []
    created = []
    for name, future in admin.create_topics(missing, operation_timeout=30).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ServiceError(f"creating Kafka topic {name} failed: {error.str()}") from exc
    log.info("created topics", topics=created)
    return created
