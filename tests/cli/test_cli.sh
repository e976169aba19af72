#!/usr/bin/env bash
# The maas CLI's local mode, as a user runs it: outputs, exit codes and error messages.
# usage: test_cli.sh MAAS_BINARY PIMA_CSV WORKDIR
set -uo pipefail
maas="$(realpath "$1")" pima="$(realpath "$2")" work="$3"
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect RC SUBSTRING-OF-STDERR -- command...
expect() {
  local want_rc="$1" want_err="$2"; shift 3
  "$@" > out.txt 2> err.txt
  local rc=$?
  if [[ $rc -ne $want_rc ]]; then bad "$* -> rc $rc, want $want_rc ($(head -c 300 err.txt))"; return; fi
  if [[ -n "$want_err" ]] && ! grep -qF -- "$want_err" err.txt; then
    bad "$* -> stderr lacks '$want_err': $(head -c 300 err.txt)"; return
  fi
  ok
}

# --- the happy path
expect 0 "saved model.h5" -- "$maas" fit --data "$pima" --label diabetes --layers 10:relu,1:sigmoid \
  --epochs 10 --batch-size 32 --validation-split 0.2 --standardize --seed 7 -o model.h5
[[ $(grep -c '^Epoch ' out.txt) -eq 10 ]] && grep -q '^Epoch 10/10 - .* - val_accuracy: ' out.txt && ok \
  || bad "fit epoch lines: $(cat out.txt)"
grep -q $'\r' err.txt && bad "progress bar drawn on a non-terminal" || ok
[[ -s model.h5 ]] && ok || bad "model.h5 not written"

expect 0 "" -- "$maas" predict -m model.h5 --data "$pima" --drop diabetes
[[ $(wc -l < out.txt) -eq 768 ]] && ok || bad "predict printed $(wc -l < out.txt) lines, want 768"
awk '!($1 >= 0 && $1 <= 1) { exit 1 }' out.txt && ok || bad "predict outputs outside [0, 1]"
cp out.txt probs.txt
expect 0 "" -- "$maas" predict -m model.h5 --data "$pima" --drop diabetes --classes
paste probs.txt out.txt | awk '{ if (($1 > 0.5) != $2) exit 1 }' && ok || bad "--classes disagrees with 0.5"
expect 0 "" -- "$maas" predict -m model.h5 --data "$pima" --drop diabetes --format json
/usr/bin/python3 -c 'import json,sys; r=json.load(open("out.txt")); assert len(r)==768 and len(r[0])==1' \
  && ok || bad "predict --format json is not a 768-row JSON array"

expect 0 "" -- "$maas" evaluate -m model.h5 --data "$pima" --label diabetes
grep -qE '^768 rows - loss: [0-9.]+ - accuracy: 0\.[0-9]+$' out.txt && ok || bad "evaluate: $(cat out.txt)"
expect 0 "" -- "$maas" inspect model.h5
grep -q 'dense_1 .*sigmoid' out.txt && grep -q 'standardized' out.txt && grep -q 'loss binary_crossentropy' out.txt \
  && ok || bad "inspect: $(cat out.txt)"

# --- bf16: optimize, inspect, predict, refusals, back to float32
expect 0 "" -- "$maas" optimize -m model.h5 --bf16 -o bf16.h5 --data "$pima" --label diabetes
grep -qE '^quantized: bf16 kernels, bf16 inputs per row, float32 sums \((avx512-bf16|float32) kernel\)$' out.txt \
  && grep -qE '^size \(bytes\) +[0-9]+ +[0-9]+ +[0-9.]+x smaller$' out.txt && grep -q '^accuracy ' out.txt \
  && ok || bad "optimize --bf16: $(cat out.txt)"
