"""Fixtures for the analytics tests: the running local S3 server (integration tests)."""

from tickstream.testing.services import (  # noqa: F401
    s3_service,
    s3_settings,
    services_paths,
)
