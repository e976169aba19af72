#!/usr/bin/env bash
# The CLI's cluster mode against real Kafka, Redis and a worker (services fixture):
# train -> wait -> version 1 -> alias -> infer by alias -> export -> the file predicts the
# same locally; optimize (int8 + pruning) -> version 2 with lineage, served in int8, exported
# dequantized; a bf16 optimize job -> version 3, served, its stored file predicts locally what
# the cluster did; import of a Keras-layout file and of a Keras-trained CNN, then inference
# through the cluster with the expected answers; unknown,
# pending and cancelled jobs told apart; bad requests named.
# usage: test_cli_cluster.sh MAAS WORKER PIMA_CSV H5_FIXTURE_DIR WORKDIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
maas="$(realpath "$1")" worker="$(realpath "$2")" pima="$(realpath "$3")" fx="$(realpath "$4")" work="$5"
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
export MAAS_KAFKA_BROKERS="${MAAS_KAFKA_BROKERS:-127.0.0.1:29092}" MAAS_REDIS_URL="${MAAS_REDIS_URL:-redis://127.0.0.1:26379}"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
wpid=
start_worker() { "$worker" --id "cli-$1" -X kafka.session.timeout.ms=6000 > "worker-$1.log" 2>&1 & wpid=$!; }
stop_worker() { [[ -n "$wpid" ]] && kill "$wpid" 2>/dev/null && wait "$wpid" 2>/dev/null; wpid=; }
trap stop_worker EXIT
run="r$RANDOM$RANDOM"
head -n 615 "$pima" > train.csv
{ head -n 1 "$pima"; tail -n 154 "$pima"; } > test.csv
head -n 11 test.csv > ten.csv

start_worker a
if "$maas" submit train --name "p$run" --data train.csv --label diabetes --layers 10:relu,1:sigmoid \
     --epochs 10 --standardize --seed 7 --wait > train.out 2> train.err; then ok "train --wait"; else bad "train: $(cat train.err)"; fi
grep -q "^p$run version 1: loss" train.out && ok "version 1 made" || bad "train output: $(cat train.out)"
[[ $(grep -c '^Epoch ' train.err) -eq 10 ]] && ok "10 epoch lines" || bad "epoch lines: $(cat train.err)"
"$maas" alias "p$run" production 1 > /dev/null && ok "alias" || bad "alias"
"$maas" submit infer --model "p$run@production" --data ten.csv --drop diabetes --wait > cluster.txt 2>/dev/null
[[ $(wc -l < cluster.txt) -eq 10 ]] && ok "infer by alias: 10 outputs" || bad "infer output: $(cat cluster.txt)"
"$maas" export "p$run@production" -o model.h5 2>/dev/null && ok "export" || bad "export"
"$maas" predict -m model.h5 --data ten.csv --drop diabetes > local.txt
diff -q cluster.txt local.txt > /dev/null && ok "the exported file predicts what the cluster did" || bad "local != cluster"
"$maas" versions "p$run" | grep -q "^1 " && ok "versions lists it" || bad "versions"

# optimize jobs: int8 + pruning with fine-tuning -> version 2 with lineage; served in int8
if "$maas" submit optimize --model "p$run:1" --quantize int8 --prune 0.5 --finetune-epochs 2 \
     --data train.csv --label diabetes --wait > opt.out 2> opt.err; then ok "optimize --wait"; else bad "optimize: $(cat opt.err)"; fi
grep -q "^p$run version 2, from version 1: {\"bytes_before\"" opt.out && ok "version 2 names its parent" || bad "optimize output: $(cat opt.out)"
grep -q '"sparsity": 0.5' opt.out && grep -q '"accuracy_before"' opt.out && grep -q '"predict_us_after"' opt.out \
  && ok "size, sparsity, accuracy and latency recorded" || bad "optimize metrics: $(cat opt.out)"
[[ $(grep -c '^Epoch ' opt.err) -eq 2 ]] && ok "2 fine-tuning epoch lines" || bad "fine-tune lines: $(cat opt.err)"
"$maas" versions "p$run" > versions.out
grep -qE '^2 +1 ' versions.out && grep -q '"quantize": "int8"' versions.out && ok "versions shows lineage and method" || bad "versions: $(cat versions.out)"
"$maas" submit infer --model "p$run:2" --data ten.csv --drop diabetes --wait > q.txt 2>/dev/null
[[ $(wc -l < q.txt) -eq 10 ]] && ok "the int8 version serves" || bad "int8 infer: $(cat q.txt)"
"$maas" export "p$run:2" -o q-stored.h5 --stored 2>/dev/null && "$maas" inspect q-stored.h5 | grep -q "weights:      int8" \
  && ok "export --stored keeps the int8 file" || bad "export --stored"