expect 0 "" -- "$maas" inspect bf16.h5
grep -q '^weights:      bf16 kernels' out.txt && ok || bad "inspect bf16: $(cat out.txt)"
expect 0 "" -- "$maas" predict -m bf16.h5 --data "$pima" --drop diabetes
[[ $(wc -l < out.txt) -eq 768 ]] && ok || bad "predict bf16: $(head -3 out.txt)"
expect 1 "already bf16-quantized" -- "$maas" optimize -m bf16.h5 --quantize int8 -o x.h5
expect 2 "--quantize takes int8 or bf16, got 'fp8'" -- "$maas" optimize -m model.h5 --quantize fp8 -o x.h5
expect 0 "" -- "$maas" optimize -m bf16.h5 --dequantize -o bf16-float.h5
/usr/bin/python3 - bf16.h5 bf16-float.h5 <<'PY' && ok || bad "bf16 file layout"
import sys, h5py, numpy as np
b, f = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
assert b.attrs["maas_quantization"] == "bf16" and "maas_quantization" not in f.attrs
for name in ("dense", "dense_1"):
    kb, kf = b[f"model_weights/{name}/{name}/kernel:0"], f[f"model_weights/{name}/{name}/kernel:0"]
    assert kb.id.get_type().get_size() == 2 and kf.id.get_type().get_size() == 4
    assert np.array_equal(kb[()], kf[()])  # h5py widens bf16 exactly: the same float32 values
    assert not np.any(kf[()].view(np.uint32) & 0xFFFF)
PY

# --- explanations: integrated gradients sum to f(x) - f(baseline); formats; usage errors
{ head -n 1 "$pima"; sed -n 2,21p "$pima"; } > twenty.csv
expect 0 "" -- "$maas" predict -m model.h5 --data twenty.csv --drop diabetes --explain integrated_gradients \
  --steps 256 --baseline mean
cp out.txt ig.csv
expect 0 "" -- "$maas" predict -m model.h5 --data twenty.csv --drop diabetes
cp out.txt pred.csv
/usr/bin/python3 - ig.csv pred.csv twenty.csv <<'PY' > base.csv && ok || bad "explain output: $(head -3 ig.csv)"
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
assert rows[0] == ["row", "output", "prediction"] + [f"x{i}" for i in range(8)], rows[0]
assert len(rows) == 21 and [int(r[0]) for r in rows[1:]] == list(range(20))
preds = [float(l) for l in open(sys.argv[2])]
assert all(abs(float(r[2]) - p) <= 1e-7 for r, p in zip(rows[1:], preds))
data = list(csv.reader(open(sys.argv[3])))
mean = [sum(float(d[i]) for d in data[1:]) / 20 for i in range(8)]
print(",".join(data[0][:8]))
print(",".join("%.9g" % v for v in mean))
PY
expect 0 "" -- "$maas" predict -m model.h5 --data base.csv
fb="$(cat out.txt)"
/usr/bin/python3 - ig.csv "$fb" <<'PY' && ok || bad "integrated gradients are not complete"
import csv, sys
fb = float(sys.argv[2])
for r in list(csv.reader(open(sys.argv[1])))[1:]:
    change = float(r[2]) - fb
    # the midpoint rule's error where a relu unit switches along the path: 1% of the change,
    # and 0.001 of the probability scale for tiny changes
    assert abs(sum(map(float, r[3:])) - change) <= 0.01 * abs(change) + 1e-3, (r, fb)
PY
expect 0 "" -- "$maas" predict -m model.h5 --data twenty.csv --drop diabetes --explain gradient_x_input --format json
/usr/bin/python3 -c "import json,sys; d=json.load(open('out.txt')); assert len(d)==20 and len(d[0]['attributions'])==1 and len(d[0]['attributions'][0])==8" \
  && ok || bad "explain json: $(head -c 300 out.txt)"
cp out.txt gxi.json
# an independent reference: the trained model read with h5py, its gradient by hand in numpy
# (float64), gradient x input and integrated gradients (the same midpoint rule, 256 steps, the
# mean baseline); both sides compute in double from the same float32 weights, so they agree to
# the float32 rounding of the printed attributions (2^-24 relative) plus a margin of 64x
/usr/bin/python3 - model.h5 twenty.csv base.csv gxi.json ig.csv <<'PY' && ok || bad "explanations differ from numpy's"
import csv, json, sys
import h5py, numpy as np
f = h5py.File(sys.argv[1])
layers = json.loads(f.attrs["model_config"])["config"]["layers"]
def rows(p, drop_label):
    d = list(csv.reader(open(p)))
    return np.array([[float(v) for v in (r[:8] if drop_label else r)] for r in d[1:]])
