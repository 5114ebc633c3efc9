#!/bin/bash
# Kafka broker (KRaft) from the Maven Central jars in /opt/kafka/libs.
#
#   kafka-entrypoint.sh            render server.properties from KAFKA_* variables (KAFKA_NODE_ID=1 ->
#                                  node.id=1), format the storage once with CLUSTER_ID, run the broker
#   kafka-entrypoint.sh CLASS ARGS run a Kafka tool, e.g. org.apache.kafka.tools.TopicCommand --list ...
set -euo pipefail
libs=/opt/kafka/libs
config=/opt/kafka/config
java_opts=(-Djava.awt.headless=true "-Dlog4j2.configurationFile=$config/log4j2.properties")

if [[ $# -gt 0 ]]; then
  exec java -Xmx256m "${java_opts[@]}" -cp "$libs/*" "$@"
fi

: "${CLUSTER_ID:?CLUSTER_ID is required (the same for every broker of the cluster)}"
: "${KAFKA_LOG_DIRS:?KAFKA_LOG_DIRS is required}"
properties="$config/server.properties"
: > "$properties"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS) ;;
    KAFKA_*) key="${name#KAFKA_}"; key="${key,,}"; echo "${key//_/.}=$value" >> "$properties" ;;
  esac
done < <(env)
if [[ ! -f "$KAFKA_LOG_DIRS/meta.properties" ]]; then
  java -Xmx256m "${java_opts[@]}" -cp "$libs/*" kafka.tools.StorageTool format --ignore-formatted \
    -t "$CLUSTER_ID" -c "$properties"
fi
# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS holds several options
exec java ${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m} -XX:+UseG1GC "${java_opts[@]}" -cp "$libs/*" kafka.Kafka "$properties"
