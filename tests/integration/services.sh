#!/usr/bin/env bash
# Starts (start) or stops (stop) a real Redis and a real Kafka broker for the integration tests,
# through the deploy/local scripts, on ports and in a state folder of their own so a user's
# local stack is left alone. Used as ctest fixtures (services_up / services_down).
# usage: services.sh start|stop STATE_DIR ADMIN_BINARY
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
local="$here/../../deploy/local"
export MAAS_STATE_DIR="$2" MAAS_KAFKA_ADMIN="$3"
export MAAS_KAFKA_PORT="${MAAS_IT_KAFKA_PORT:-29092}"
export MAAS_KAFKA_CONTROLLER_PORT="${MAAS_IT_KAFKA_CONTROLLER_PORT:-29093}"
export MAAS_REDIS_PORT="${MAAS_IT_REDIS_PORT:-26379}"
# with authentication, as the local stack runs: SASL SCRAM + ACLs, Redis ACL users; the tests
# log in with $STATE_DIR/credentials/maas.conf (MAAS_CONFIG in their environment).
# MAAS_IT_AUTH=none runs them open.
if [[ "${MAAS_IT_AUTH:-on}" == none ]]; then
  export MAAS_KAFKA_AUTH=none MAAS_REDIS_AUTH=none
else
  export MAAS_KAFKA_AUTH=scram MAAS_REDIS_AUTH=acl
fi
case "$1" in
  start)
    # a clean slate: stop leftovers of an earlier run (by their pid files), drop their data
    "$local/kafka.sh" stop || true
    "$local/redis.sh" stop || true
    rm -rf "$MAAS_STATE_DIR"
    t0=$SECONDS
    "$local/redis.sh" start
    "$local/kafka.sh" start
    export MAAS_CONFIG="$MAAS_STATE_DIR/credentials/maas.conf"
    "$MAAS_KAFKA_ADMIN" --brokers "127.0.0.1:$MAAS_KAFKA_PORT" create-topics --timeout 30 >/dev/null
    echo "services up in $((SECONDS - t0)) s: kafka 127.0.0.1:$MAAS_KAFKA_PORT, redis 127.0.0.1:$MAAS_REDIS_PORT (kafka $MAAS_KAFKA_AUTH, redis $MAAS_REDIS_AUTH)"
    ;;
  stop)
    "$local/kafka.sh" stop
    "$local/redis.sh" stop
    ;;
  *) echo "usage: $0 start|stop STATE_DIR ADMIN_BINARY" >&2; exit 2 ;;
esac
