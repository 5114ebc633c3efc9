"""Fixtures for the kernel's tests: a lake of each test's own."""

from tickstream.testing.services import local_lake  # noqa: F401
