"""Spark connector jars (Kafka source/sink, S3A) that pyspark does not bundle, cached for `spark.jars`."""

from __future__ import annotations

from pathlib import Path

from tickstream.services.install import deploy_dir, maven_install, pom_property
from tickstream.settings import PathsSettings


def spark_jars_dir(paths: PathsSettings | None = None) -> Path:
    """Where the connector jars for the pinned Spark version are cached."""
    pom = deploy_dir() / "spark" / "pom.xml"
    return (paths or PathsSettings()).cache_dir / f"spark-jars-{pom_property(pom, 'spark.version')}"


def install_spark_jars(paths: PathsSettings | None = None) -> list[Path]:
    """Download the connector jars unless complete in the cache; return their paths (sorted)."""
    paths = paths or PathsSettings()
    target = maven_install(
        deploy_dir() / "spark" / "pom.xml",
        spark_jars_dir(paths),
        "Spark connector jars",
        paths.logs_dir / "install-spark-jars.log",
    )
    return sorted(target.glob("*.jar"))


def spark_jars_conf(paths: PathsSettings | None = None) -> str:
    """The comma-separated value for the `spark.jars` setting (installing the jars if needed)."""
    return ",".join(str(jar) for jar in install_spark_jars(paths))