X, base = rows(sys.argv[2], True), rows(sys.argv[3], False)[0]
def grad(x):  # d f / d x for the one output, by the chain rule written out
    h, back = x.astype(np.float64), []
    for l in layers:
        c = l["config"]
        if l["class_name"] == "Normalization":
            s = np.maximum(np.sqrt(np.array(c["variance"], np.float64)), 1e-7)
            h = (h - np.array(c["mean"], np.float64)) / s
            back.append(("scale", 1 / s))
        elif l["class_name"] == "Dense":
            g = f[f"model_weights/{c['name']}/{c['name']}"]
            W, b = g["kernel:0"][()].astype(np.float64), g["bias:0"][()].astype(np.float64)
            z = h @ W + b
            h = np.maximum(z, 0) if c["activation"] == "relu" else 1 / (1 + np.exp(-z))
            d = (z > 0).astype(np.float64) if c["activation"] == "relu" else h * (1 - h)
            back.append(("dense", W, d))
    gr = np.ones(1)
    for k in reversed(back):
        gr = gr * k[1] if k[0] == "scale" else (gr * k[2]) @ k[1].T
    return gr
gxi = np.array([x * grad(x) for x in X])
ours = np.array([r["attributions"][0] for r in json.load(open(sys.argv[4]))])
scale = np.abs(gxi).max()
assert np.abs(ours - gxi).max() <= 64 * 2.0**-24 * scale, (np.abs(ours - gxi).max(), scale)
steps = 256
ig = np.array([(x - base) * np.mean([grad(base + (k - 0.5) / steps * (x - base))
                                     for k in range(1, steps + 1)], axis=0) for x in X])
ours_ig = np.array([[float(v) for v in r[3:]] for r in list(csv.reader(open(sys.argv[5])))[1:]])
scale = np.abs(ig).max()
assert np.abs(ours_ig - ig).max() <= 64 * 2.0**-24 * scale, (np.abs(ours_ig - ig).max(), scale)
PY
expect 2 "unknown explanation 'shap'" -- "$maas" predict -m model.h5 --data twenty.csv --drop diabetes --explain shap
expect 2 "--steps and --baseline are integrated_gradients' options" -- "$maas" predict -m model.h5 \
  --data twenty.csv --drop diabetes --explain gradient_x_input --steps 8
expect 2 "--steps and --baseline go with --explain" -- "$maas" predict -m model.h5 --data twenty.csv \
  --drop diabetes --steps 8

# --- HDF5 datasets, categorical labels as class indices
/usr/bin/python3 - <<'PY'
import h5py, numpy as np
r = np.random.default_rng(0)
x = r.normal(size=(200, 4)).astype("float32")
y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0).astype("int64")
with h5py.File("d.h5", "w") as f:
    f["x"] = x
    f["y"] = y
PY
expect 0 "" -- "$maas" fit --data d.h5:/x --labels d.h5:/y --layers 16:relu,3:softmax --epochs 30 \
  --lr 0.01 --seed 1 -q -o m3.h5
expect 0 "" -- "$maas" fit --data d.h5:/x --labels d.h5:/y --layers 16:relu,3:softmax \
  --loss categorical_crossentropy --epochs 2 --seed 1 -q -o m3c.h5
expect 0 "" -- "$maas" evaluate -m m3.h5 --data d.h5:/x --labels d.h5:/y --format json
/usr/bin/python3 -c 'import json; r=json.load(open("out.txt")); assert r["rows"]==200 and r["accuracy"]>0.8, r' \
  && ok || bad "evaluate on HDF5 data: $(cat out.txt)"
expect 0 "" -- "$maas" predict -m m3.h5 --data d.h5:/x
[[ $(wc -l < out.txt) -eq 200 && $(head -1 out.txt | tr ',' '\n' | wc -l) -eq 3 ]] && ok || bad "3-class predict shape"

# --- images: a rank-3 HDF5 dataset gives flat rows (channels last); a small CNN trains on it,
# inspect shows the shapes, and the same images as a flat 2-D dataset predict the same
/usr/bin/python3 - <<'PY'
import h5py, numpy as np
r = np.random.default_rng(2)
x = r.uniform(size=(120, 6, 6)).astype("float32")
y = (x[:, :3, :].mean((1, 2)) > x[:, 3:, :].mean((1, 2))).astype("int64")
with h5py.File("img.h5", "w") as f:
    f["x"], f["flat"], f["y"] = x, x.reshape(120, 36), y
PY
expect 0 "120 rows x 36 features" -- "$maas" fit --data img.h5:/x --labels img.h5:/y \
  --layers reshape:6x6x1,conv2d:3:3x3:relu:same,batchnorm,maxpool:2x2,flatten,2:softmax \
  --epochs 3 --seed 1 -o cnn.h5
