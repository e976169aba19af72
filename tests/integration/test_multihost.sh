#!/usr/bin/env bash
# maas across hosts, on one machine: each part in a network namespace of its own (Linux
# `ip netns`), joined by veth pairs to a bridge in one more, with addresses in 10.213.77.0/24
# that exist only inside those namespaces — Kafka (.2), Redis (.3), the coordinator (.4), two
# workers (.5, .6) and a client (.7). Every part is configured with addresses only (nothing
# assumes loopback), with the services' authentication on (SASL SCRAM, Redis ACLs). The client
# runs the seed scenario (dataset, train, alias, evaluate, infer) and an HTTP predict through
# the coordinator, then a stream of inference jobs during which the first worker's link is cut
# (its veth down): every job ends succeeded, the ones after the cut on the other worker, none
# lost. Bounded (every wait has a deadline); the namespaces and processes go even on failure.
# usage: test_multihost.sh BUILD_DIR WORKDIR     (root; exit 77 = skipped: no netns here)
set -uo pipefail
build="$(realpath "$1")" work="$2"
root="$(cd "$(dirname "$0")/../.." && pwd)"
if [[ $(id -u) -ne 0 ]] || ! command -v ip > /dev/null; then
  echo "SKIP: needs root and iproute2 to make network namespaces"; exit 77
fi
tag="mh$$"
if ! ip netns add "${tag}sw" 2> /dev/null; then
  echo "SKIP: this kernel or container refuses network namespaces (ip netns add)"; exit 77
fi
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
net=10.213.77
declare -A addr=([kafka]=$net.2 [redis]=$net.3 [coord]=$net.4 [w1]=$net.5 [w2]=$net.6 [client]=$net.7)
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
in_ns() { local h="$1"; shift; ip netns exec "$tag$h" "$@"; }

# the scripts' defaults (ports, folders) inside the namespaces; this build's programs
unset MAAS_CRED_DIR MAAS_REDIS_CLUSTER MAAS_KAFKA_PORT MAAS_KAFKA_CONTROLLER_PORT MAAS_REDIS_PORT \
  MAAS_COORDINATOR_PORT MAAS_COORDINATOR_ARGS MAAS_PARTITIONS MAAS_TOPIC_PREFIX MAAS_TENANT
export MAAS_COORDINATOR_BIN="$build/bin/maas-coordinator" MAAS_KAFKA_ADMIN="$build/bin/maas-kafka-admin"
export MAAS_STATE_DIR="$work/state" MAAS_KAFKA_AUTH=scram MAAS_REDIS_AUTH=acl
export MAAS_KAFKA_HOST=${addr[kafka]} MAAS_REDIS_HOST=${addr[redis]} MAAS_COORDINATOR_HOST=${addr[coord]}
export MAAS_KAFKA_BROKERS="${addr[kafka]}:19092" MAAS_REDIS_URL="redis://${addr[redis]}:16379"
export MAAS_CONFIG="$MAAS_STATE_DIR/credentials/maas.conf"
maas="$build/bin/maas"

cleanup() {
  set +e
  "$root/deploy/local/coordinator.sh" stop > /dev/null 2>&1
  for w in w1 w2; do
    [[ -f "$w.pid" ]] && kill -TERM "$(cat "$w.pid")" 2> /dev/null
  done
  # until both have exited (a worker cut off from Kafka may take its grace): at most 35 s
  for ((t = 0; t < 350; t++)); do
    alive=0
    for w in w1 w2; do [[ -f "$w.pid" ]] && kill -0 "$(cat "$w.pid")" 2> /dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  "$root/deploy/local/kafka.sh" stop > /dev/null 2>&1
  "$root/deploy/local/redis.sh" stop > /dev/null 2>&1
  for h in "${!addr[@]}" sw; do
    # whatever is left in our namespaces is ours: by pid
    for p in $(ip netns pids "$tag$h" 2> /dev/null); do kill -KILL "$p" 2> /dev/null; done
    ip netns del "$tag$h" 2> /dev/null
  done
}
trap cleanup EXIT

