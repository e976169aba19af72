#!/usr/bin/env bash
# Quickstart: installs what is needed, builds, starts the local stack (Redis +
# Kafka), and runs the seed scenario.
#
# The seed scenario: Pima Indians diabetes (8 features) -> Dense(10, relu) ->
# Dense(1, sigmoid), binary cross-entropy, Adam, 10 epochs, batch 32; save,
# load, predict. Today it runs through the local `maas` CLI: the coordinator and
# workers that will run it as cluster jobs are not built yet (README, "Status").
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
echo "==> starting the local stack: Redis and Kafka on 127.0.0.1"
deploy/local/stack.sh up

work=.local/quickstart
mkdir -p "$work"
data=examples/data/pima-indians-diabetes.csv
# A fixed 80/20 split: the first 614 rows train, the last 154 are held out.
head -n 615 "$data" > "$work/train.csv"
{ head -n 1 "$data"; tail -n 154 "$data"; } > "$work/test.csv"

echo "==> maas fit (Dense(10, relu) -> Dense(1, sigmoid), Adam, 10 epochs, batch 32)"
$maas fit --data "$work/train.csv" --label diabetes --layers 10:relu,1:sigmoid \
  --loss binary_crossentropy --optimizer adam --epochs 10 --batch-size 32 \
  --standardize --seed 7 -o "$work/model.h5"
echo "==> maas inspect"
$maas inspect "$work/model.h5"
echo "==> maas evaluate on the 154 held-out rows"
$maas evaluate -m "$work/model.h5" --data "$work/test.csv" --label diabetes
echo "==> maas predict: the first 5 held-out rows (probability of diabetes, then the label)"
$maas predict -m "$work/model.h5" --data "$work/test.csv" --drop diabetes | head -n 5 |
  paste -d' ' - <(tail -n +2 "$work/test.csv" | head -n 5 | cut -d, -f9)
echo
echo "The model is $work/model.h5, a Keras file: keras.models.load_model() opens it."
echo "The stack keeps running: Redis 127.0.0.1:${MAAS_REDIS_PORT:-16379}, Kafka 127.0.0.1:${MAAS_KAFKA_PORT:-19092};"
echo "logs in .local/state/{redis/redis.log,kafka/kafka.log}; stop it with 'deploy/local/stack.sh down'."
echo "Next: 'build/bin/maas --help'; the whole test suite is 'deploy/test.sh'."
