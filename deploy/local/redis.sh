#!/usr/bin/env bash
# A local Redis for maas: start | stop | status | wait | nodes.
# Debian's redis-server on $MAAS_REDIS_HOST:$MAAS_REDIS_PORT (127.0.0.1 by default) with AOF (appendfsync everysec),
# data and log under $MAAS_STATE_DIR/redis. Stopped by pid, never by name.
# MAAS_REDIS_CLUSTER=1: a Redis Cluster instead, 3 masters + 3 replicas on ports
# $MAAS_REDIS_PORT .. +5 (MAAS_REDIS_REPLICAS=0: 3 masters alone, on .. +2; what the state folder
# was made with, else 1) (node N in $MAAS_STATE_DIR/redis/node-PORT, made with
# `redis-cli --cluster create`), cluster-node-timeout $MAAS_REDIS_NODE_TIMEOUT ms (2000), the
# cluster bus on each port + $MAAS_REDIS_BUS_OFFSET (1000; Redis's default +10000 lands in the
# kernel's ephemeral range, where a client socket can hold it: seen in CI), the
# same ACL users on every node. `nodes` prints "port pid role" per node.
# hash-max-listpack-value 256: a one-row inference result is ~80 bytes, over Redis's default
# of 64, which made every job record a hash table: 924 bytes a record instead of 392, and AOF
# rewrites (a full-core child process for seconds under load) 25-30% longer (measured, 300 k
# records: 320 -> 139 MB, 2.3 -> 1.8 s).
set -euo pipefail
source "$(dirname "$0")/common.sh"
dir="$MAAS_STATE_DIR/redis"
pidfile="$dir/redis.pid"
logfile="$dir/redis.log"

cluster_ports=()
if [[ "$MAAS_REDIS_CLUSTER" == 1 ]]; then
  [[ -n "${MAAS_REDIS_REPLICAS:-}" ]] || MAAS_REDIS_REPLICAS="$(cat "$dir/replicas" 2>/dev/null || echo 1)"
  [[ "$MAAS_REDIS_REPLICAS" == 0 || "$MAAS_REDIS_REPLICAS" == 1 ]] ||
    die "MAAS_REDIS_REPLICAS=$MAAS_REDIS_REPLICAS: 0 or 1 replica per master"
  n_nodes=$((3 * (1 + MAAS_REDIS_REPLICAS)))
  for ((k = 0; k < n_nodes; k++)); do cluster_ports+=($((MAAS_REDIS_PORT + k))); done
  layout="3 masters + $((3 * MAAS_REDIS_REPLICAS)) replicas"
fi

# redis-cli as the admin user when ACLs are on (the password through REDISCLI_AUTH, not argv);
# rcli_at PORT ... for one node of a cluster
rcli_at() {
  local port="$1"
  shift
  if [[ "$MAAS_REDIS_AUTH" == acl ]]; then
    REDISCLI_AUTH="$(secret_file redis-admin.pass)" redis-cli --no-auth-warning --user admin \
      -h "$MAAS_REDIS_HOST" -p "$port" "$@"
  else
    redis-cli -h "$MAAS_REDIS_HOST" -p "$port" "$@"
  fi
}
rcli() { rcli_at "$MAAS_REDIS_PORT" "$@"; }
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
  local keys='~maas:* &maas:* &__redis__:invalidate +@all -@dangerous' port
  # +cluster|slots: the adapter reads a cluster's slot map (harmless on one Redis)
  [[ "$MAAS_REDIS_CLUSTER" == 1 ]] && keys+=' +cluster|slots +cluster|info +readonly +asking'
  for port in "${cluster_ports[@]:-$MAAS_REDIS_PORT}"; do
  rcli_at "$port" > /dev/null <<ACL || die "could not set the service users"
ACL SETUSER maas reset on >$(secret_file redis-maas.pass) $keys +acl
ACL SETUSER worker reset on >$(secret_file redis-worker.pass) $keys
ACL SAVE
ACL
  done
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
  log "redis did not answer PING on $MAAS_REDIS_HOST:$MAAS_REDIS_PORT"
  tail_log "$logfile"
  return 1
}

# One node of the cluster: started (daemonized) unless running.
node_start() {
  local port="$1" nd="$dir/node-$1"
  mkdir -p "$nd"
  if live_pid "$nd/redis.pid" redis-server > /dev/null; then return 0; fi
  rm -f "$nd/redis.pid"
  local conf="$nd/node.conf"
  (umask 077 && : > "$conf")
  if [[ "$MAAS_REDIS_AUTH" == acl ]]; then
    # a replica logs in to its master as the user "replica" (replication commands only); its
    # password in the node's 0600 config file, never on a command line
    [[ -s "$nd/users.acl" ]] || (umask 077 && cp "$dir/users.acl" "$nd/users.acl")
    grep -q '^user replica ' "$nd/users.acl" ||
      printf 'user replica on >%s +psync +replconf +ping\n' "$(secret_file redis-replica.pass)" >> "$nd/users.acl"
    printf 'aclfile %s\nmasteruser replica\nmasterauth %s\n' "$nd/users.acl" \
      "$(secret_file redis-replica.pass)" > "$conf"
  fi
  redis-server "$conf" --bind "$MAAS_REDIS_HOST" --port "$port" --protected-mode yes --dir "$nd" \
    --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-port $((port + ${MAAS_REDIS_BUS_OFFSET:-1000})) \
    --cluster-node-timeout "${MAAS_REDIS_NODE_TIMEOUT:-2000}" \
    --appendonly yes --appendfsync everysec --save "" --hash-max-listpack-value 256 \
    --daemonize yes --pidfile "$nd/redis.pid" --logfile "$nd/redis.log"
}