# the network: a bridge in ${tag}sw, a veth pair from it to each host's eth0
ip -n "${tag}sw" link add br0 type bridge && ip -n "${tag}sw" link set br0 up
for h in "${!addr[@]}"; do
  ip netns add "$tag$h" || { bad "ip netns add $tag$h"; exit 1; }
  ip link add "v-$h" netns "${tag}sw" type veth peer name eth0 netns "$tag$h" &&
    ip -n "${tag}sw" link set "v-$h" master br0 up &&
    ip -n "$tag$h" addr add "${addr[$h]}/24" dev eth0 &&
    ip -n "$tag$h" link set eth0 up && ip -n "$tag$h" link set lo up ||
    { bad "network for $h"; exit 1; }
done
addrs="$(ip -4 addr show)"
grep -q "$net\." <<< "$addrs" && bad "an address of $net.0/24 outside the namespaces" ||
  ok "no $net.0/24 address in this namespace"

# the services, each in its host (the scripts of deploy/local, given the addresses)
in_ns redis "$root/deploy/local/redis.sh" start > redis.out 2>&1 && ok "redis on ${addr[redis]}" ||
  { bad "redis: $(tail -5 redis.out)"; exit 1; }
in_ns kafka "$root/deploy/local/kafka.sh" start > kafka.out 2>&1 && ok "kafka on ${addr[kafka]}" ||
  { bad "kafka: $(tail -5 kafka.out)"; exit 1; }
in_ns client "$build/bin/maas-kafka-admin" --brokers "$MAAS_KAFKA_BROKERS" create-topics --timeout 30 \
  > topics.out 2>&1 && ok "topics made from the client host" || { bad "topics: $(cat topics.out)"; exit 1; }
for i in 1 2; do
  (in_ns "w$i" env MAAS_CONFIG="$MAAS_STATE_DIR/credentials/worker.conf" \
     nohup "$build/bin/maas-worker" --id "w$i" --http "${addr[w$i]}:19100" \
     -X kafka.session.timeout.ms=6000 > "w$i.log" 2>&1 < /dev/null & echo $! > "w$i.pid")
done
in_ns coord "$root/deploy/local/coordinator.sh" start > coord.out 2>&1 &&
  ok "coordinator on ${addr[coord]}" || { bad "coordinator: $(tail -5 coord.out)"; exit 1; }
for i in 1 2; do
  ready=""
  for ((t = 0; t < 600; t++)); do
    ready="$(in_ns client curl -s -m 2 "http://${addr[w$i]}:19100/readyz")"
    [[ "$ready" == *'"ready": true'* ]] && break
    sleep 0.1
  done
  [[ "$ready" == *'"ready": true'* ]] && ok "w$i ready on ${addr[w$i]}" ||
    { bad "w$i not ready: $ready $(tail -5 "w$i.log")"; exit 1; }
done

# the seed scenario from the client host
data="$root/examples/data/pima-indians-diabetes.csv"
head -n 615 "$data" > train.csv
{ head -n 1 "$data"; tail -n 154 "$data"; } > test.csv
head -n 2 test.csv > one.csv
seed() {
  in_ns client "$maas" dataset put pima-train --data train.csv --label diabetes &&
    in_ns client "$maas" submit train --name pima --dataset pima-train --layers 10:relu,1:sigmoid \
      --loss binary_crossentropy --optimizer adam --epochs 10 --batch-size 32 --standardize \
      --seed 7 --wait &&
    in_ns client "$maas" alias pima production 1 &&
    in_ns client "$maas" submit evaluate --model pima@production --data test.csv --label diabetes \
      --wait &&
    in_ns client "$maas" submit infer --model pima@production --data one.csv --drop diabetes --wait
}
timeout 180 bash -c "$(declare -f in_ns seed); tag=$tag maas=$maas; seed" > seed.out 2>&1 &&
  ok "the seed scenario ran across the hosts" || { bad "seed scenario: $(tail -20 seed.out)"; exit 1; }
