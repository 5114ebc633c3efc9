"""Local services (Kafka, S3 on SeaweedFS, Spark connector jars): install, start, check, stop."""
