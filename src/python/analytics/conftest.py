"""Fixtures for the analytics tests: the running local S3 server and lakes of a test's own."""

from tickstream.testing.services import (  # noqa: F401
    local_lake,
    s3_lake,
    s3_service,
    s3_settings,
    services_paths,
)
