#!/usr/bin/env bash
# One training job, by hand: the msgpack bytes written with printf, produced with
# kcat; its live progress, result and new model version read with redis-cli. No
# maas code involved.
#
#   examples/kcat/train.sh DATASET [MODEL] [JOB_ID]
#
# DATASET is labelled data already in Redis (maas:dataset:{DATASET}, the msgpack map
# {"x": matrix, "y": matrix}; `maas dataset put` writes one, any client can). The job
# is the seed model (JSON view):
#   {"v": 1, "id": JOB_ID, "type": "train", "model": MODEL,
#    "layers": [{"units": 10, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
#    "loss": "binary_crossentropy", "epochs": 10, "standardize": true, "seed": 7,
#    "data": {"dataset": DATASET}}
set -euo pipefail
dataset="${1:?usage: train.sh DATASET [MODEL] [JOB_ID]}"
model="${2:-pima-kcat}"
id="${3:-kcat-train-$(date +%s%N)}"
brokers="${MAAS_KAFKA_BROKERS:-127.0.0.1:19092}"
redis_url="${MAAS_REDIS_URL:-redis://127.0.0.1:16379}"
topic="${MAAS_TOPIC_PREFIX:-maas.}jobs.work"
for v in "$dataset" "$model" "$id"; do
  [[ ${#v} -lt 32 ]] || { echo "train.sh: keep DATASET, MODEL and JOB_ID under 32 characters" >&2; exit 2; }
done

# A msgpack string under 32 bytes is one byte 0xa0 + length, then the bytes.
str() { printf "\\x$(printf %x $((0xa0 + ${#1})))%s" "$1"; }
job="$(mktemp)"
trap 'rm -f "$job" "${kconf:-}"' EXIT
suffix=jobs.work
source "$(dirname "$0")/client-conf.sh" # a tenant's login, with MAAS_CLIENT_CONF
{
  printf '\x8b'                                  # a map of 11 entries
  printf '\xa1v\x01'                             # "v": 1
  printf '\xa2id'; str "$id"                     # "id": JOB_ID
  printf '\xa4type\xa5train'                     # "type": "train"
  printf '\xa5model'; str "$model"               # "model": MODEL
  printf '\xa6notify\xc3'                        # "notify": true (fill the done-list)
  printf '\xa6layers\x92'                        # "layers": [ 2 maps
  printf '\x82\xa5units\x0a\xaaactivation\xa4relu'    #   {"units": 10, "activation": "relu"},
  printf '\x82\xa5units\x01\xaaactivation\xa7sigmoid' #   {"units": 1, "activation": "sigmoid"} ]
  printf '\xa4loss\xb3binary_crossentropy'       # "loss": "binary_crossentropy"
  printf '\xa6epochs\x0a'                        # "epochs": 10
  printf '\xabstandardize\xc3'                   # "standardize": true
  printf '\xa4seed\x07'                          # "seed": 7
  printf '\xa4data\x81\xa7dataset'; str "$dataset" # "data": {"dataset": DATASET}
} > "$job"

kcat "${kcat_conf[@]}" -P -b "$brokers" -t "$topic" -k "$id" "$job"
echo "produced job $id to $topic"

# shellcheck disable=SC2046 # rc_target: words without spaces
rc=(redis-cli $(rc_target "$redis_url") --no-auth-warning "${rc_login[@]}")
# The record is one JSON object (jq reads it); while it trains, its `progress` holds the live
# epoch.
for _ in $(seq 1 20); do
  rec="$("${rc[@]}" GET "${keys}job:{$id}")"
  p="$(jq -c '.progress // empty' <<< "${rec:-null}")"
  [[ -n "$p" ]] && { echo "progress: $p"; break; }
  st="$(jq -r '.state // empty' <<< "${rec:-null}")"
  [[ "$st" == succeeded || "$st" == failed ]] && break
  sleep 0.1
done
# Wait without polling: BLMOVE on the job's done-list (it asked: "notify") returns its
# final state.
state="$("${rc[@]}" BLMOVE "${keys}job:{$id}:done" "${keys}job:{$id}:done" RIGHT LEFT 60)"
echo "state: ${state:-still pending after 60 s}"
"${rc[@]}" GET "${keys}job:{$id}" | jq -c '{worker, attempts, error_code, error_message}'
# The new version: the model's `latest` alias, and that version's metrics and size.
v="$("${rc[@]}" HGET "${keys}model:{$model}:aliases" latest)"
echo "model $model version $v: $("${rc[@]}" HGET "${keys}model:{$model}:versions" "$v.metrics")," \
     "$("${rc[@]}" HGET "${keys}model:{$model}:versions" "$v.size") bytes of model.h5"
[[ "$state" == succeeded ]]
