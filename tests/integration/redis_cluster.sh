#!/usr/bin/env bash
# A real Redis Cluster for the cluster variants of the integration tests: 3 masters + 3
# replicas (deploy/local/redis.sh with MAAS_REDIS_CLUSTER=1) on 127.0.0.1:21001..21006 (bus ports +1000, below the ephemeral range), in a
# state folder of its own, with the services fixture's credentials (the same passwords: the
# tests' maas.conf logs in to both). Used as a ctest fixture (redis_cluster_up / _down).
# usage: redis_cluster.sh start|stop STATE_DIR CRED_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export MAAS_STATE_DIR="$2" MAAS_CRED_DIR="$3" MAAS_REDIS_CLUSTER=1
export MAAS_REDIS_PORT="${MAAS_IT_REDIS_CLUSTER_PORT:-21001}" MAAS_REDIS_NODE_TIMEOUT=2000
if [[ "${MAAS_IT_AUTH:-on}" == none ]]; then export MAAS_REDIS_AUTH=none; else export MAAS_REDIS_AUTH=acl; fi
case "$1" in
  start)
    "$here/../../deploy/local/redis.sh" stop || true # leftovers of an earlier run, by pid
    rm -rf "$MAAS_STATE_DIR"
    t0=$SECONDS
    "$here/../../deploy/local/redis.sh" start
    echo "redis cluster up in $((SECONDS - t0)) s"
    ;;
  stop) "$here/../../deploy/local/redis.sh" stop ;;
  *) echo "usage: $0 start|stop STATE_DIR CRED_DIR" >&2; exit 2 ;;
esac
