#!/usr/bin/env bash
# The services image's entrypoint (deploy/compose): kafka | redis, each started by the local
# stack's script (deploy/local/kafka.sh, redis.sh) on its container's address, then kept in the
# foreground until SIGTERM stops it by pid. Both write the logins they make into the shared
# credentials folder ($MAAS_STATE_DIR/credentials, the compose file's "state" volume); the kafka
# container then makes the topics and the operator's API key, hands the folder to the maas user
# (uid 10001, the maas image's: the coordinator and workers read their login there) and marks it
# ready — the coordinator and workers wait for that mark.
set -euo pipefail
role="${1:-}"
here=/opt/maas/deploy/local
source "$here/common.sh"
cred="$MAAS_CRED_DIR"
case "$role" in
  kafka) pidfile="$MAAS_STATE_DIR/kafka/kafka.pid" want=kafka.Kafka ;;
  redis) pidfile="$MAAS_STATE_DIR/redis/redis.pid" want=redis-server ;;
  *) echo "usage: entry.sh kafka|redis" >&2; exit 2 ;;
esac
mkdir -p "$cred" && chmod 700 "$cred"
[[ "$role" == kafka ]] && rm -f "$cred/ready" # a mark from an earlier run does not count
trap '"$here/$role.sh" stop; exit 0' TERM INT
"$here/$role.sh" start
if [[ "$role" == kafka ]]; then
  export MAAS_CONFIG="$cred/maas.conf" MAAS_KAFKA_BROKERS="$MAAS_KAFKA_HOST:$MAAS_KAFKA_PORT"
  "$MAAS_KAFKA_ADMIN" --brokers "$MAAS_KAFKA_BROKERS" create-topics --timeout 30 \
    ${MAAS_PARTITIONS:+--partitions "$MAAS_PARTITIONS"} |
    while read -r topic parts; do log "topic $topic: $parts partitions"; done
  # Redis's logins (its container writes them into the same folder): wait, then rebuild the
  # programs' settings files from both parts
  for ((t = 0; t < 1200; t++)); do [[ -s "$cred/worker-redis.part" ]] && break; sleep 0.1; done
  [[ -s "$cred/worker-redis.part" ]] || die "redis wrote no login within 120 s"
  maas_conf_refresh
  MAAS_REDIS_URL="$(maas_redis_url)"
  export MAAS_REDIS_URL
  [[ -s "$cred/admin.key" ]] || "$MAAS_CLI" tenant admin-key --key-file "$cred/admin.key" 2>/dev/null ||
    die "could not make the operator's API key"
  chown -R 10001:10001 "$cred"
  touch "$cred/ready"
  log "ready: topics made, logins in $cred (the state volume), admin.key there"
fi
while pid="$(live_pid "$pidfile" "$want")"; do
  sleep 1 &
  wait $! || true
done
log "$role exited"
exit 1
