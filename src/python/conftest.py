"""Fixtures every test under src/python can use: running local Kafka and S3, Spark's jars, lakes of a test's
own (`tickstream.testing.services`, loaded once as a pytest plugin)."""

import tickstream.testing.services  # noqa: F401  (the import lets Pants infer the plugin's dependency)

pytest_plugins = ["tickstream.testing.services"]