cluster_ok() { rcli_at "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }

cluster_start() {
  local port i
  for port in "${cluster_ports[@]}"; do node_start "$port"; done
  for port in "${cluster_ports[@]}"; do
    for ((i = 0; i < 100; i++)); do rcli_at "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
    rcli_at "$port" ping 2>/dev/null | grep -q PONG || { tail_log "$dir/node-$port/redis.log"; die "redis node $port did not start"; }
  done
  # made once: the nodes keep the cluster in their nodes.conf across restarts
  if [[ "$(rcli_at "$MAAS_REDIS_PORT" cluster info | grep -c "^cluster_known_nodes:$n_nodes")" != 1 ]]; then
    local hosts=()
    for port in "${cluster_ports[@]}"; do hosts+=("$MAAS_REDIS_HOST:$port"); done
    if [[ "$MAAS_REDIS_AUTH" == acl ]]; then
      REDISCLI_AUTH="$(secret_file redis-admin.pass)" redis-cli --no-auth-warning --user admin \
        --cluster create "${hosts[@]}" --cluster-replicas "$MAAS_REDIS_REPLICAS" --cluster-yes > "$dir/create.log" 2>&1
    else
      redis-cli --cluster create "${hosts[@]}" --cluster-replicas "$MAAS_REDIS_REPLICAS" --cluster-yes > "$dir/create.log" 2>&1
    fi || { tail_log "$dir/create.log"; die "redis-cli --cluster create failed"; }
  fi
  local deadline=$((SECONDS + 60)) all
  while ((SECONDS < deadline)); do
    all=1
    for port in "${cluster_ports[@]}"; do
      cluster_ok "$port" || all=0
      # a replica counts once it replicates (a failover needs one that does)
      if rcli_at "$port" info replication 2>/dev/null | grep -q '^role:slave'; then
        rcli_at "$port" info replication | grep -q '^master_link_status:up' || all=0
      fi
    done
    ((all)) && break
    sleep 0.2
  done
  ((all)) || die "the redis cluster did not reach cluster_state:ok with its replicas in sync in 60 s"
  echo 1 > "$dir/cluster"
  echo "$MAAS_REDIS_REPLICAS" > "$dir/replicas"
}

case "${1:-}" in
  start)
    if [[ "$MAAS_REDIS_CLUSTER" == 1 ]]; then
      command -v redis-server >/dev/null || die "redis-server is not installed (deploy/install-deps.sh)"
      mkdir -p "$dir"
      acl_setup
      cluster_start
      service_users
      log "redis cluster ready: $layout on $MAAS_REDIS_HOST:${cluster_ports[0]}..${cluster_ports[-1]} ($(maas_redis_url))"
      exit 0
    fi
    command -v redis-server >/dev/null || die "redis-server is not installed (deploy/install-deps.sh)"
    mkdir -p "$dir"
    if pid="$(live_pid "$pidfile" redis-server)"; then
      log "redis already running (pid $pid)"
    else
      rm -f "$pidfile" # a kill -9 leaves the old one behind; it must not pass for the new one
      acl_setup
      redis-server --bind "$MAAS_REDIS_HOST" --port "$MAAS_REDIS_PORT" --protected-mode yes \
        --dir "$dir" --appendonly yes --appendfsync everysec --save "" \
        --hash-max-listpack-value 256 "${acl_args[@]}" \
        --daemonize yes --pidfile "$pidfile" --logfile "$logfile"
      for ((i = 0; i < 50; i++)); do [[ -s "$pidfile" ]] && break; sleep 0.1; done
    fi
    wait_ready 30 || exit 1
    service_users
    log "redis ready on $MAAS_REDIS_HOST:$MAAS_REDIS_PORT (pid $(cat "$pidfile"), AOF everysec, data in $dir)"
    ;;
  stop)
    if [[ "$MAAS_REDIS_CLUSTER" == 1 ]]; then
      for port in "${cluster_ports[@]}"; do # at once: each writes its AOF as it stops
        stop_pid "$dir/node-$port/redis.pid" redis-server "redis node $port" &
      done
      wait
    else
      stop_pid "$pidfile" redis-server redis
    fi ;;
  nodes)
    for port in "${cluster_ports[@]:-$MAAS_REDIS_PORT}"; do
      pf="$dir/node-$port/redis.pid"
      [[ "$MAAS_REDIS_CLUSTER" == 1 ]] || pf="$pidfile"
      pid="$(live_pid "$pf" redis-server || echo -)"
      role="$(rcli_at "$port" role 2>/dev/null | head -n 1)"
      echo "$port $pid ${role:-down}"
    done ;;
  start-node) node_start "$2" ;;
  status)
    if [[ "$MAAS_REDIS_CLUSTER" == 1 ]]; then
      up=0
      for port in "${cluster_ports[@]}"; do
        live_pid "$dir/node-$port/redis.pid" redis-server > /dev/null && cluster_ok "$port" && up=$((up + 1))
      done
      echo "redis cluster: $up of $n_nodes nodes up and ok ($layout), $(maas_redis_url)"
      ((up == n_nodes)) || exit 1
    elif pid="$(live_pid "$pidfile" redis-server)" && ping; then
      echo "redis: running, pid $pid, $MAAS_REDIS_HOST:$MAAS_REDIS_PORT"
    else
      echo "redis: not running"; exit 1
    fi ;;
  wait) wait_ready "${2:-30}" ;;
  *) echo "usage: $0 start|stop|status|wait [seconds]|nodes|start-node PORT" >&2; exit 2 ;;
esac
