"""Fixtures for the end-to-end test: the running local Kafka and S3 services and Spark's connector jars."""

from tickstream.testing.services import (  # noqa: F401
    kafka_bootstrap,
    kafka_service,
    s3_service,
    s3_settings,
    services_paths,
    spark_connector_jars,
)
