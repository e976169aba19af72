#!/usr/bin/env bash
# Partitions as a setting (issue 19): maas-kafka-admin create-topics --partitions N makes the
# job topics with N partitions (the dead-letter topic keeps 1), grows topics made with fewer,
# and never shrinks one (it says so). Against the services fixture's broker, under a prefix
# of its own. usage: test_partitions.sh MAAS_KAFKA_ADMIN
set -uo pipefail
admin="$1"
brokers="${MAAS_KAFKA_BROKERS:-127.0.0.1:29092}"
p="pt$RANDOM$RANDOM."
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
run() { "$admin" --brokers "$brokers" create-topics --prefix "$p" --timeout 30 "$@"; }

out="$(run --partitions 2 2> err)"
[[ "$out" == *"${p}jobs.infer 2"* && "$out" == *"${p}jobs.work 2"* && "$out" == *"${p}jobs.dlq 1"* ]] \
  && ok "--partitions 2: the job topics made with 2, the dead-letter topic with 1" || bad "made: $out $(cat err)"
out="$(run --partitions 4 2> err)"
[[ "$out" == *"${p}jobs.infer 4"* && "$(cat err)" == *"grew from 2 to 4"* ]] \
  && ok "--partitions 4 grows them ($(head -n 1 err))" || bad "grow: $out $(cat err)"
[[ "$("$admin" --brokers "$brokers" partitions "${p}jobs.work")" == 4 ]] && ok "the broker says 4" || bad "partitions"
out="$(run --partitions 3 2> err)"
[[ "$out" == *"${p}jobs.infer 4"* && "$(cat err)" == *"cannot shrink"* ]] \
  && ok "--partitions 3 keeps 4 and says why" || bad "shrink: $out $(cat err)"
out="$(run 2> err)"
[[ "$out" == *"${p}jobs.infer 4"* ]] && ok "without --partitions, existing topics are left as they are" || bad "plain: $out"
"$admin" --brokers "$brokers" create-topics --partitions 0 > /dev/null 2> err; rc=$?
[[ $rc -eq 2 && "$(cat err)" == *"1..1024"* ]] && ok "--partitions 0 is refused ($(cat err))" || bad "bad N: rc $rc $(cat err)"
echo "partitions: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
