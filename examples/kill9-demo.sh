#!/usr/bin/env bash
# kill -9 demonstration: a worker dies in the middle of a training job, and nothing is lost.
#
#   examples/kill9-demo.sh        (with the stack up: deploy/local/stack.sh up)
#
# It submits a training job of ~20 s, waits until a worker runs it, kills that worker with
# SIGKILL, restarts it, and follows the job: Kafka redelivers it (the offset was never stored),
# another worker trains it again, and the model gets exactly one version.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/local/common.sh
export MAAS_KAFKA_BROKERS="127.0.0.1:$MAAS_KAFKA_PORT" MAAS_REDIS_URL="redis://127.0.0.1:$MAAS_REDIS_PORT"
maas=build/bin/maas
work=.local/kill9
# redis-cli with the services' login when the stack runs with authentication (common.sh exports
# MAAS_CONFIG, the stack's maas.conf): the password through REDISCLI_AUTH, not argv
rc_login=()
if [[ -s "${MAAS_CONFIG:-}" ]] && grep -q '^redis.user=' "$MAAS_CONFIG"; then
  REDISCLI_AUTH="$(sed -n 's/^redis.password=//p' "$MAAS_CONFIG")" && export REDISCLI_AUTH
  rc_login=(--user "$(sed -n 's/^redis.user=//p' "$MAAS_CONFIG")")
fi
rcli() { redis-cli -u "$MAAS_REDIS_URL" --no-auth-warning "${rc_login[@]}" "$@"; }
mkdir -p "$work"
deploy/local/workers.sh status >/dev/null || { echo "start the stack first: deploy/local/stack.sh up" >&2; exit 1; }

# 20 000 rows x 64 features of synthetic data: big enough for a training job of some seconds
/usr/bin/python3 - "$work/data.csv" <<'PY'
import random, sys
r = random.Random(1)
with open(sys.argv[1], "w") as f:
    f.write(",".join(f"f{i}" for i in range(64)) + ",label\n")
    for _ in range(20000):
        x = [r.gauss(0, 1) for _ in range(64)]
        f.write(",".join(f"{v:.4f}" for v in x) + f",{int(x[0] + x[1] > 0) + int(x[2] > 0.5)}\n")
PY
# a field of the job's record (one JSON object; empty when absent)
field() { rcli GET "maas:job:{$id}" | jq -cr ".$1 // empty"; }
model="kill9-$(date +%s)"
$maas dataset put "$model-data" --data "$work/data.csv" --label label
id=$($maas submit train --name "$model" --dataset "$model-data" --layers 512:relu,512:relu,3:softmax \
       --epochs "${EPOCHS:-40}" --seed 1)
echo "submitted training job $id"
for ((i = 0; i < 300; i++)); do
  worker=$(field worker)
  [[ -n "$worker" ]] && break
  sleep 0.1
done
[[ -n "$worker" ]] || { echo "no worker took the job" >&2; exit 1; }
# wait for its first progress report (not a fixed sleep: machines differ in speed), then make
# sure it is still running: the demonstration needs a job to kill
for ((i = 0; i < 600; i++)); do
  [[ -n "$(field progress)" ]] && break
  sleep 0.1
done
pid=$(cat "$MAAS_STATE_DIR/workers/$worker.pid")
kill -STOP "$pid" # it cannot finish the job now; the record tells whether it already had
state=$(field state)
[[ "$state" == running ]] || {
  kill -CONT "$pid"
  echo "the job is $state already: this machine trains it too fast for the demo; set EPOCHS higher" >&2
  exit 1
}
echo "job $id is running on $worker; progress: $(field progress)"
echo "kill -9 $worker (pid $pid)"
kill -9 "$pid"
killed_ms=$(($(date +%s%N) / 1000000))
deploy/local/workers.sh start "$(ls "$MAAS_STATE_DIR"/workers/*.pid | wc -l)" 2>&1 | grep -v "already running" || true
echo "following the job (Kafka redelivers it once the dead member's session times out: 6 s)"
# failover: from the kill to a worker starting the job again (its record's started_ms)
started=0
for ((i = 0; i < 1200; i++)); do
  started=$(field started_ms)
  ((started > killed_ms)) && break
  case "$(field state)" in succeeded | failed | cancelled) break ;; esac
  sleep 0.05
done
echo "failover: $(field worker) started it again $((started - killed_ms)) ms after the kill"
if [[ -n "${MAX_FAILOVER_MS:-}" ]] && ((started - killed_ms > MAX_FAILOVER_MS)); then
  echo "failover took longer than ${MAX_FAILOVER_MS} ms" >&2
  exit 1
fi
$maas job "$id" --wait
$maas job "$id" | grep -E "state|attempts|worker"
$maas versions "$model"
n=$(rcli HGET "maas:model:{$model}" next_version)
echo "versions of $model: $n"
[[ "$n" == 1 ]]
