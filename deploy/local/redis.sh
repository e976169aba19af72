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

# MAAS_REDIS_AUTH=acl: ACL users, kept by Redis in $dir/users.acl: default off and admin (the
# scripts) from the first start; the service users set (again) at every start, through
# redis-cli's stdin (never argv), then saved: maas — the coordinator and the operator's CLI:
# maas's keys and channels, no dangerous command but ACL, which `maas tenant create` needs for
# a tenant's read-only user; worker — the same without ACL. Their logins go to maas.conf and
# worker.conf (maas_conf_refresh).
acl_setup() {
  if [[ "$MAAS_REDIS_AUTH" == acl ]]; then
    if [[ ! -s "$dir/users.acl" ]]; then
      (umask 077 && printf 'user default off\nuser admin on >%s ~* &* +@all\n' \
        "$(secret_file redis-admin.pass)" > "$dir/users.acl")
    fi
    for role in maas worker; do
      (umask 077 && printf 'redis.user=%s\nredis.password=%s\n' "$role" \
        "$(secret_file "redis-$role.pass")" > "$MAAS_CRED_DIR/$role-redis.part")
    done
    acl_args=(--aclfile "$dir/users.acl")
    echo acl > "$dir/auth"
  else
    [[ "$MAAS_REDIS_AUTH" == none ]] || die "MAAS_REDIS_AUTH=$MAAS_REDIS_AUTH: none or acl"
    rm -f "$MAAS_CRED_DIR/maas-redis.part" "$MAAS_CRED_DIR/worker-redis.part"
    echo none > "$dir/auth"
    acl_args=()
  fi
  maas_conf_refresh
}

service_users() {
  [[ "$MAAS_REDIS_AUTH" == acl ]] || return 0
  local keys='~maas:* &maas:* &__redis__:invalidate +@all -@dangerous'
  rcli > /dev/null <<ACL || die "could not set the service users"
ACL SETUSER maas reset on >$(secret_file redis-maas.pass) $keys +acl
ACL SETUSER worker reset on >$(secret_file redis-worker.pass) $keys
ACL SAVE
ACL
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
    service_users
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
