"""Spark connector jars (Kafka source/sink, S3A) that pyspark does not bundle, cached for `spark.jars`."""

from __future__ import annotations

from pathlib import Path

from ops.services.install import deploy_dir, maven_install, pom_property
from tickstream.settings import PathsSettings


def install_spark_jars(paths: PathsSettings) -> list[Path]:
    """Download the connector jars of the pom's Spark version unless complete in the cache; return their
    paths (sorted)."""
    pom = deploy_dir() / "spark" / "pom.xml"
    target = maven_install(
        pom,
        paths.spark_jars_dir(pom_property(pom, "spark.version")),
        "Spark connector jars",
        paths.logs_dir / "install-spark-jars.log",
    )
    return sorted(target.glob("*.jar"))
