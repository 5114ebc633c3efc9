"""The Spark Structured Streaming job: Kafka ticks to validated ticks, 1-minute bars and quarantine on S3.

See docs/lake.md for the lake layout it writes and the exactly-once argument.
"""