expect 0 "" -- "$maas" inspect cnn.h5
grep -q "conv2d  *Conv2D  *(None, 6, 6, 3)  *relu  *30" out.txt && grep -q "(None, 3, 3, 3)" out.txt \
  && grep -q "batch_normalization  *BatchNormalization" out.txt && ok || bad "inspect of a CNN: $(cat out.txt)"
expect 0 "" -- "$maas" predict -m cnn.h5 --data img.h5:/x
mv out.txt p3.txt
expect 0 "" -- "$maas" predict -m cnn.h5 --data img.h5:/flat
cmp -s out.txt p3.txt && [[ $(wc -l < p3.txt) -eq 120 ]] && ok || bad "rank-3 and flat rows predict differently"
# explanations of a CNN: 36 attributions per row and output, complete within 1% (64 steps)
expect 0 "" -- "$maas" predict -m cnn.h5 --data img.h5:/x --explain integrated_gradients --steps 64
/usr/bin/python3 - out.txt p3.txt <<'PY' && ok || bad "explain a CNN: $(head -c 300 out.txt)"
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
assert rows[0][:3] == ["row", "output", "prediction"] and rows[0][-1] == "x35" and len(rows) == 241
base = {}
for r in rows[1:]:  # the zero baseline's predictions are what the attributions do not explain
    base.setdefault(r[0], []).append(float(r[2]) - sum(map(float, r[3:])))
assert all(abs(sum(v) - 1.0) < 0.02 for v in base.values())  # softmax: f(0) sums to 1 too
PY
expect 1 "needs inputs of (height, width, channels)" -- "$maas" fit --data img.h5:/x \
  --labels img.h5:/y --layers conv2d:3:3x3,flatten,2:softmax -o x.h5
expect 2 "is not conv2d:FILTERS:KHxKW" -- "$maas" fit --data img.h5:/x --labels img.h5:/y \
  --layers reshape:6x6x1,conv2d:3:3,flatten,2:softmax -o x.h5
# int8 convolutions (per filter) and pruning of their kernels; bf16 refuses a CNN by name
expect 0 "" -- "$maas" optimize -m cnn.h5 --quantize int8 --prune 0.5 -o cnnq.h5 --data img.h5:/x \
  --labels img.h5:/y
grep -qE '^pruned: +5[0-9.]+% of kernel weights are zero \(conv2d [0-9.]+%, dense [0-9.]+%\)' out.txt && grep -q '^accuracy ' out.txt \
  && ok || bad "optimize of a CNN: $(cat out.txt)"
expect 0 "" -- "$maas" inspect cnnq.h5
grep -q '^weights:      int8' out.txt && grep -q '^sparsity:     5[0-9.]*% of kernel weights' out.txt \
  && ok || bad "inspect of an int8 CNN: $(cat out.txt)"
expect 0 "" -- "$maas" predict -m cnnq.h5 --data img.h5:/x
[[ $(wc -l < out.txt) -eq 120 ]] && ok || bad "predict int8 CNN: $(head -3 out.txt)"
/usr/bin/python3 - cnnq.h5 <<'PY' && ok || bad "int8 CNN file layout"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1])
assert f.attrs["maas_quantization"] == "int8"
g = f["model_weights/conv2d/conv2d"]
q, s = g["kernel_q:0"][()], g["kernel_scale:0"][()]
assert q.dtype == np.int8 and q.shape == (3, 3, 1, 3) and s.shape == (3,) and np.all(s > 0)
assert np.abs(q).max() == 127 and "moving_mean:0" in f["model_weights/batch_normalization/batch_normalization"]
PY
expect 1 "bf16 quantization supports Dense" -- "$maas" optimize -m cnn.h5 --quantize bf16 -o b.h5

# --- a large HDF5 matrix (16.8 MB: trained on as read, its pages asked for in one go), read
# whole: the predictions are numpy's on the same weights, and a NaN in its last cell is found
/usr/bin/python3 - <<'PY'
import h5py, numpy as np
r = np.random.default_rng(1)
x = r.normal(size=(4200, 1000)).astype("float32")
with h5py.File("big.h5", "w") as f:
    f["x"], f["y"] = x, (x[:, 0] > 0).astype("int64")
x[-1, -1] = np.nan
with h5py.File("bignan.h5", "w") as f:
    f["x"], f["y"] = x, np.zeros(4200)
PY
expect 0 "4200 rows x 1000 features (read in" -- "$maas" fit --data big.h5:/x --labels big.h5:/y \
  --layers 2:softmax --epochs 1 --seed 1 -o mbig.h5
