#!/usr/bin/env bash
# The local maas stack: up | down | status.
#   up:   Redis (AOF) and a KRaft Kafka broker on 127.0.0.1, the topics
#         (build/bin/maas-kafka-admin create-topics), $MAAS_WORKERS (2) workers and
#         the coordinator's HTTP API on 127.0.0.1:$MAAS_COORDINATOR_PORT (18080).
#   down: stops what `up` started, by pid; safe to call twice.
# Ports, folders and the topic prefix come from the environment (deploy/local/common.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/common.sh"
admin="${MAAS_KAFKA_ADMIN:-$MAAS_ROOT/build/bin/maas-kafka-admin}"

case "${1:-}" in
  up)
    "$here/redis.sh" start
    "$here/kafka.sh" start
    "$admin" --brokers "127.0.0.1:$MAAS_KAFKA_PORT" create-topics --timeout 30 |
      while read -r topic parts; do log "topic $topic: $parts partitions"; done
    "$here/workers.sh" start "${MAAS_WORKERS:-2}"
    "$here/coordinator.sh" start
    log "stack up: MAAS_KAFKA_BROKERS=127.0.0.1:$MAAS_KAFKA_PORT MAAS_REDIS_URL=redis://127.0.0.1:$MAAS_REDIS_PORT"
    log "logs: $MAAS_STATE_DIR/{kafka/kafka.log,redis/redis.log,workers/w*.log}; stop with: deploy/local/stack.sh down"
    ;;
  down)
    "$here/coordinator.sh" stop
    "$here/workers.sh" stop
    "$here/kafka.sh" stop
    "$here/redis.sh" stop
    ;;
  status)
    rc=0
    "$here/coordinator.sh" status || rc=1
    "$here/workers.sh" status || rc=1
    "$here/redis.sh" status || rc=1
    "$here/kafka.sh" status || rc=1
    exit $rc
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