"$maas" predict -m q-stored.h5 --data ten.csv --drop diabetes > qlocal.txt
diff -q q.txt qlocal.txt > /dev/null && ok "the int8 file predicts locally what the cluster did" || bad "int8 local != cluster"
"$maas" export "p$run:2" -o q-keras.h5 2> export.err && grep -q "dequantized" export.err \
  && ! "$maas" inspect q-keras.h5 | grep -q "int8" && ok "export dequantizes for Keras" || bad "export of int8: $(cat export.err)"
/usr/bin/python3 -c "import h5py,sys; f=h5py.File(sys.argv[1]); assert f['model_weights/dense/dense/kernel:0'].dtype.kind=='f'" q-keras.h5 \
  && ok "h5py reads float kernels in the exported file" || bad "h5py on the exported file"
"$maas" predict -m q-keras.h5 --data ten.csv --drop diabetes > qfloat.txt
paste -d, q.txt qfloat.txt | awk -F, '{d=$1-$2; if (d<0) d=-d; if (d > 0.02) exit 1}' \
  && ok "dequantized float predicts within 0.02 of int8" || bad "dequantized: $(paste -d, q.txt qfloat.txt | head -3)"
"$maas" submit optimize --model "p$run:2" --quantize int8 --wait > /dev/null 2> again.err
[[ $? -eq 1 ]] && grep -q "already int8" again.err && ok "re-quantizing is refused, named" || bad "requantize: $(cat again.err)"
# explained inference: the cluster's attributions are the local command's (the same double-precision
# code on the same weights and baseline)
"$maas" export "p$run:1" -o p1.h5 2>/dev/null
if "$maas" submit infer --model "p$run:1" --data ten.csv --drop diabetes --explain integrated_gradients \
     --steps 64 --baseline mean --wait > ex.txt 2> ex.err; then ok "explain --wait"; else bad "explain: $(cat ex.err)"; fi
"$maas" predict -m p1.h5 --data ten.csv --drop diabetes --explain integrated_gradients --steps 64 \
  --baseline mean > exlocal.txt
[[ $(wc -l < ex.txt) -eq 11 ]] && diff -q ex.txt exlocal.txt > /dev/null && ok "the cluster's attributions are the local ones" \
  || bad "explain cluster != local: $(diff ex.txt exlocal.txt | head -4)"
"$maas" submit infer --model "p$run:1" --data ten.csv --drop diabetes --explain gradient_x_input --steps 8 \
  > /dev/null 2> exbad.err
[[ $? -eq 2 ]] && grep -q "go with --explain integrated_gradients" exbad.err && ok "--steps without integrated gradients is a usage error" \
  || bad "explain usage: $(cat exbad.err)"

# a bf16 optimize job: version 3 from version 1, served, its stored file predicts what the cluster did
if "$maas" submit optimize --model "p$run:1" --quantize bf16 --data train.csv --label diabetes --wait \
     > bf.out 2> bf.err; then ok "bf16 optimize --wait"; else bad "bf16 optimize: $(cat bf.err)"; fi
grep -q "^p$run version 3, from version 1: {\"bytes_before\"" bf.out && ok "the bf16 version names its parent" || bad "bf16 output: $(cat bf.out)"
"$maas" versions "p$run" | grep -E '^3 +1 ' | grep -q '"quantize": "bf16"' && ok "versions shows the bf16 method" || bad "bf16 versions: $("$maas" versions "p$run")"
"$maas" submit infer --model "p$run:3" --data ten.csv --drop diabetes --wait > b.txt 2>/dev/null
"$maas" export "p$run:3" -o b-stored.h5 --stored 2>/dev/null && "$maas" inspect b-stored.h5 | grep -q "weights:      bf16" \
  && ok "export --stored keeps the bf16 file" || bad "bf16 export --stored"
"$maas" predict -m b-stored.h5 --data ten.csv --drop diabetes > blocal.txt
[[ $(wc -l < b.txt) -eq 10 ]] && diff -q b.txt blocal.txt > /dev/null && ok "the bf16 file predicts locally what the cluster did" \
  || bad "bf16 local != cluster: $(paste -d, b.txt blocal.txt | head -3)"