key="$work/admin.key"
in_ns client "$maas" tenant admin-key --key-file "$key" > /dev/null 2>&1
body='{"inputs": [[6, 148, 72, 35, 0, 33.6, 0.627, 50]], "alias": "production"}'
out="$(in_ns client curl -s -m 30 -H "Authorization: Bearer $(cat "$key")" \
  -H 'Content-Type: application/json' -d "$body" "http://${addr[coord]}:18080/v1/models/pima:predict")"
[[ "$out" == *'"outputs"'* ]] && ok "an HTTP predict through the coordinator: $out" ||
  bad "HTTP predict: $out"

# a stream of inference jobs; w1's link cut a third of the way in
n=90
: > ids.txt
for ((j = 0; j < n; j++)); do
  if ((j == n / 3)); then
    ip -n "${tag}sw" link set v-w1 down && ok "w1's link cut after $j jobs" || bad "link down"
    date +%s%3N > cut_ms
  fi
  in_ns client "$maas" submit infer --model pima@production --data one.csv --drop diabetes \
    2> /dev/null | tail -n 1 >> ids.txt
done
[[ $(grep -c . ids.txt) -eq $n ]] && ok "$n jobs submitted" || bad "submitted $(grep -c . ids.txt) of $n"
# every job final within the deadline (the group moves w1's partitions after its 6 s session)
deadline=$((SECONDS + 120)) left=$n
while ((SECONDS < deadline)); do
  left=0
  : > states.txt
  while read -r id; do
    st="$(in_ns client "$maas" job "$id" 2> /dev/null | sed -n 's/^state: *//p' | head -n 1)"
    echo "$id ${st:-?}" >> states.txt
    [[ "$st" == succeeded || "$st" == failed || "$st" == expired || "$st" == cancelled ]] || left=$((left + 1))
  done < ids.txt
  ((left == 0)) && break
  sleep 1
done
((left == 0)) && ok "every job final after the cut" || bad "$left of $n jobs not final: $(grep -v succeeded states.txt | head -5)"
[[ $(grep -c ' succeeded$' states.txt) -eq $n ]] && ok "all $n succeeded" ||
  bad "not all succeeded: $(grep -v ' succeeded$' states.txt | head -5)"
# who did them: after the cut, w2 only (w1 could reach neither Kafka nor Redis)
cut="$(cat cut_ms)"
by_w1_after=0 by_w2=0 by_w1=0
while read -r id _; do
  rec="$(in_ns client "$maas" job "$id" 2> /dev/null)"
  w="$(sed -n 's/^worker: *//p' <<< "$rec" | head -n 1)"
  created="$(sed -n 's/^created: *\([0-9]*\) ms$/\1/p' <<< "$rec" | head -n 1)"
  fin="$(sed -n 's/^finished: *+\([0-9]*\) ms$/\1/p' <<< "$rec" | head -n 1)"
  [[ -n "$created" && -n "$fin" ]] && fin=$((created + fin))
  [[ "$w" == w2 ]] && by_w2=$((by_w2 + 1))
  [[ "$w" == w1 ]] && by_w1=$((by_w1 + 1))
  [[ "$w" == w1 && -n "$fin" && "$fin" -gt $((cut + 1000)) ]] && by_w1_after=$((by_w1_after + 1))
done < states.txt
((by_w2 > 0)) && ok "w2 did $by_w2 of them (w1 $by_w1)" || bad "w2 did none (w1 $by_w1)"
((by_w1_after == 0)) && ok "none finished by w1 after its link was cut" ||
  bad "$by_w1_after finished by w1 after the cut"
echo "test_multihost: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
