#!/usr/bin/env bash
# Compose (deploy/compose), as a user runs it: the images built here (deploy/compose/build.sh:
# from Debian's packages and Maven Central, no registry), `podman-compose up` with 2 workers on
# the project's own network, authentication on; the seed scenario (train 10 epochs, infer,
# evaluate) and a burst of inference jobs from the maas CLI in the coordinator's container
# (its login from the state volume), both workers serving; the HTTP API on 127.0.0.1 with the
# admin key the stack made; `down` stops every container with exit 0 and removes the volume.
# usage: test_compose.sh WORKDIR      Exit 77 (skipped) only when containers cannot run here.
set -uo pipefail
work="$1"
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/deploy/container/podman.sh"
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
project=maasctest port=29179
export MAAS_COORDINATOR_PORT=$port MAAS_WORKERS=2
compose() { maas_podman_compose -p "$project" -f "$root/deploy/compose/compose.yaml" "$@"; }
cleanup() {
  compose down > down-cleanup.log 2>&1
  maas_podman volume rm -f "${project}_state" > /dev/null 2>&1
  maas_podman network rm -f "${project}_default" > /dev/null 2>&1
}
trap cleanup EXIT
cleanup # what an interrupted run left

maas_podman_ready
case $? in 0) ;; 77) exit 77 ;; *) bad "no base image"; exit 1 ;; esac
t0=$SECONDS
"$root/deploy/compose/build.sh" > build.log 2>&1 && ok "images built in $((SECONDS - t0)) s: $(grep '^image' build.log | tr '\n' ' ')" ||
  { bad "image build: $(tail -20 build.log)"; exit 1; }
maas_podman image prune -f > /dev/null 2>&1 # the images these tags had before: not kept

compose up -d > up.log 2>&1 && ok "podman-compose up -d" || { bad "up: $(tail -20 up.log)"; exit 1; }
health=""
for ((t = 0; t < 1800; t++)); do
  health="$(curl -s -m 2 "http://127.0.0.1:$port/healthz")"
  [[ "$health" == *'"kafka": true, "redis": true'* ]] && break
  sleep 0.1
done
[[ "$health" == *'"kafka": true, "redis": true'* ]] && ok "the coordinator answers on 127.0.0.1:$port: $health" ||
  { bad "no healthy coordinator: $health; $(maas_podman logs "${project}_kafka_1" 2>&1 | tail -5)"; exit 1; }
cli() { maas_podman exec "${project}_coordinator_1" maas "$@"; }
workers=""
for ((t = 0; t < 600; t++)); do
  workers="$(cli workers 2>&1)"
  [[ $(grep -c ' ago' <<< "$workers") -eq 2 ]] && break
  sleep 0.1
done
[[ $(grep -c ' ago' <<< "$workers") -eq 2 ]] && ok "maas workers lists the 2 workers" || bad "workers: $workers"

# the seed scenario, from the CLI inside the compose network
maas_podman cp "$root/examples/data/pima-indians-diabetes.csv" "${project}_coordinator_1:/tmp/pima.csv" &&
  ok "data copied into the coordinator's container" || bad "podman cp"
{ head -n 1 "$root/examples/data/pima-indians-diabetes.csv"; sed -n 2,11p "$root/examples/data/pima-indians-diabetes.csv"; } > ten.csv
maas_podman cp ten.csv "${project}_coordinator_1:/tmp/ten.csv" > /dev/null 2>&1
cli submit train --name pima --data /tmp/pima.csv --label diabetes --layers 10:relu,1:sigmoid \
  --epochs 10 --batch-size 32 --seed 7 --wait > train.log 2>&1 && grep -q 'Epoch 10/10' train.log &&
  ok "train: $(grep 'Epoch 10/10' train.log | head -1)" || bad "train: $(tail -5 train.log)"
cli submit infer --model pima:1 --data /tmp/ten.csv --drop diabetes --wait > infer.log 2>&1 &&
  [[ $(grep -cE '^[0-9.e-]+$' infer.log) -eq 10 ]] && ok "infer: 10 predictions" || bad "infer: $(tail -5 infer.log)"
cli submit evaluate --model pima:1 --data /tmp/pima.csv --label diabetes --wait > eval.log 2>&1 &&
  grep -q 'accuracy' eval.log && ok "evaluate: $(tail -1 eval.log)" || bad "evaluate: $(tail -5 eval.log)"

# a burst: both workers serve
ids=()
for ((i = 0; i < 24; i++)); do ids+=("$(cli submit infer --model pima:1 --data /tmp/ten.csv --drop diabetes 2>/dev/null)"); done
done_ok=0
for id in "${ids[@]}"; do
  cli job "$id" --wait > /dev/null 2>&1 && cli job "$id" > job.log 2>&1 &&
    grep -qE '^state: +succeeded' job.log && done_ok=$((done_ok + 1))
done
[[ $done_ok -eq 24 ]] && ok "24 inference jobs succeeded" || bad "$done_ok of 24 jobs succeeded: $(tail -5 job.log)"
workers="$(cli workers 2>&1)"
busy=$(awk '$1 != "id" && $4 > 0' <<< "$workers" | wc -l)
[[ $busy -eq 2 ]] && ok "both workers did jobs" || bad "workers: $workers"

# the HTTP API with the operator's key the stack made (in the state volume)
vol="$(maas_podman volume inspect --format '{{.Mountpoint}}' "${project}_state")"
key="$(cat "$vol/credentials/admin.key" 2>/dev/null)"
code="$(curl -s -o models.json -w '%{http_code}' -m 5 -H "Authorization: Bearer $key" "http://127.0.0.1:$port/v1/models")"
[[ "$code" == 200 ]] && grep -q '"pima"' models.json && ok "GET /v1/models with admin.key lists pima" ||
  bad "HTTP $code: $(head -c 300 models.json)"
code="$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$port/v1/models")"
[[ "$code" == 401 ]] && ok "without a key: 401" || bad "without a key: HTTP $code"

compose down > down.log 2>&1 && ok "podman-compose down" || bad "down: $(tail -5 down.log)"
left="$(maas_podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}')"
[[ -z "$left" ]] && ok "no container left" || bad "left: $left"
echo "test_compose: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