"$maas" submit optimize --model "p$run:1" --prune 0.5 --finetune-epochs 1 --wait > /dev/null 2> nodata.err
[[ $? -eq 2 ]] && grep -q "needs --prune and labelled data" nodata.err && ok "fine-tuning without data is a usage error" || bad "nodata: $(cat nodata.err)"

# a file in tf.keras layout (made with h5py), imported and served
if "$maas" import "$fx/good_tfkeras.h5" --name "k$run" > import.out 2>&1; then ok "import"; else bad "import: $(cat import.out)"; fi
"$maas" submit infer --model "k$run" --data "$fx/good_tfkeras.x.csv" --wait > kx.txt 2>/dev/null
paste -d, kx.txt "$fx/good_tfkeras.expected.csv" | awk -F, '{d=$1-$2; if (d<0) d=-d; if (d > 1e-5 + 1e-5*($2<0?-$2:$2)) exit 1}' \
  && [[ $(wc -l < kx.txt) -eq 12 ]] && ok "the imported Keras model serves numpy's predictions" || bad "imported predictions: $(head -3 kx.txt)"
# a CNN trained and saved by real Keras 3 (tests/interop/make_keras_cnn_fixture.py: Conv2D,
# BatchNormalization, pooling, GlobalAveragePooling2D), imported and served with Keras's answers
kfx="$here/../interop/fixtures"
if "$maas" import "$kfx/keras_cnn.h5" --name "kcnn$run" > kimport.out 2>&1; then ok "import of a Keras CNN"; else bad "import cnn: $(cat kimport.out)"; fi
"$maas" submit infer --model "kcnn$run" --data "$kfx/keras_cnn.x.csv" --wait > kc.txt 2>/dev/null
/usr/bin/python3 - kc.txt "$kfx/keras_cnn.expected.csv" <<'PY' && ok "the cluster serves the Keras CNN with Keras's answers" || bad "keras cnn: $(head -3 kc.txt)"
import sys, numpy as np
got, want = np.loadtxt(sys.argv[1], delimiter=",", ndmin=2), np.loadtxt(sys.argv[2], delimiter=",", ndmin=2)
assert got.shape == want.shape == (12, 3), got.shape
assert np.all(np.abs(got - want) <= 1e-5 + 1e-5 * np.abs(want)), np.abs(got - want).max()
PY

# a convolutional model (issue 23) trained by a train job (its layers travel as --layers items),
# served through the cluster with what its exported file predicts locally; an int8 + pruning
# optimize job makes version 2, served as its stored file predicts; bf16 fails alone, named
/usr/bin/python3 - <<'PY'
import numpy as np
r = np.random.default_rng(4)
x = r.uniform(size=(160, 36)).astype("float32")
y = (x.reshape(160, 6, 6)[:, :3].mean((1, 2)) > x.reshape(160, 6, 6)[:, 3:].mean((1, 2))).astype(int)
with open("img.csv", "w") as f:
    f.write(",".join([f"p{i}" for i in range(36)] + ["y"]) + "\n")
    for row, label in zip(x, y):
        f.write(",".join(f"{v:.6g}" for v in row) + f",{label}\n")
PY
if "$maas" submit train --name "cnn$run" --data img.csv --label y --epochs 3 --seed 2 \
     --layers reshape:6x6x1,conv2d:4:3x3:relu:same,batchnorm,maxpool:2x2,flatten,2:softmax \
     --wait > cnn.out 2> cnn.err; then ok "a CNN train job"; else bad "cnn train: $(cat cnn.err)"; fi
[[ $(grep -c '^Epoch ' cnn.err) -eq 3 ]] && grep -q "^cnn$run version 1: loss" cnn.out && ok "its version and epochs" \
  || bad "cnn output: $(cat cnn.out cnn.err)"
"$maas" submit infer --model "cnn$run" --data img.csv --drop y --wait > cnn_cluster.txt 2>/dev/null
"$maas" export "cnn$run" -o cnn.h5 2>/dev/null && "$maas" predict -m cnn.h5 --data img.csv --drop y > cnn_local.txt
[[ $(wc -l < cnn_cluster.txt) -eq 160 ]] && diff -q cnn_cluster.txt cnn_local.txt > /dev/null \
  && ok "the cluster serves the CNN as its file predicts" || bad "cnn infer: $(head -2 cnn_cluster.txt)"
