#!/usr/bin/env bash
# maas-worker processes for the local stack: start [N] | stop | status.
# Each worker gets an id (w1, w2, ...), a log and a pid file under $MAAS_STATE_DIR/workers;
# stop is by pid (SIGTERM, then SIGKILL after the grace period); safe to call twice.
set -euo pipefail
source "$(dirname "$0")/common.sh"
dir="$MAAS_STATE_DIR/workers"
bin="${MAAS_WORKER_BIN:-$MAAS_ROOT/build/bin/maas-worker}"
export MAAS_KAFKA_BROKERS="$MAAS_KAFKA_HOST:$MAAS_KAFKA_PORT" MAAS_REDIS_URL="$(maas_redis_url)"

# The body of GET /readyz on $MAAS_WORKER_HOST:PORT (bash's /dev/tcp: no curl needed), or nothing.
readyz() {
  local body
  body="$({ exec 3<>"/dev/tcp/$MAAS_WORKER_HOST/$1"; } 2>/dev/null && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 &&
    timeout 5 cat <&3)" || return 0
  printf '%s' "${body##*$'\r\n\r\n'}"
}

case "${1:-}" in
  start)
    n="${2:-${MAAS_WORKERS:-2}}"
    [[ -x "$bin" ]] || die "$bin is missing: build first (cmake --build build)"
    mkdir -p "$dir"
    for ((i = 1; i <= n; i++)); do
      id="w$i"
      if pid="$(live_pid "$dir/$id.pid" maas-worker)"; then
        log "worker $id already running (pid $pid)"
        continue
      fi
      port=$((MAAS_WORKER_HTTP_BASE + i))
      # MAAS_WORKER_ARGS: extra flags for every worker (split on spaces), e.g.
      # "-X kafka.session.timeout.ms=10000 --memory-mb 2048"
      # the workers' own login (a role without the coordinator's rights), when there is one
      if [[ -s "$MAAS_CRED_DIR/worker.conf" ]]; then export MAAS_CONFIG="$MAAS_CRED_DIR/worker.conf"; fi
      # shellcheck disable=SC2086
      nohup "$bin" --id "$id" --http "$MAAS_WORKER_HOST:$port" ${MAAS_WORKER_ARGS:-} >> "$dir/$id.log" 2>&1 < /dev/null &
      echo $! > "$dir/$id.pid"
      log "worker $id started (pid $!, /metrics on $MAAS_WORKER_HOST:$port, log $dir/$id.log)"
    done
    # ready = the worker says so in its log
    for ((i = 1; i <= n; i++)); do
      for ((t = 0; t < 100; t++)); do
        grep -q 'msg="ready in' "$dir/w$i.log" 2>/dev/null && break
        # kill -0, not live_pid: right after the fork the child is still this script
        kill -0 "$(cat "$dir/w$i.pid")" 2>/dev/null || { tail_log "$dir/w$i.log"; die "worker w$i exited"; }
        sleep 0.1
      done
    done
    # ready = /readyz: in the groups, and no partition moved for 3 s, so a job produced now is
    # not handed to another worker by the fleet's own start (a worker beyond the partition
    # count says "no partitions assigned": it stands by)
    for ((i = 1; i <= n; i++)); do
      port=$((MAAS_WORKER_HTTP_BASE + i)) body=""
      for ((t = 0; t < 600; t++)); do
        body="$(readyz "$port")"
        [[ "$body" == *'"ready": true'* || "$body" == *'no partitions assigned'* ]] && break
        sleep 0.1
      done
      [[ "$body" == *'"ready": true'* ]] && log "worker w$i ready" || log "worker w$i not ready after 60 s: ${body:-no answer}"
    done
    ;;
  stop)
    shopt -s nullglob
    for f in "$dir"/*.pid; do stop_pid "$f" maas-worker "worker $(basename "$f" .pid)"; done
    ;;
  status)
    shopt -s nullglob
    rc=1
    for f in "$dir"/*.pid; do
      if pid="$(live_pid "$f" maas-worker)"; then echo "worker $(basename "$f" .pid): running, pid $pid"; rc=0; fi
    done
    exit $rc
    ;;
  *) echo "usage: $0 start [N] | stop | status" >&2; exit 2 ;;
esac
