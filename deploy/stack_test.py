"""deploy/docker-compose.yml runs the whole platform: structure, wiring, ports, credentials and versions.

The Compose Specification's JSON schema is not checked: no locked requirement ships it (docs/deployment.md),
so these are structural checks of what `docker compose config` would otherwise catch, and more.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.static_checks import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    Interpolation,
    PortMapping,
    build_targets,
    catalog_client_problems,
    dependency_problems,
    depends_on,
    env_file,
    interpolate,
    interpolation_problems,
    interpolations,
    port_mappings,
    port_problems,
    repo_root,
    strings,
)
from ops.credentials import GENERATED

EXPECTED_SERVICES = {
    "kafka-1",
    "kafka-2",
    "kafka-3",
    "seaweedfs",
    "init-topics",
    "init-buckets",
    "catalog-db",
    "catalog-init",
    "spark-master",
    "spark-worker-1",
    "spark-worker-2",
    "producer",
    "streaming",
    "dashboard",
    "postgres",
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
}
AIRFLOW_SERVICES = ("airflow-init", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor")
LAKE_SERVICES = {"catalog-init", "streaming", "dashboard", "airflow-scheduler"}
"""Services that read or write the lake's Iceberg tables (the scheduler runs compaction and dbt)."""
SPARK_MASTER_URL = "spark://spark-master:7077"


@pytest.fixture(scope="module")
def root() -> Path:
    return repo_root()