head -n 6 img.csv > img5.csv
"$maas" submit infer --model "cnn$run" --data img5.csv --drop y --explain integrated_gradients --steps 32 \
  --wait > cnnx_cluster.txt 2>/dev/null
"$maas" predict -m cnn.h5 --data img5.csv --drop y --explain integrated_gradients --steps 32 > cnnx_local.txt
[[ $(wc -l < cnnx_cluster.txt) -eq 11 ]] && diff -q cnnx_cluster.txt cnnx_local.txt > /dev/null \
  && ok "the cluster explains the CNN as the local command does" || bad "cnn explain: $(head -c 300 cnnx_cluster.txt)"
if "$maas" submit optimize --model "cnn$run:1" --quantize int8 --prune 0.3 --data img.csv --label y \
     --wait > cnnq.out 2> cnnq.err; then ok "an int8 + pruning optimize job on the CNN"; else bad "cnn optimize: $(cat cnnq.err)"; fi
grep -q "^cnn$run version 2, from version 1: " cnnq.out \
  && grep -qE '"sparsity": 0\.(29|3)[0-9]*, "sparsity_per_layer": \[[0-9.e-]+, [0-9.e-]+\]' cnnq.out \
  && ok "its version 2 and sparsity" || bad "cnn optimize output: $(cat cnnq.out)"
"$maas" submit infer --model "cnn$run:2" --data img.csv --drop y --wait > cnnq_cluster.txt 2>/dev/null
"$maas" export "cnn$run:2" -o cnnq.h5 --stored 2>/dev/null && "$maas" inspect cnnq.h5 | grep -q "weights:      int8" \
  && "$maas" predict -m cnnq.h5 --data img.csv --drop y > cnnq_local.txt
[[ $(wc -l < cnnq_cluster.txt) -eq 160 ]] && diff -q cnnq_cluster.txt cnnq_local.txt > /dev/null \
  && ok "the cluster serves the int8 CNN as its stored file predicts" || bad "int8 cnn infer: $(head -2 cnnq_cluster.txt)"
"$maas" submit optimize --model "cnn$run:1" --quantize bf16 --wait > /dev/null 2> cnnb.err
[[ $? -eq 1 ]] && grep -q "UNSUPPORTED: bf16 quantization supports Dense, Dropout, Flatten and Reshape layers only so far; layer 'conv2d' is a Conv2D" cnnb.err \
  && ok "bf16 on a CNN fails alone, naming the layer" || bad "cnn bf16: $(cat cnnb.err)"

# unknown vs pending vs final; cancel; bad requests
"$maas" job "nope-$run" > /dev/null 2> unknown.err; [[ $? -eq 1 ]] && grep -q "no job 'nope-$run'" unknown.err \
  && ok "an unknown id is told apart" || bad "unknown: $(cat unknown.err)"
stop_worker
id=$("$maas" submit infer --model "p$run" --data ten.csv --drop diabetes)
"$maas" job "$id" | grep -q "state:     queued" && ok "a pending job says queued" || bad "pending: $("$maas" job "$id")"
cid=$("$maas" submit infer --model "p$run" --data ten.csv --drop diabetes)
"$maas" cancel "$cid" > /dev/null && "$maas" job "$cid" > cancelled.rec && grep -q "state:     cancelled" cancelled.rec \
  && grep -Eq "^cost:      cpu 0 s, compute 0 s, queued [0-9.e-]+ s; 0 FLOPs; peak 0 MiB; energy 0 J$" cancelled.rec \
  && ok "cancel of a queued job (its cost: the time it queued)" || bad "cancel: $(cat cancelled.rec)"
start_worker b
"$maas" job "$id" --wait > pend.txt 2>/dev/null && [[ $(wc -l < pend.txt) -eq 10 ]] && ok "the pending job completes once a worker is back" || bad "pending never completed"
"$maas" submit infer --model "p$run" --data "$pima" --wait > /dev/null 2> shape.err
[[ $? -eq 1 ]] && grep -q "SHAPE_MISMATCH: field inputs.shape\[1\]: expected 8, got 9" shape.err \
  && ok "wrong feature count named" || bad "shape: $(cat shape.err)"
"$maas" submit infer --model "nope$run" --data ten.csv --drop diabetes --wait > /dev/null 2> model.err
[[ $? -eq 1 ]] && grep -q "UNKNOWN_NAME: model 'nope$run' has no alias 'latest'" model.err \
  && ok "unknown model named" || bad "unknown model: $(cat model.err)"
