#!/usr/bin/env bash
# The local maas stack: up | down | status.
#   up:   Redis (AOF) and a KRaft Kafka broker on 127.0.0.1, the topics
#         (build/bin/maas-kafka-admin create-topics, $MAAS_PARTITIONS partitions: 6), $MAAS_WORKERS (2) workers and
#         the coordinator's HTTP API on 127.0.0.1:$MAAS_COORDINATOR_PORT (18080), with
#         authentication on: API keys in $MAAS_STATE_DIR/credentials/ (admin.key, and
#         demo.key for the tenant "demo"), made on the first `up`; Kafka with SASL SCRAM
#         and ACLs, Redis with ACL users (MAAS_KAFKA_AUTH, MAAS_REDIS_AUTH; see README.md).
#   down: stops what `up` started, by pid; safe to call twice.
# Ports, folders and the topic prefix come from the environment (deploy/local/common.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# secure by default: the broker with SASL SCRAM and ACLs, Redis with ACL users (a state folder
# made otherwise keeps its way; MAAS_KAFKA_AUTH=none MAAS_REDIS_AUTH=none for an open stack)
export MAAS_KAFKA_AUTH_DEFAULT=scram MAAS_REDIS_AUTH_DEFAULT=acl
source "$here/common.sh"
admin="${MAAS_KAFKA_ADMIN:-$MAAS_ROOT/build/bin/maas-kafka-admin}"
maas="${MAAS_CLI:-$MAAS_ROOT/build/bin/maas}"

case "${1:-}" in
  up)
    "$here/redis.sh" start
    "$here/kafka.sh" start
    export MAAS_CONFIG="$MAAS_CRED_DIR/maas.conf" # the service login the two just wrote
    [[ "$MAAS_KAFKA_AUTH" == scram ]] && export MAAS_KAFKA_SCRAM_CMD="$here/kafka.sh scram-user"
    # MAAS_PARTITIONS: the job topics' partition count (default 6: at most 6 workers share
    # a topic); topics made with fewer grow to it, none shrinks
    "$admin" --brokers "$MAAS_KAFKA_HOST:$MAAS_KAFKA_PORT" create-topics --timeout 30 \
      ${MAAS_PARTITIONS:+--partitions "$MAAS_PARTITIONS"} |
      while read -r topic parts; do log "topic $topic: $parts partitions"; done
    "$here/workers.sh" start "${MAAS_WORKERS:-2}"
    "$here/coordinator.sh" start
    # API keys (the coordinator runs with authentication on): an operator's key and a demo
    # tenant's, made once, in 0600 files of the state directory; never on a command line
    cred="$MAAS_STATE_DIR/credentials"
    mkdir -p "$cred" && chmod 700 "$cred"
    export MAAS_KAFKA_BROKERS="$MAAS_KAFKA_HOST:$MAAS_KAFKA_PORT" MAAS_REDIS_URL="$(maas_redis_url)"
    [[ -s "$cred/admin.key" ]] || "$maas" tenant admin-key --key-file "$cred/admin.key" 2>/dev/null
    if [[ ! -s "$cred/demo.key" ]]; then
      "$maas" tenant create demo --key-file "$cred/demo.key" --client-conf "$cred/demo.conf" \
        2>/dev/null || "$maas" tenant key-rotate demo --grace-s 0 --key-file "$cred/demo.key" 2>/dev/null
    fi
    log "authentication: HTTP API keys; Kafka $MAAS_KAFKA_AUTH; Redis $MAAS_REDIS_AUTH"
    log "credentials in $cred: admin.key (operators' API key), demo.key and demo.conf (tenant demo:"
    log "  API key, Kafka login, topics, Redis user), maas.conf (the services' login, MAAS_CONFIG)"
    log "stack up: MAAS_KAFKA_BROKERS=$MAAS_KAFKA_HOST:$MAAS_KAFKA_PORT MAAS_REDIS_URL=$(maas_redis_url)"
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
