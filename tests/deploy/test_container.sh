#!/usr/bin/env bash
# The container image (deploy/container), as a user runs it: built here from Debian's packages
# (base.sh: mmdebstrap, podman import; no registry), then a worker container against the
# services fixture's Kafka and Redis (host network, its settings file mounted read-only, a
# read-only root and no capabilities, as deploy/k8s runs it): it runs as a non-root user, becomes ready, passes its HEALTHCHECK, trains and serves jobs the
# CLI submits from the host (the records name it), and stops cleanly (exit 0) on podman stop.
# usage: test_container.sh BUILD_DIR WORKDIR     (MAAS_KAFKA_BROKERS, MAAS_REDIS_URL, MAAS_CONFIG)
# Exit 77 (skipped) only when this kernel or sandbox refuses to run a container (said why).
set -uo pipefail
build="$(realpath "$1")" work="$2"
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/deploy/container/podman.sh"
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
image=localhost/maas:ctest name="maas-ctest-$$" port=29177 id="ctr$$"
cleanup() { maas_podman rm -f "$name" > /dev/null 2>&1; }
trap cleanup EXIT

maas_podman_ready
case $? in 0) ;; 77) exit 77 ;; *) bad "no base image"; exit 1 ;; esac
t0=$SECONDS
"$root/deploy/container/build.sh" "$image" > build.log 2>&1 && ok "$(tail -1 build.log), built in $((SECONDS - t0)) s" ||
  { bad "image build: $(tail -20 build.log)"; exit 1; }
maas_podman image prune -f > /dev/null 2>&1 # the images this tag had before: not kept
[[ "$(maas_podman image inspect --format '{{.Config.User}}' "$image")" == 10001:10001 ]] &&
  ok "the image runs as uid 10001" || bad "the image's user is not 10001"

# the worker's login, readable by the container's user (a copy: the fixture's is root's 0600)
conf="$(dirname "$MAAS_CONFIG")/worker.conf"
[[ -s "$conf" ]] || conf="$MAAS_CONFIG"
install -m 0644 "$conf" worker.conf
maas_podman run -d --name "$name" --network host "${MAAS_PODMAN_LIMITS[@]}" \
  --read-only --cap-drop ALL --security-opt no-new-privileges \
  -v "$work/worker.conf:/etc/maas/worker.conf:ro" -e MAAS_KAFKA_BROKERS -e MAAS_REDIS_URL \
  -e MAAS_WORKER_HTTP="127.0.0.1:$port" "$image" --id "$id" --config /etc/maas/worker.conf \
  > run.log 2>&1 && ok "worker container started" || { bad "podman run: $(cat run.log)"; exit 1; }
ready=""
for ((t = 0; t < 600; t++)); do
  ready="$(curl -s -m 2 "http://127.0.0.1:$port/readyz")"
  [[ "$ready" == *'"ready": true'* ]] && break
  sleep 0.1
done
[[ "$ready" == *'"ready": true'* ]] && ok "the worker in the container is ready" ||
  { bad "not ready: $ready $(maas_podman logs "$name" 2>&1 | tail -5)"; exit 1; }
[[ "$(maas_podman exec "$name" id -u)" == 10001 ]] && ok "its process runs as uid 10001" ||
  bad "the worker runs as $(maas_podman exec "$name" id -u)"
maas_podman healthcheck run "$name" > hc.log 2>&1 && ok "HEALTHCHECK passes" || bad "HEALTHCHECK: $(cat hc.log)"

# jobs from the host's CLI, done by the container
data="$root/examples/data/pima-indians-diabetes.csv"
{ head -n 1 "$data"; sed -n 2p "$data"; } > one.csv
"$build/bin/maas" submit train --id "${id}t" --name "$id" --data "$data" --label diabetes \
  --layers 10:relu,1:sigmoid --epochs 2 --seed 7 --wait > train.log 2>&1 &&
  ok "a training job done" || bad "train: $(tail -5 train.log)"
"$build/bin/maas" submit infer --id "${id}i" --model "$id:1" --data one.csv --drop diabetes --wait \
  > infer.log 2>&1 && ok "an inference job done: $(tail -1 infer.log)" || bad "infer: $(tail -5 infer.log)"
for j in "${id}t" "${id}i"; do
  rec="$("$build/bin/maas" job "$j" 2>&1)"
  grep -q "^worker: *$id$" <<< "$rec" && ok "job $j's record names the container's worker" ||
    bad "job $j: $(head -6 <<< "$rec")"
done

maas_podman stop -t 45 "$name" > /dev/null 2>&1
rc="$(maas_podman inspect --format '{{.State.ExitCode}}' "$name")"
[[ "$rc" == 0 ]] && ok "podman stop: the worker exited 0" || bad "exit code $rc: $(maas_podman logs "$name" 2>&1 | tail -5)"
log="$(maas_podman logs "$name" 2>&1)"
grep -q 'msg="stopped in' <<< "$log" && ok "its log says it stopped" || bad "no stop line: $(tail -3 <<< "$log")"
echo "test_container: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
