"""Fixtures for the services' tests: the shared local-services plugin."""

from tickstream.testing.services import (  # noqa: F401
    kafka_bootstrap,
    kafka_service,
    private_kafka,
    private_s3,
    s3_service,
    s3_settings,
    services_paths,
)
