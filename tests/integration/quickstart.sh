#!/usr/bin/env bash
# The README's first command, as a test: deploy/quickstart.sh on ports and a state folder of
# its own, then the stack it started is stopped (by pid).
# usage: quickstart.sh STATE_DIR
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
export MAAS_STATE_DIR="$1" MAAS_KAFKA_PORT=28192 MAAS_KAFKA_CONTROLLER_PORT=28193
export MAAS_REDIS_PORT=28379 MAAS_WORKER_HTTP_BASE=28200 MAAS_COORDINATOR_PORT=28280
"$root/deploy/local/stack.sh" down >/dev/null 2>&1
rm -rf "$MAAS_STATE_DIR"
"$root/deploy/quickstart.sh"
rc=$?
"$root/deploy/local/stack.sh" down
exit $rc
