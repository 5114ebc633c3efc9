"""Fixtures for the producer's tests: a running local Kafka from the shared services plugin."""

from tickstream.testing.services import (  # noqa: F401
    kafka_bootstrap,
    kafka_service,
    services_paths,
)
