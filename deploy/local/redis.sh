#!/usr/bin/env bash
# A local Redis for maas: start | stop | status | wait.
# Debian's redis-server on 127.0.0.1:$MAAS_REDIS_PORT with AOF (appendfsync everysec),
# data and log under $MAAS_STATE_DIR/redis. Stopped by pid, never by name.
# hash-max-listpack-value 256: a one-row inference result is ~80 bytes, over Redis's default
# of 64, which made every job record a hash table: 924 bytes a record instead of 392, and AOF
# rewrites (a full-core child process for seconds under load) 25-30% longer (measured, 300 k
# records: 320 -> 139 MB, 2.3 -> 1.8 s).
set -euo pipefail
source "$(dirname "$0")/common.sh"
dir="$MAAS_STATE_DIR/redis"
pidfile="$dir/redis.pid"
logfile="$dir/redis.log"

# redis-cli as the admin user when ACLs are on (the password through REDISCLI_AUTH, not argv)
rcli() {
  if [[ "$MAAS_REDIS_AUTH" == acl ]]; then
    REDISCLI_AUTH="$(secret_file redis-admin.pass)" redis-cli --no-auth-warning --user admin \
      -h 127.0.0.1 -p "$MAAS_REDIS_PORT" "$@"
  else
    redis-cli -h 127.0.0.1 -p "$MAAS_REDIS_PORT" "$@"
  fi
}
ping() { rcli ping 2>/dev/null | grep -q PONG; }

# MAAS_REDIS_AUTH=acl: ACL users in $dir/users.acl (made on the first start; Redis rewrites it
# on ACL SAVE, with hashed passwords): default off; admin (the scripts); maas (workers,
# coordinator, the operator's CLI: maas's keys and channels, no dangerous commands but ACL,
# which `maas tenant create` needs for a tenant's read-only user). The maas programs' login
# goes to maas.conf.
acl_setup() {
  if [[ "$MAAS_REDIS_AUTH" == acl ]]; then
    if [[ ! -s "$dir/users.acl" ]]; then
      (umask 077 && cat > "$dir/users.acl" <<ACL
user default off
user admin on >$(secret_file redis-admin.pass) ~* &* +@all
user maas on >$(secret_file redis-maas.pass) ~maas:* &maas:* &__redis__:invalidate +@all -@dangerous +acl
ACL
      )
    fi
    (umask 077 && printf 'redis.user=maas\nredis.password=%s\n' "$(secret_file redis-maas.pass)" \
      > "$MAAS_CRED_DIR/maas-redis.part")
    acl_args=(--aclfile "$dir/users.acl")
  else
    [[ "$MAAS_REDIS_AUTH" == none ]] || die "MAAS_REDIS_AUTH=$MAAS_REDIS_AUTH: none or acl"
    rm -f "$MAAS_CRED_DIR/maas-redis.part"
    acl_args=()
  fi
  maas_conf_refresh
}

wait_ready() {
  local deadline=$((SECONDS + ${1:-30}))
  while ((SECONDS < deadline)); do
    ping && return 0
    # a daemonized redis-server writes its pid file just after it forks: a missing
    # file means "still starting"; a file naming a dead process means it exited
    if [[ -s "$pidfile" ]] && ! live_pid "$pidfile" redis-server >/dev/null; then break; fi
    sleep 0.1
  done
  log "redis did not answer PING on 127.0.0.1:$MAAS_REDIS_PORT"
  tail_log "$logfile"
  return 1
}

case "${1:-}" in
  start)
    command -v redis-server >/dev/null || die "redis-server is not installed (deploy/install-deps.sh)"
    mkdir -p "$dir"
    if pid="$(live_pid "$pidfile" redis-server)"; then
      log "redis already running (pid $pid)"
    else
      rm -f "$pidfile" # a kill -9 leaves the old one behind; it must not pass for the new one
      acl_setup
      redis-server --bind 127.0.0.1 --port "$MAAS_REDIS_PORT" --protected-mode yes \
        --dir "$dir" --appendonly yes --appendfsync everysec --save "" \
        --hash-max-listpack-value 256 "${acl_args[@]}" \
        --daemonize yes --pidfile "$pidfile" --logfile "$logfile"
      for ((i = 0; i < 50; i++)); do [[ -s "$pidfile" ]] && break; sleep 0.1; done
    fi
    wait_ready 30 || exit 1
    log "redis ready on 127.0.0.1:$MAAS_REDIS_PORT (pid $(cat "$pidfile"), AOF everysec, data in $dir)"
    ;;
  stop) stop_pid "$pidfile" redis-server redis ;;
  status)
    if pid="$(live_pid "$pidfile" redis-server)" && ping; then
      echo "redis: running, pid $pid, 127.0.0.1:$MAAS_REDIS_PORT"
    else
      echo "redis: not running"; exit 1
    fi ;;
  wait) wait_ready "${2:-30}" ;;
  *) echo "usage: $0 start|stop|status|wait [seconds]" >&2; exit 2 ;;
esac
