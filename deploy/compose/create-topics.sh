#!/usr/bin/env bash
# Creates cvm's topics with Kafka's own tool (in the apache/kafka image), the
# way `kafka.create_topics = true` would: every topic with $PARTITIONS
# partitions — the input topics and the changelog must have the same count,
# which cvm checks at start — and the five that hold the latest value per key
# compacted (config documents, their status, campaign totals, the state
# changelog, the publisher's progress). Idempotent: existing topics are kept.
set -euo pipefail
BOOTSTRAP="${BOOTSTRAP:-localhost:9092}"
PARTITIONS="${PARTITIONS:-8}"
REPLICATION_FACTOR="${REPLICATION_FACTOR:-1}"
KAFKA_TOPICS="${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"

plain=(
  cvm.events.purchases cvm.events.app cvm.requests.erasure cvm.links.device
  cvm.offers.push cvm.offers.stories cvm.decisions cvm.dlq cvm.erasure.confirmations
)
compacted=(cvm.config.offers cvm.config.status cvm.stats cvm.changelog.state cvm.publisher.progress)

create() { # topic, extra arguments…
  local topic="$1"; shift
  "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$topic" \
    --partitions "$PARTITIONS" --replication-factor "$REPLICATION_FACTOR" "$@"
}
for t in "${plain[@]}"; do create "$t"; done
for t in "${compacted[@]}"; do create "$t" --config cleanup.policy=compact; done
"$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --list
