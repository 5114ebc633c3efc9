"""Fixtures every test under src/python can use: running local Kafka and S3, Spark's jars, lakes of a test's
own (`testkit.services`, loaded as a pytest plugin; its BUILD target is a dependency of this
file's)."""

pytest_plugins = ["testkit.services"]