@pytest.fixture(scope="module")
def compose(root: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((root / COMPOSE_FILE).read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def documented(root: Path) -> dict[str, str]:
    return env_file((root / ENV_EXAMPLE).read_text())


SECRETS_ENV = {name: f"generated-{name.lower()}" for name in GENERATED}
"""Stand-ins for an install's generated secrets file (compose's --env-file)."""


def resolved_env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment with the generated secrets and every other interpolation at its default."""
    environment = (service.get("environment") or {}).items()
    return {key: interpolate(str(value), SECRETS_ENV) for key, value in environment}


def image_tag(image: str) -> str:
    """The tag of an image reference (after the last colon of the last path segment)."""
    _, _, tag = image.rpartition("/")[2].partition(":")
    return tag


def test_compose_runs_the_full_stack(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == EXPECTED_SERVICES


def test_every_service_has_a_pinned_or_built_image(root: Path, services: dict[str, dict[str, Any]]) -> None:
    ours = {
        f"{t.fields['repository']}:{tag}"
        for t in build_targets(root)
        if t.kind == "docker_image"
        for tag in t.fields.get("image_tags") or ()
    }
    assert "tickstream/airflow:latest" in ours
    for name, service in services.items():
        image = service.get("image")
        assert isinstance(image, str) and image, f"{name} has no image"
        # No image registry is reachable here: every image is one this repository builds.
        assert image in ours, f"{name}: {image} is not defined by any docker_image target"


def test_no_agpl_object_store(services: dict[str, dict[str, Any]]) -> None:
    assert not [name for name, s in services.items() if "minio" in s["image"].lower()]


def test_depends_on_names_existing_services(services: dict[str, dict[str, Any]]) -> None:
    assert dependency_problems(services) == []
    assert services["streaming"]["depends_on"]["spark-worker-2"]["condition"] == "service_healthy"
    assert services["airflow-scheduler"]["depends_on"]["airflow-init"]["condition"] == (
        "service_completed_successfully"
    )


def test_dependency_check_catches_mistakes() -> None:
    broken: dict[str, dict[str, Any]] = {
        "a": {"image": "x:1", "depends_on": {"b": {"condition": "service_healthy"}, "ghost": {}}},
        "b": {"image": "x:1", "depends_on": ["a"]},
        "c": {"image": "x:1", "depends_on": {"b": {"condition": "service_completed_successfully"}}},
    }
    problems = dependency_problems(broken)
    assert "a depends on unknown service ghost" in problems
    assert "a waits for b to be healthy, which has no healthcheck" in problems
    assert "c waits for b to complete, which is not a one-shot (restart: no)" in problems
    assert "dependency cycle: a -> b -> a" in problems


def test_long_running_services_are_health_checked(services: dict[str, dict[str, Any]]) -> None:
    one_shots = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shots == {"init-topics", "init-buckets", "catalog-init", "airflow-init"}
    unchecked = {name for name, s in services.items() if "healthcheck" not in s} - one_shots
    assert unchecked == {"producer"}  # no endpoint; its exit code and restart policy tell


def test_host_ports_unique_and_local(services: dict[str, dict[str, Any]]) -> None:
    mappings = port_mappings(services, {})
    assert port_problems(mappings) == []
    published = {m.service: m.host_port for m in mappings}
    # Only the UIs: Kafka, S3 and the databases stay on the stack's network.
    assert published == {
        "spark-master": "8090",
        "dashboard": "8501",
        "airflow-api-server": "8080",
    }


def test_port_check_catches_clashes() -> None:
    services: dict[str, dict[str, Any]] = {
        "a": {"ports": ["127.0.0.1:8080:8080"]},
        "b": {"ports": ["127.0.0.1:${PORT:-8080}:80", "9000:9000", "5432"]},
    }
    problems = port_problems(port_mappings(services, {}))
    assert "b and a both publish 127.0.0.1:8080" in problems
    assert "b: port 9000 is not bound to 127.0.0.1" in problems
    assert "b: container port 5432 on a random host port" in problems
    assert port_mappings({"c": {"ports": ["127.0.0.1:${P:-1}:2"]}}, {"P": "3"}) == [
        PortMapping("c", "127.0.0.1", "3", "2")
    ]


def test_interpolations_have_documented_defaults(compose: dict[str, Any], documented: dict[str, str]) -> None:
    assert interpolation_problems(compose, documented, GENERATED) == []
    names = {item.name for value in strings(compose) for item in interpolations(value)}
    assert {
        "TICKSTREAM_S3_SECRET_ACCESS_KEY",
        "TICKSTREAM_COMPOSE_POSTGRES_PASSWORD",
        "TICKSTREAM_COMPOSE_CATALOG_PASSWORD",
    } <= names


def test_every_generated_secret_is_required_never_defaulted(compose: dict[str, Any]) -> None:
    used = {item for value in strings(compose) for item in interpolations(value) if item.name in GENERATED}
    assert {item.name for item in used} == set(GENERATED)  # compose takes each one from the secrets file
    assert all(item.required and item.default is None for item in used)
    assert interpolation_problems({"x": "${TICKSTREAM_S3_SECRET_ACCESS_KEY:-oops}"}, {}, GENERATED) == [
        "${TICKSTREAM_S3_SECRET_ACCESS_KEY} is a generated secret: required, no default"
    ]


def test_interpolation_parsing() -> None:
    assert interpolations("$${spec%%:*} $$HOME ${A:-x:y} ${B-} ${C} $D ${E:?set E}") == [
        Interpolation("A", "x:y"),
        Interpolation("B", ""),
        Interpolation("C", None),
        Interpolation("D", None),
        Interpolation("E", None, required=True),
    ]
    assert interpolate("$${X} ${A:-a} ${B:-b}", {"B": "bee"}) == "${X} a bee"
    problems = interpolation_problems(
        {"x": ["${NEW:-1}", "${TICKSTREAM_LOG_LEVEL:-DEBUG}", "$BARE"]}, {"TICKSTREAM_LOG_LEVEL": "INFO"}
    )
    assert problems == [
        "${BARE} has no default",
        "${BARE} is not listed in .env.example",
        "${NEW} is not listed in .env.example",
        "${TICKSTREAM_LOG_LEVEL} defaults to 'DEBUG', .env.example says 'INFO'",
    ]


def test_env_example_keeps_existing_entries(documented: dict[str, str]) -> None:
    assert "TICKSTREAM_S3_ACCESS_KEY_ID" not in documented  # a placeholder comment: generated per install
    assert documented["TICKSTREAM_STREAMING_MASTER"] == "local[2]"
    assert documented["TICKSTREAM_UP_PRODUCER_RATE"] == "2000"


def test_env_example_is_sourced_by_bash_as_documented_and_holds_no_secret(
    root: Path, documented: dict[str, str]
) -> None:
    shown = subprocess.run(
        ["bash", "-c", f'set -eu; set -a; . "{root / ENV_EXAMPLE}"; env -0'],
        env={"HOME": str(Path.home()), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sourced = dict(entry.split("=", 1) for entry in shown.split("\0") if "=" in entry)
    assert documented["TICKSTREAM_STREAMING_WATERMARK_DELAY"] == "30 seconds"
    for name, value in documented.items():
        assert sourced[name] == os.path.expanduser(value), name
    assert not set(GENERATED) & set(sourced)


def test_streaming_runs_on_the_spark_cluster(root: Path, services: dict[str, dict[str, Any]]) -> None:
    master = services["spark-master"]
    assert "org.apache.spark.deploy.master.Master --host spark-master --port 7077" in master["command"][0]
    # The cluster runs the driver's Spark: master, workers and driver share the streaming image.
    streaming = services["streaming"]
    assert resolved_env(streaming)["TICKSTREAM_STREAMING_MASTER"] == SPARK_MASTER_URL
    workers = [services["spark-worker-1"], services["spark-worker-2"]]
    checkpoint = resolved_env(streaming)["TICKSTREAM_STREAMING_CHECKPOINT_DIR"]
    mount = f"streaming-checkpoints:{checkpoint}"
    assert mount in streaming["volumes"]
    for worker in [master, *workers]:
        assert worker["image"] == streaming["image"] == "tickstream/streaming:latest"
    for worker in workers:
        assert SPARK_MASTER_URL in worker["command"][0]
        # State-store checkpoints are written by executors: they see the same volume at the same path.
        assert mount in worker["volumes"]


def test_clients_reach_kafka_and_s3_inside_the_network(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    brokers = [f"kafka-{n}" for n in (1, 2, 3)]
    for broker in brokers:
        env = resolved_env(services[broker])
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"INTERNAL://{broker}:9092"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
    server = resolved_env(services["seaweedfs"])
    kafka_clients, s3_clients = set(), set()
    for name, service in services.items():
        env = resolved_env(service)
        if "TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS" in env:
            kafka_clients.add(name)
            assert env["TICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"] == ",".join(f"{b}:9092" for b in brokers), name
        if "TICKSTREAM_S3_ENDPOINT_URL" in env and name != "seaweedfs":
            s3_clients.add(name)
            assert env["TICKSTREAM_S3_ENDPOINT_URL"] == "http://seaweedfs:8333", name
            # The server's identities file is written from the same two variables.
            for key in ("TICKSTREAM_S3_ACCESS_KEY_ID", "TICKSTREAM_S3_SECRET_ACCESS_KEY"):
                assert env[key] == server[key], name
    assert kafka_clients == {"producer", "streaming", "dashboard"}
    assert {"streaming", "dashboard", *AIRFLOW_SERVICES} <= s3_clients


def lake_bucket(services: dict[str, dict[str, Any]]) -> str:
    (bucket,) = resolved_env(services["init-buckets"])["BUCKETS"].split()
    return bucket


def test_lake_services_use_the_catalog(services: dict[str, dict[str, Any]]) -> None:
    assert (
        catalog_client_problems(services, LAKE_SERVICES, lake_bucket(services), variables=SECRETS_ENV) == []
    )
    # Exactly the lake services have the catalog: the other Airflow components never open a table.
    assert {
        name for name, s in services.items() if "TICKSTREAM_CATALOG_URI" in resolved_env(s)
    } == LAKE_SERVICES
    assert resolved_env(services["streaming"])["TICKSTREAM_CATALOG_URI"] == (
        "postgresql+psycopg2://iceberg:generated-tickstream_compose_catalog_password@catalog-db:5432/iceberg_catalog"
    )
    assert resolved_env(services["airflow-scheduler"])["TICKSTREAM_CATALOG_WAREHOUSE"] == (
        "s3://tickstream-lake/warehouse"
    )


def test_catalog_database_and_tables_are_provisioned(services: dict[str, dict[str, Any]]) -> None:
    database, init = services["catalog-db"], services["catalog-init"]
    assert database["image"] == services["postgres"]["image"]  # one PostgreSQL version to pin
    # Its own server and volume, apart from Airflow's metadata database.
    assert [str(v).split(":", 1)[0] for v in database["volumes"]] == ["catalog-data"]
    assert resolved_env(database)["POSTGRES_DB"] != resolved_env(services["postgres"])["POSTGRES_DB"]
    # Healthy only once the real server answers over TCP (not the first start's socket-only init server).
    test = " ".join(database["healthcheck"]["test"])
    assert "pg_isready -h 127.0.0.1" in test and "$$POSTGRES_DB" in test
    assert "ports" not in database
    # The tables are created by the product's own provisioning, once the bucket exists.
    assert init["image"] == "tickstream/cli:latest"
    assert init["command"] == ["services", "up", "catalog"]
    assert depends_on(init) == {
        "catalog-db": "service_healthy",
        "init-buckets": "service_completed_successfully",
    }


def test_catalog_check_catches_mistakes() -> None:
    database = {
        "image": "postgres:17.6",
        "environment": {"POSTGRES_USER": "u", "POSTGRES_PASSWORD": "${P:-p@ss}", "POSTGRES_DB": "cat"},
    }
    good = "postgresql+psycopg2://u:p@ss@catalog-db:5432/cat"
    services: dict[str, dict[str, Any]] = {
        "catalog-db": database,
        "catalog-init": {"environment": {"TICKSTREAM_CATALOG_URI": good}},
        "job": {
            "environment": [
                "TICKSTREAM_CATALOG_URI=postgresql://u:other@postgres:5432/cat",
                "TICKSTREAM_CATALOG_WAREHOUSE=s3://other/warehouse",
                "TICKSTREAM_S3_ENDPOINT_URL=http://seaweedfs:8333",
            ],
            "depends_on": ["catalog-db", "catalog-init"],
        },
    }
    assert catalog_client_problems(services, {"job", "reader"}, "lake") == [
        "catalog-db has no healthcheck",
        "catalog-db: the password is not URL-safe, but it is part of TICKSTREAM_CATALOG_URI",
        "catalog-init: no TICKSTREAM_CATALOG_WAREHOUSE",
        "catalog-init: reads table files on S3 but has no TICKSTREAM_S3_* settings",
        "catalog-init does not wait for catalog-db to be healthy",
        # wrong host, and a bare postgresql:// (psycopg 3 under SQLAlchemy 2.1)
        "job: TICKSTREAM_CATALOG_URI postgresql://u:***@postgres:5432/cat"
        " is not postgresql+psycopg2://u:***@catalog-db:5432/cat",
        "job: TICKSTREAM_CATALOG_WAREHOUSE s3://other/warehouse is not s3://lake/warehouse",
        "job does not wait for catalog-db to be healthy",
        "job does not wait for catalog-init to create the tables",
        "reader: no such service",
    ]
    assert catalog_client_problems({}, (), "lake") == ["no catalog-db service"]


def test_no_s3a_or_hadoop_aws(root: Path) -> None:
    # The lake is read and written through Iceberg's S3FileIO; streaming checkpoints are on a shared volume.
    text = (root / COMPOSE_FILE).read_text().lower()
    assert "s3a" not in text and "hadoop-aws" not in text


def test_airflow_uses_postgres(services: dict[str, dict[str, Any]]) -> None:
    postgres = resolved_env(services["postgres"])
    expected = (
        f"postgresql+psycopg2://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    commands = set()
    for name in AIRFLOW_SERVICES:
        service = services[name]
        env = resolved_env(service)
        assert service["image"] == "tickstream/airflow:latest", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == expected, name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-api-server:8080/execution/"
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False", name
        commands.add(" ".join(service["command"]))
    init = services["airflow-init"]
    script = " ".join(init["command"])
    assert init["entrypoint"] == ["bash", "-c"]
    assert script.startswith("umask 077") and script.endswith("exec airflow db migrate")
    assert (
        resolved_env(init)["TICKSTREAM_AIRFLOW_ADMIN_PASSWORD"]
        == SECRETS_ENV["TICKSTREAM_AIRFLOW_ADMIN_PASSWORD"]
    )
    assert commands == {script, "api-server", "scheduler", "dag-processor"}
    assert services["airflow-init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    secrets = {resolved_env(services[name])["AIRFLOW__API_AUTH__JWT_SECRET"] for name in AIRFLOW_SERVICES}
    assert len(secrets) == 1


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    used = {
        str(volume).split(":", 1)[0]
        for service in services.values()
        for volume in service.get("volumes") or ()
        if not str(volume).startswith((".", "/"))
    }
    assert used == set(compose["volumes"])


def test_postgres_drivers_are_pinned_with_hashes(root: Path) -> None:
    text = (root / "deploy/airflow/requirements-postgres.txt").read_text().replace("\\\n", " ")
    lines = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    pins = {words[0].partition("==")[0]: words[1:] for words in lines}
    assert set(pins) == {"psycopg2-binary", "asyncpg"}
    for name, options in pins.items():
        hashes = [o for o in options if re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", o)]
        assert len(hashes) == len(options) >= 2, name  # one wheel per platform (x86_64, aarch64)
    assert all("==" in words[0] for words in lines)
