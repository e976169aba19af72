#!/usr/bin/env bash
# Redis durability in the local stack: an acknowledged write survives kill -9 of
# redis-server and a restart (AOF, appendfsync everysec: Redis hands each write to
# the OS before it replies, so only an OS crash could lose the last second).
# usage: redis_durability.sh STATE_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export MAAS_STATE_DIR="$1" MAAS_REDIS_PORT="${MAAS_IT_REDIS_DURABILITY_PORT:-26380}"
redis="$here/../../deploy/local/redis.sh"
cli() { redis-cli -h 127.0.0.1 -p "$MAAS_REDIS_PORT" "$@"; }
trap '"$redis" stop >/dev/null 2>&1 || true' EXIT
"$redis" stop >/dev/null 2>&1 || true
rm -rf "$MAAS_STATE_DIR"
"$redis" start
for i in $(seq 1 200); do echo "HSET maas:job:{d$i} state succeeded n $i"; done | cli > /dev/null
[[ "$(cli HGET 'maas:job:{d200}' n)" == 200 ]] || { echo "FAIL: write not visible"; exit 1; }
pid="$(cat "$MAAS_STATE_DIR/redis/redis.pid")"
kill -9 "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
"$redis" start
got="$(for i in $(seq 1 200); do echo "HGET maas:job:{d$i} n"; done | cli | grep -c .)"
if [[ "$got" -ne 200 ]]; then echo "FAIL: $got of 200 acknowledged writes survived kill -9"; exit 1; fi
echo "redis durability: 200 of 200 acknowledged writes survived kill -9 and a restart"
