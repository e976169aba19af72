#!/usr/bin/env bash
# Issue 23's accuracy target through the CLI a user runs: `maas fit` trains a small CNN
# (two Conv2D + MaxPooling blocks, Dropout 0.4, Dense 256; inputs standardized per pixel) on
# Fashion-MNIST's 60 000 training images (Debian's dataset-fashion-mnist, read as a rank-3 HDF5
# dataset: rows are the flattened 28x28 images) for 3 epochs; `maas evaluate` on the 10 000
# test images must give >= 0.90, and its int8 quantization too, within a point of it. The
# seed is fixed, but a CPU whose kernels round differently takes another path, as another seed
# does: seeds 1 and 3 gave 0.914 and 0.913 here (the same
# network with Dense 128 and Dropout 0.3 gave 0.901-0.907 over three seeds: too close to hold
# every time), so the bound holds by the network's margin, not one machine's trajectory.
# usage: test_fashion_cnn.sh MAAS_BINARY WORKDIR
set -euo pipefail
maas="$1" work="$2" here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$work"
cd "$work"
/usr/bin/python3 "$here/fashion_h5.py"
layers=reshape:28x28x1,conv2d:32:3x3:relu:same,maxpool:2x2,conv2d:64:3x3:relu:same,maxpool:2x2
layers+=,flatten,dropout:0.4,256:relu,10:softmax
"$maas" fit --data train.h5:/x --labels train.h5:/y --layers "$layers" --epochs 3 \
  --batch-size 32 --standardize --seed 1 -o cnn.h5
"$maas" evaluate -m cnn.h5 --data test.h5:/x --labels test.h5:/y --format json | tee eval.json
# quantized to int8 (per filter and unit; each window and row its own input scale), served in
# int8: it keeps the accuracy within a point (measured: 0.9144 float, 0.9142 int8 here)
"$maas" optimize -m cnn.h5 --quantize int8 -q -o cnn-int8.h5
"$maas" evaluate -m cnn-int8.h5 --data test.h5:/x --labels test.h5:/y --format json | tee eval8.json
/usr/bin/python3 - <<'PY'
import json, sys
r, q = json.load(open("eval.json")), json.load(open("eval8.json"))
print(f"fashion CNN, 3 epochs: test accuracy {r['accuracy']:.4f} on {r['rows']} images, "
      f"int8 {q['accuracy']:.4f}")
sys.exit(0 if r["rows"] == q["rows"] == 10000 and r["accuracy"] >= 0.90
         and q["accuracy"] >= 0.90 and abs(q["accuracy"] - r["accuracy"]) <= 0.01 else 1)
PY
