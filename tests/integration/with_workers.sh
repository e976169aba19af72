#!/usr/bin/env bash
# Runs a command with N maas-workers of the local-stack kind (deploy/local/workers.sh) on the
# integration services, and stops them afterwards (by pid) whatever the command did.
# usage: with_workers.sh N STATE_DIR WORKER_BIN -- COMMAND...
set -uo pipefail
n="$1"
export MAAS_STATE_DIR="$2" MAAS_WORKER_BIN="$3"
shift 4
here="$(cd "$(dirname "$0")" && pwd)"
export MAAS_KAFKA_PORT="${MAAS_IT_KAFKA_PORT:-29092}" MAAS_REDIS_PORT="${MAAS_IT_REDIS_PORT:-26379}"
export MAAS_WORKER_HTTP_BASE="${MAAS_WORKER_HTTP_BASE:-29130}"
"$here/../../deploy/local/workers.sh" stop >/dev/null 2>&1
"$here/../../deploy/local/workers.sh" start "$n" || exit 1
"$@"
rc=$?
"$here/../../deploy/local/workers.sh" stop
exit $rc
