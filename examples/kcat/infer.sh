#!/usr/bin/env bash
# One inference job, by hand: the msgpack bytes written with printf, produced
# with kcat, the result awaited and read with redis-cli. No maas code involved.
#
#   examples/kcat/infer.sh [MODEL] [JOB_ID]
#
# The job is the msgpack map (JSON view)
#   {"v": 1, "id": JOB_ID, "type": "infer", "model": MODEL,
#    "inputs": [[6, 148, 72, 35, 0, 33.6, 0.627, 50]]}
# i.e. one row of the Pima data set; MODEL must take 8 features.
set -euo pipefail
model="${1:-pima}"
id="${2:-kcat-$(date +%s%N)}"
brokers="${MAAS_KAFKA_BROKERS:-127.0.0.1:19092}"
redis_url="${MAAS_REDIS_URL:-redis://127.0.0.1:16379}"
topic="${MAAS_TOPIC_PREFIX:-maas.}jobs.infer"
[[ ${#model} -lt 32 && ${#id} -lt 32 ]] || { echo "infer.sh: keep MODEL and JOB_ID under 32 characters" >&2; exit 2; }

# A msgpack string under 32 bytes is one byte 0xa0 + length, then the bytes.
str() { printf "\\x$(printf %x $((0xa0 + ${#1})))%s" "$1"; }
job="$(mktemp)"
trap 'rm -f "$job" "${kconf:-}"' EXIT
suffix=jobs.infer
source "$(dirname "$0")/client-conf.sh" # a tenant's login, with MAAS_CLIENT_CONF
{
  printf '\x86'                                # a map of 6 entries
  printf '\xa1v\x01'                           # "v": 1
  printf '\xa2id'; str "$id"                   # "id": JOB_ID
  printf '\xa4type\xa5infer'                   # "type": "infer"
  printf '\xa5model'; str "$model"             # "model": MODEL
  printf '\xa6notify\xc3'                      # "notify": true (fill the done-list)
  printf '\xa6inputs\x91\x98'                  # "inputs": [[ 8 numbers
  printf '\x06\xcc\x94\x48\x23\x00'            #   6, 148, 72, 35, 0,
  printf '\xcb\x40\x40\xcc\xcc\xcc\xcc\xcc\xcd' #   33.6 (float64),
  printf '\xcb\x3f\xe4\x10\x62\x4d\xd2\xf1\xaa' #   0.627,
  printf '\x32'                                #   50 ]]
} > "$job"

# kcat sends each file argument as one message; the key is the job id.
kcat "${kcat_conf[@]}" -P -b "$brokers" -t "$topic" -k "$id" "$job"
echo "produced job $id to $topic"

# Wait without polling: the job asked ("notify") for its done-list, which gets the final
# state; BLMOVE onto itself waits for it without consuming it.
# shellcheck disable=SC2046 # rc_target: words without spaces
rc=(redis-cli $(rc_target "$redis_url") --no-auth-warning "${rc_login[@]}")
state="$("${rc[@]}" BLMOVE "${keys}job:{$id}:done" "${keys}job:{$id}:done" RIGHT LEFT 30)"
echo "state: ${state:-still pending after 30 s}"
rec="$("${rc[@]}" GET "${keys}job:{$id}")"
jq -c '{model, worker, attempts, error_code, error_message}' <<< "${rec:-null}"
# The record is one JSON object; its result the base64 of msgpack ({"v", "type", "model",
# "version", "outputs": {"shape", "dtype", "data": <float32 bytes>}}); here as hex: the last 4
# bytes are the probability.
jq -r '.result // empty' <<< "${rec:-null}" | base64 -d | od -An -tx1 | tr -s ' \n' ' '
echo
[[ "$state" == succeeded ]]
