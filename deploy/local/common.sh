# Shared settings for the deploy/local scripts (sourced, not run).
# Everything binds to 127.0.0.1 unless told otherwise; ports and folders come from the
# environment.
MAAS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MAAS_STATE_DIR="${MAAS_STATE_DIR:-$MAAS_ROOT/.local/state}"   # gitignored
MAAS_CACHE_DIR="${MAAS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/maas}"
MAAS_KAFKA_VERSION="${MAAS_KAFKA_VERSION:-3.9.1}"
MAAS_KAFKA_PORT="${MAAS_KAFKA_PORT:-19092}"
MAAS_KAFKA_CONTROLLER_PORT="${MAAS_KAFKA_CONTROLLER_PORT:-19093}"
MAAS_REDIS_PORT="${MAAS_REDIS_PORT:-16379}"
MAAS_KAFKA_HEAP="${MAAS_KAFKA_HEAP:-512m}"
MAAS_WORKER_HTTP_BASE="${MAAS_WORKER_HTTP_BASE:-19100}" # worker i serves /metrics on BASE + i
# The address each part binds to and is reached at: 127.0.0.1 when they share one machine; one
# per host when they do not (tests/integration/test_multihost.sh gives each part a network
# namespace of its own and these its address there).
MAAS_KAFKA_HOST="${MAAS_KAFKA_HOST:-127.0.0.1}"
MAAS_REDIS_HOST="${MAAS_REDIS_HOST:-127.0.0.1}"
MAAS_COORDINATOR_HOST="${MAAS_COORDINATOR_HOST:-127.0.0.1}"
MAAS_WORKER_HOST="${MAAS_WORKER_HOST:-127.0.0.1}" # where a worker serves /metrics, /readyz

# Credentials the scripts make (0600 files, never on a command line of ours): service
# passwords, the API keys, maas.conf — the coordinator's and the operator's CLI's login
# (kafka.sasl.*, redis.user/password), read through MAAS_CONFIG — and worker.conf, the
# workers' (workers.sh hands them that one).
MAAS_CRED_DIR="${MAAS_CRED_DIR:-$MAAS_STATE_DIR/credentials}"
# Authentication of the services: what the environment says, else what the state folder was
# made with, else the caller's default (stack.sh: on; a bare kafka.sh / redis.sh: off).
#   MAAS_KAFKA_AUTH: none | scram (SASL SCRAM-SHA-512 + ACLs)
#   MAAS_REDIS_AUTH: none | acl (ACL users; the default user off)
if [[ -z "${MAAS_KAFKA_AUTH:-}" ]]; then
  MAAS_KAFKA_AUTH="$(cat "$MAAS_STATE_DIR/kafka/auth" 2>/dev/null || echo "${MAAS_KAFKA_AUTH_DEFAULT:-none}")"
fi
if [[ -z "${MAAS_REDIS_AUTH:-}" ]]; then
  MAAS_REDIS_AUTH="$(cat "$MAAS_STATE_DIR/redis/auth" 2>/dev/null || echo "${MAAS_REDIS_AUTH_DEFAULT:-none}")"
fi
export MAAS_KAFKA_AUTH MAAS_REDIS_AUTH
# MAAS_REDIS_CLUSTER=1: a Redis Cluster of 3 masters + 3 replicas on ports MAAS_REDIS_PORT ..
# +5 instead of one Redis (what the environment says, else what the state folder was made
# with). MAAS_REDIS_NODE_TIMEOUT: its cluster-node-timeout (ms; 2000: a failover in ~3-5 s).
if [[ -z "${MAAS_REDIS_CLUSTER:-}" ]]; then
  MAAS_REDIS_CLUSTER="$(cat "$MAAS_STATE_DIR/redis/cluster" 2>/dev/null || echo 0)"
fi
export MAAS_REDIS_CLUSTER
# The services' Redis URL: redis:// for one Redis, redis+cluster:// naming the three first
# nodes of a cluster (the adapter finds the rest).
maas_redis_url() {
  if [[ "$MAAS_REDIS_CLUSTER" == 1 ]]; then
    local p="$MAAS_REDIS_PORT"
    local h="$MAAS_REDIS_HOST"
    echo "redis+cluster://$h:$p,$h:$((p + 1)),$h:$((p + 2))"
  else
    echo "redis://$MAAS_REDIS_HOST:$MAAS_REDIS_PORT"
  fi
}
if [[ -s "$MAAS_CRED_DIR/maas.conf" && -z "${MAAS_CONFIG:-}" ]]; then
  export MAAS_CONFIG="$MAAS_CRED_DIR/maas.conf"
fi

log() { echo "[$(basename "$0" .sh)] $*" >&2; }

# Prints the secret in credentials file NAME, making it (random, 0600) first if missing.
secret_file() {
  local f="$MAAS_CRED_DIR/$1"
  mkdir -p "$MAAS_CRED_DIR" && chmod 700 "$MAAS_CRED_DIR"
  [[ -s "$f" ]] || (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$f")
  cat "$f"
}

# Rebuilds maas.conf (the coordinator's and the operator's CLI's login) and worker.conf (the
# workers') from the parts the service scripts write (maas-kafka.part, worker-redis.part, ...).
maas_conf_refresh() {
  mkdir -p "$MAAS_CRED_DIR" && chmod 700 "$MAAS_CRED_DIR"
  local role
  for role in maas worker; do
    (umask 077 && cat "$MAAS_CRED_DIR/$role"-*.part > "$MAAS_CRED_DIR/$role.conf" 2>/dev/null || true)
  done
  export MAAS_CONFIG="$MAAS_CRED_DIR/maas.conf"
}
die() { log "error: $*"; exit 1; }

# Prints the pid recorded in FILE if that process is alive and is what we started.
live_pid() {
  local file="$1" want="$2" pid
  [[ -f "$file" ]] || return 1
  pid="$(cat "$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  grep -qa -- "$want" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# Stops the process recorded in FILE (by pid, never by name): TERM, then KILL after a grace.
stop_pid() {
  local file="$1" want="$2" name="$3" pid i
  if ! pid="$(live_pid "$file" "$want")"; then
    rm -f "$file"
    log "$name is not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) did not stop in 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
  log "$name stopped (pid $pid)"
}

tail_log() { [[ -f "$1" ]] && { echo "--- last lines of $1:" >&2; tail -n "${2:-40}" "$1" >&2; }; }