expect 0 "" -- "$maas" predict -m mbig.h5 --data big.h5:/x
/usr/bin/python3 - <<'PY' && ok || bad "predict on the large HDF5 matrix differs from numpy's"
import h5py, numpy as np
x = h5py.File("big.h5", "r")["x"][:].astype(np.float64)
w = {}
h5py.File("mbig.h5", "r")["model_weights"].visititems(
    lambda n, o: w.__setitem__(n.split("/")[-1].split(":")[0], o[:]) if hasattr(o, "shape") else None)
k, b = w["kernel"].astype(np.float64), w["bias"].astype(np.float64)
z = x @ k + b
p = np.exp(z - z.max(1, keepdims=True))
p /= p.sum(1, keepdims=True)
# float32: each logit within 1001 * 2^-24 * (|x| @ |k| + |b|) (a 1000-term dot product and the
# bias, any order); two classes: p = sigmoid(z1 - z0), whose slope is at most 1/4; then the
# softmax's own rounding and %.9g
zb = 1001 * 2.0**-24 * (np.abs(x) @ np.abs(k) + np.abs(b))
bound = 0.25 * zb.sum(1, keepdims=True) + 1e-6
got = np.loadtxt("out.txt", delimiter=",")
assert got.shape == p.shape and (np.abs(got - p) <= bound).all(), np.abs(got - p).max()
PY
expect 1 "row 4199, column 999 is not finite" -- "$maas" fit --data bignan.h5:/x \
  --labels bignan.h5:/y --layers 2:softmax --epochs 1 -o mnan.h5

# --- a progress bar on a terminal
if command -v script >/dev/null; then
  script -qec "$maas fit --data $pima --label diabetes --layers 10:relu,1:sigmoid --epochs 2 --seed 1 -o tty.h5" \
    /dev/null > tty.txt 2>&1
  grep -q 'ETA' tty.txt && ok || bad "no progress bar on a terminal"
fi

# --- errors: named, non-zero, nothing partial on stdout
printf 'a,b\n1,2\n3\n' > ragged.csv
printf 'a,b\n1,2\n3,x\n' > text.csv
expect 1 "no column 'nope'" -- "$maas" fit --data "$pima" --label nope --layers 1:sigmoid -o x.h5
expect 1 "ragged.csv: csv row 2 has 1 columns" -- "$maas" fit --data ragged.csv --label b --layers 1:sigmoid -o x.h5
expect 1 "row 2, column 'b': 'x' is not a finite number" -- "$maas" fit --data text.csv --label a --layers 1 -o x.h5
expect 1 "has 9 feature columns; the model takes 8" -- "$maas" predict -m model.h5 --data "$pima"
[[ -s out.txt ]] && bad "predict printed output on error" || ok
expect 1 "labels have 4 columns; sparse_categorical_crossentropy on this model needs 1" -- "$maas" evaluate -m m3.h5 --data d.h5:/x --labels d.h5:/x
expect 2 "-o model.h5 is required" -- "$maas" fit --data "$pima" --label diabetes --layers 1:sigmoid
expect 2 "unknown activation 'swish'" -- "$maas" fit --data "$pima" --label diabetes --layers 10:swish -o x.h5
expect 2 "--epochs must be" -- "$maas" fit --data "$pima" --label diabetes --layers 1:sigmoid --epochs 0 -o x.h5
expect 2 "unknown loss 'hinge'" -- "$maas" fit --data "$pima" --label diabetes --layers 1:sigmoid --loss hinge -o x.h5
expect 1 "binary_crossentropy needs labels in [0, 1]" -- "$maas" fit --data "$pima" --label age --layers 1:sigmoid -o x.h5
expect 1 "cannot write" -- "$maas" fit --data "$pima" --label diabetes --layers 1:sigmoid --epochs 1 -o /nonexistent/x.h5
head -c 3000 model.h5 > broken.h5
expect 1 "broken.h5: the HDF5 file is truncated or corrupt" -- "$maas" predict -m broken.h5 --data "$pima"
expect 1 "not an HDF5 file" -- "$maas" inspect "$pima"
expect 1 "has no dataset '/nope'" -- "$maas" predict -m m3.h5 --data d.h5:/nope
expect 2 "unknown command 'train'" -- "$maas" train
for sub in fit evaluate predict inspect; do
  expect 0 "" -- "$maas" "$sub" --help
  grep -q "^usage: maas $sub" out.txt && ok || bad "$sub --help"
done

echo "cli: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
