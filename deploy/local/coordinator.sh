#!/usr/bin/env bash
# maas-coordinator (the HTTP/JSON API) for the local stack: start | stop | status.
# Listens on $MAAS_COORDINATOR_HOST:$MAAS_COORDINATOR_PORT (127.0.0.1:18080); log and pid file under
# $MAAS_STATE_DIR/coordinator; stopped by pid.
set -euo pipefail
source "$(dirname "$0")/common.sh"
dir="$MAAS_STATE_DIR/coordinator"
bin="${MAAS_COORDINATOR_BIN:-$MAAS_ROOT/build/bin/maas-coordinator}"
port="${MAAS_COORDINATOR_PORT:-18080}"
case "${1:-}" in
  start)
    [[ -x "$bin" ]] || die "$bin is missing: build first (cmake --build build)"
    mkdir -p "$dir"
    if pid="$(live_pid "$dir/coordinator.pid" maas-coordinator)"; then
      log "coordinator already running (pid $pid)"
      exit 0
    fi
    # MAAS_COORDINATOR_ARGS: extra flags (split on spaces), e.g. "--config secrets.conf"
    # shellcheck disable=SC2086
    nohup "$bin" --http "$MAAS_COORDINATOR_HOST:$port" --brokers "$MAAS_KAFKA_HOST:$MAAS_KAFKA_PORT" \
      --redis "$(maas_redis_url)" ${MAAS_COORDINATOR_ARGS:-} \
      >> "$dir/coordinator.log" 2>&1 < /dev/null &
    echo $! > "$dir/coordinator.pid"
    for ((t = 0; t < 100; t++)); do
      grep -q "serving http" "$dir/coordinator.log" 2>/dev/null && break
      # kill -0, not live_pid: right after the fork the child is still this script
      kill -0 "$(cat "$dir/coordinator.pid")" 2>/dev/null || { tail_log "$dir/coordinator.log"; die "the coordinator exited"; }
      sleep 0.1
    done
    log "coordinator ready: http://$MAAS_COORDINATOR_HOST:$port (pid $(cat "$dir/coordinator.pid"), log $dir/coordinator.log)"
    ;;
  stop) stop_pid "$dir/coordinator.pid" maas-coordinator coordinator ;;
  status)
    if pid="$(live_pid "$dir/coordinator.pid" maas-coordinator)"; then
      echo "coordinator: running, pid $pid, http://$MAAS_COORDINATOR_HOST:$port"
    else
      echo "coordinator: not running"; exit 1
    fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
