#!/usr/bin/env bash
# Quickstart: installs what is needed, builds, starts Redis + Kafka + two workers,
# and runs the seed scenario as cluster jobs:
#   Pima Indians diabetes (8 features) -> Dense(10, relu) -> Dense(1, sigmoid),
#   binary cross-entropy, Adam, 10 epochs, batch 32 — trained by a worker through
#   Kafka, registered in Redis as version 1 and aliased `production`, evaluated and
#   queried through Kafka, exported as a Keras model.h5 and checked locally; then
#   pruned and quantized to int8 by an optimize job (version 2) and evaluated again.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> installing dependencies (Debian packages)"
deploy/install-deps.sh --build-only
deploy/install-deps.sh --stack
echo "==> building into build/"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
[[ -f build/CMakeCache.txt ]] || cmake -S . -B build "${generator[@]}" >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
maas=build/bin/maas
export MAAS_KAFKA_BROKERS="127.0.0.1:${MAAS_KAFKA_PORT:-19092}"
source deploy/local/common.sh # maas_redis_url: MAAS_REDIS_CLUSTER=1 runs on a Redis Cluster
MAAS_REDIS_URL="$(maas_redis_url)" && export MAAS_REDIS_URL

echo "==> starting the local stack: Redis, Kafka, two workers and the HTTP API on 127.0.0.1"
deploy/local/stack.sh up
# the stack runs with authentication: the CLI logs in with the services' credentials
export MAAS_CONFIG="${MAAS_STATE_DIR:-.local/state}/credentials/maas.conf"

work=.local/quickstart
mkdir -p "$work"
data=examples/data/pima-indians-diabetes.csv
# A fixed 80/20 split: the first 614 rows train, the last 154 are held out.
head -n 615 "$data" > "$work/train.csv"
{ head -n 1 "$data"; tail -n 154 "$data"; } > "$work/test.csv"
model="pima-$(date +%s)"

echo "==> uploading the training rows as a dataset"
$maas dataset put pima-train --data "$work/train.csv" --label diabetes
echo "==> training $model on the cluster (Dense(10, relu) -> Dense(1, sigmoid), Adam, 10 epochs, batch 32)"
$maas submit train --name "$model" --dataset pima-train --layers 10:relu,1:sigmoid \
  --loss binary_crossentropy --optimizer adam --epochs 10 --batch-size 32 --standardize \
  --seed 7 --wait
$maas alias "$model" production 1
$maas versions "$model"
echo "==> evaluating $model@production on the 154 held-out rows (an evaluate job)"
$maas submit evaluate --model "$model@production" --data "$work/test.csv" --label diabetes --wait
echo "==> predicting the first 5 held-out rows (an infer job): probability, then the label"
head -n 6 "$work/test.csv" > "$work/five.csv"
$maas submit infer --model "$model@production" --data "$work/five.csv" --drop diabetes --wait \
  > "$work/cluster.txt"
paste -d' ' "$work/cluster.txt" <(tail -n +2 "$work/five.csv" | cut -d, -f9)
echo "==> exporting version 1 as a Keras model.h5; maas predict on it gives the same answers"
$maas export "$model@production" -o "$work/model.h5"
$maas predict -m "$work/model.h5" --data "$work/five.csv" --drop diabetes > "$work/local.txt"
if diff -q "$work/cluster.txt" "$work/local.txt" >/dev/null; then
  echo "local predictions == cluster predictions"
else
  echo "local and cluster predictions differ:" >&2
  paste "$work/cluster.txt" "$work/local.txt" >&2
  exit 1
fi
echo "==> optimizing version 1 (an optimize job): 50% magnitude pruning, 2 fine-tuning epochs, int8"
$maas submit optimize --model "$model:1" --quantize int8 --prune 0.5 --finetune-epochs 2 \
  --dataset pima-train --wait
echo "==> evaluating the int8 version 2 on the same 154 held-out rows"
$maas submit evaluate --model "$model:2" --data "$work/test.csv" --label diabetes --wait
echo
echo "The stack keeps running: Redis $MAAS_REDIS_URL, Kafka 127.0.0.1:${MAAS_KAFKA_PORT:-19092},"
base="${MAAS_WORKER_HTTP_BASE:-19100}"
echo "workers w1 and w2 (/metrics on 127.0.0.1:$((base + 1)) and :$((base + 2)))."
echo "Logs: ${MAAS_STATE_DIR:-.local/state}/{redis/redis.log (a cluster: redis/node-PORT/redis.log),kafka/kafka.log,workers/w1.log,workers/w2.log}"
echo "Credentials: ${MAAS_STATE_DIR:-.local/state}/credentials/ (maas.conf for the CLI: export MAAS_CONFIG=...;"
echo "admin.key and demo.key for the HTTP API; demo.conf for a tenant's own Kafka and Redis clients)."
echo "The HTTP API: http://127.0.0.1:${MAAS_COORDINATOR_PORT:-18080}/v1/models"
echo "The web console: http://127.0.0.1:${MAAS_COORDINATOR_PORT:-18080}/ui/ (paste admin.key's key)"
echo "Try: build/bin/maas models; build/bin/maas submit infer --model $model@production --data $work/five.csv --drop diabetes --wait"
echo "Stop everything with: deploy/local/stack.sh down"