"$maas" submit infer --model "p$run" --data ten.csv --drop diabetes --id "fixed-$run" > /dev/null
"$maas" submit infer --model "p$run" --data ten.csv --drop diabetes --id "fixed-$run" > /dev/null 2> dup.err
grep -q "already exists; not submitted again" dup.err && ok "an idempotency key is honoured" || bad "dup: $(cat dup.err)"
# a publish that fails (no broker listens there): the record says so, never a queued job
# that Kafka lacks; a bad -X is a usage error
"$maas" submit infer --model "p$run" --data ten.csv --drop diabetes --id "nopub-$run" \
  --brokers 127.0.0.1:1 -X kafka.message.timeout.ms=2000 > /dev/null 2> nopub.err
[[ $? -eq 1 ]] && grep -q "job nopub-$run was not published (its record says failed)" nopub.err \
  && "$maas" job "nopub-$run" > nopub.rec && grep -q "state:     failed" nopub.rec && grep -q "error:     UNAVAILABLE" nopub.rec \
  && ok "a failed publish is recorded as failed" || bad "nopub: $(cat nopub.err; cat nopub.rec 2>/dev/null)"
"$maas" submit infer --model "p$run" --data ten.csv --drop diabetes -X acks=all > /dev/null 2> badx.err
[[ $? -eq 2 ]] && grep -q "kafka.KEY=VALUE" badx.err && ok "a bad -X is named" || bad "bad -X: $(cat badx.err)"
# the fleet, recent jobs, dead letters and their replay
"$maas" workers > workers.out && grep -q "^cli-b " workers.out && ok "workers lists the live worker" || bad "workers: $(cat workers.out)"
"$maas" submit infer --model "later$run" --data ten.csv --drop diabetes --id "dl-$run" --wait > /dev/null 2>&1
"$maas" jobs --state failed --limit 50 > jobs.out && grep -q "^dl-$run .*failed .*UNKNOWN_NAME" jobs.out \
  && ok "jobs --state failed shows it with its error" || bad "jobs: $(cat jobs.out)"
"$maas" jobs --limit 5 > jobs5.out && grep -q "^dl-$run " jobs5.out && ok "jobs lists the newest first" || bad "jobs newest"
"$maas" dlq ls > dlq.out 2> dlq.err && grep -q "dl-$run .*UNKNOWN_NAME .*maas.jobs.infer" dlq.out \
  && ok "dlq ls shows the dead letter, its reason and source" || bad "dlq ls: $(cat dlq.out dlq.err)"
# the fix: the model now exists
"$maas" submit train --name "later$run" --data train.csv --label diabetes --layers 4:relu,1:sigmoid \
  --epochs 1 --standardize --wait > /dev/null 2>&1
"$maas" dlq replay "dl-$run" > replay.out 2>&1 && grep -q "replayed dl-$run" replay.out \
  && ok "dlq replay puts the job back" || bad "replay: $(cat replay.out)"
"$maas" job "dl-$run" --wait > replayed.txt 2> replayed.err && [[ $(wc -l < replayed.txt) -eq 10 ]] \
  && "$maas" job "dl-$run" > replayed.rec && grep -q "attempts:  1" replayed.rec \
  && grep -Eq "^cost:      cpu [0-9.e-]+ s, compute [0-9.e-]+ s, queued [0-9.e-]+ s; 720 FLOPs" replayed.rec \
  && ok "the replayed job succeeds (attempts reset) and says what it cost" \
  || bad "replayed: $(cat replayed.err; "$maas" job "dl-$run")"
"$maas" dlq replay "nope-$run" > /dev/null 2> noreplay.err; [[ $? -eq 1 ]] && grep -q "not on the dead-letter topic" noreplay.err \
  && ok "replaying an id that is not dead-lettered is an error" || bad "noreplay: $(cat noreplay.err)"
# the kcat + redis-cli training recipe (examples/kcat/train.sh): no maas code on the client side
"$maas" dataset put "kd$run" --data train.csv --label diabetes > /dev/null 2>&1
if "$here/../../examples/kcat/train.sh" "kd$run" "kc$run" "kct-$run" > kcat.out 2>&1 \
   && grep -q "state: succeeded" kcat.out && grep -q "^model kc$run version 1: {" kcat.out; then
  ok "the kcat training recipe trains version 1"
else bad "kcat train: $(cat kcat.out)"; fi
echo "cli cluster: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
