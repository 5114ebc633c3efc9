"""Environment-driven configuration shared by every component.

Each class reads its own environment prefix; defaults are local-only values for the
platform started by `tickstream up` (see .env.example and the README's configuration
reference). Nothing here is a real secret.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickstream.topology import LAKE_BUCKET


class PathsSettings(BaseSettings):
    """Where the platform keeps downloads (cache) and runtime state (data, logs, PID files)."""

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_")

    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "tickstream",
        description="Downloaded artefacts: Kafka jars, SeaweedFS binary, Spark connector jars.",
    )
    home: Path = Field(
        default=Path.home() / ".local" / "share" / "tickstream",
        description="Runtime state: service data, logs and PID files.",
    )

    @property
    def logs_dir(self) -> Path:
        """Directory holding one log file per service."""
        return self.home / "logs"

    @property
    def data_dir(self) -> Path:
        """Directory holding each service's persistent data."""
        return self.home / "data"

    @property
    def run_dir(self) -> Path:
        """Directory holding PID files."""
        return self.home / "run"

    def spark_jars_dir(self, spark_version: str) -> Path:
        """Where the connector jars (Kafka, Iceberg, JDBC drivers) for a Spark version are cached."""
        return self.cache_dir / f"spark-jars-{spark_version}"


class KafkaSettings(BaseSettings):
    """How clients reach Kafka and how the local broker listens."""

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_KAFKA_")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Comma-separated host:port list clients connect to."
    )
    port: int = Field(default=9092, description="Client port of the local broker.")
    controller_port: int = Field(default=9093, description="KRaft controller port of the local broker.")
    heap: str = Field(default="1g", description="JVM heap (-Xms/-Xmx) of the local broker.")


LAKE_ROOT_VARIABLE = "TICKSTREAM_LAKE_ROOT"


class LakeRootSettings(BaseSettings):
    """The lake root, shared by the settings of every component that reads or writes the lake's plain objects
    (streaming, compaction, analytics, dashboard): one variable, TICKSTREAM_LAKE_ROOT, whatever the
    component's own prefix."""

    lake_root: str = Field(
        default="",
        validation_alias=AliasChoices("lake_root", LAKE_ROOT_VARIABLE),
        description=(
            "Where the plain objects beside the tables are (the streaming status, dbt's run results, the "
            "published marts): s3://bucket[/prefix] or a local directory; empty = s3://<TICKSTREAM_S3_BUCKET>."
        ),
    )


class S3Settings(BaseSettings):
    """How every component reaches the S3-compatible object store (SeaweedFS, MinIO or AWS S3)."""

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_S3_")

    endpoint_url: str = Field(
        default="http://127.0.0.1:8333", description="S3 endpoint; empty string means AWS' default."
    )
    access_key_id: str = Field(default="tickstream", description="Access key (local-only default).")
    secret_access_key: str = Field(
        default="tickstream-local-secret", description="Secret key (local-only default)."
    )
    region: str = Field(default="us-east-1", description="Signing region.")
    path_style: bool = Field(default=True, description="Path-style addressing (SeaweedFS, MinIO).")
    bucket: str = Field(default=LAKE_BUCKET, description="Bucket holding the Parquet lake.")


def _default_catalog_uri() -> str:
    return f"sqlite:///{PathsSettings().data_dir / 'catalog' / 'iceberg_catalog.db'}"


def _default_warehouse() -> str:
    return f"s3://{S3Settings().bucket}/warehouse"


class CatalogSettings(BaseSettings):
    """Where the lake's Iceberg catalog is: Iceberg's JDBC catalog on SQLite (local) or PostgreSQL."""

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_CATALOG_")

    uri: str = Field(
        default_factory=_default_catalog_uri,
        description=(
            "SQLAlchemy URL of the catalog database: sqlite:////<path> (default: "
            "<home>/data/catalog/iceberg_catalog.db) or postgresql://<user>:<password>@<host>:5432/<db>."
        ),
    )
    name: str = Field(default="lake", description="Catalog name (Spark's catalog; the catalog_name column).")
    namespace: str = Field(default="tickstream", description="Namespace (database) of the lake's tables.")
    warehouse: str = Field(
        default_factory=_default_warehouse,
        description="Where new tables keep their files; default s3://<TICKSTREAM_S3_BUCKET>/warehouse.",
    )

    def identifier(self, table: str) -> str:
        """`namespace.table`: the table's name inside the catalog (pyiceberg, DuckDB)."""
        return f"{self.namespace}.{table}"

    def spark_identifier(self, table: str) -> str:
        """`catalog.namespace.table`: the table's name in Spark SQL."""
        return f"{self.name}.{self.namespace}.{table}"


class DagSettings(BaseSettings):
    """What the hourly Airflow DAG (src/dags/compaction_dag.py) runs, from the worker's environment.

    The DAG runs in Airflow's own environment and reads these variables itself; every launcher (`tickstream
    up`, the tests) sets them with `environment(DagSettings(...))`, and a DAG test keeps the names and the
    defaults in step with the DAG's.
    """

    model_config = SettingsConfigDict(env_prefix="TICKSTREAM_")

    compaction_command: str = Field(
        default="python -m compaction.job", description="Command line of the compaction job (its PEX)."
    )
    analytics_command: str = Field(
        default="python -m analytics.run", description="Command line of the analytics CLI (its PEX)."
    )
    compaction_retry_delay_s: float = Field(
        default=120.0, gt=0, description="First retry delay of the compaction tasks (doubles up to 30 min)."
    )


def environment(*settings: BaseSettings) -> dict[str, str]:
    """The environment variables under which a child process reads these same settings (each field under
    its class's prefix, e.g. TICKSTREAM_S3_ENDPOINT_URL, or under the variable its alias names, e.g.
    TICKSTREAM_LAKE_ROOT): the one way to hand settings to a subprocess."""
    env = {}
    for each in settings:
        prefix = each.model_config.get("env_prefix") or ""
        for name, value in each.model_dump().items():
            alias = type(each).model_fields[name].validation_alias
            variable = alias.choices[-1] if isinstance(alias, AliasChoices) else f"{prefix}{name}"
            if value is not None:
                env[str(variable).upper()] = str(value)
    return env


def invalid_settings(exc: ValidationError) -> str:
    """A settings validation error as one line for a command's usage error: `field: problem; ...`."""
    return "invalid setting: " + "; ".join(
        f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()
    )
