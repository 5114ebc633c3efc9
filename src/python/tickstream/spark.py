"""Spark's access to the lake: the Iceberg catalog settings and session creation (the spark resolve only).

`iceberg_conf` is the one place Spark is told where the lake's catalog and files are; the streaming job, the
compaction job, the rebuild and the tests all build their sessions with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlparse

from pyspark.sql import SparkSession

from tickstream.catalog import jdbc_catalog_properties
from tickstream.settings import CatalogSettings, S3Settings


def iceberg_conf(catalog: CatalogSettings, s3: S3Settings) -> dict[str, str]:
    """Spark settings for the lake's Iceberg catalog (Iceberg's JdbcCatalog) and its files on S3.

    Tables in an s3:// warehouse are read and written with Iceberg's S3FileIO (path-style addressing for
    SeaweedFS and MinIO); a file:// warehouse (tests) uses Hadoop's local filesystem. The catalog cache is
    off, so every query sees the newest commit of the other writers (streaming, compaction, rebuilds); the
    manifest cache is on (manifests are immutable).
    """
    prefix = f"spark.sql.catalog.{catalog.name}"
    conf = {
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "jdbc",
        f"{prefix}.warehouse": catalog.warehouse,
        f"{prefix}.cache-enabled": "false",
        # Manifests never change once written: keep their contents in memory, so planning a scan of the
        # open hour (every micro-batch's de-duplication reads its recent files) does not re-read them all.
        f"{prefix}.io.manifest.cache-enabled": "true",
        **{f"{prefix}.{key}": value for key, value in jdbc_catalog_properties(catalog).items()},
    }
    if urlparse(catalog.warehouse).scheme == "s3":
        conf.update(
            {
                f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
                f"{prefix}.s3.access-key-id": s3.access_key_id,
                f"{prefix}.s3.secret-access-key": s3.secret_access_key,
                f"{prefix}.s3.path-style-access": str(s3.path_style).lower(),
                f"{prefix}.client.region": s3.region,
            }
        )
        if s3.endpoint_url:
            conf[f"{prefix}.s3.endpoint"] = s3.endpoint_url
    return conf


def build_spark_session(conf: Mapping[str, str]) -> SparkSession:
    """Create (or reuse) the SparkSession with `conf`."""
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
