"""The peers issue 20 measures maas against, on the same work as maas-bench-core: ONNX Runtime
(float32 and quantize_dynamic int8) on the Fashion MLP 784-256-128-10, and Keras 3 (JAX backend)
training it one epoch with Adam at batch 128. Printed as `key value` lines for bench/run.py.

Run by bench/run.py --anchors with the anchors venv's python (bench/anchors_venv.sh), pinned to
one core (taskset) and told to use one thread (ORT's intra/inter-op pools, XLA's Eigen pool), as
maas runs; weights are random (speed does not depend on their values).

  ANCHORS_PYTHON bench/anchors.py [--repeats N] [--fashion-dir DIR]
"""
import argparse
import gzip
import os
import statistics
import sys
import tempfile
import time

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--fashion-dir", default="/usr/share/datasets/fashion-mnist")
a = ap.parse_args()
DIMS = [784, 256, 128, 10]
rng = np.random.default_rng(1)


def idx(name):
    with gzip.open(os.path.join(a.fashion_dir, name)) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


x_train = idx("train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0
y_train = idx("train-labels-idx1-ubyte.gz").astype(np.int32)

# ---- ONNX Runtime ----
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402

nodes, inits, prev = [], [], "x"
for i in range(3):
    w = (rng.standard_normal((DIMS[i], DIMS[i + 1])) * np.sqrt(2.0 / DIMS[i])).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"W{i}"),
              numpy_helper.from_array(np.zeros(DIMS[i + 1], np.float32), f"b{i}")]
    out = "y" if i == 2 else f"h{i}"
    nodes += [helper.make_node("MatMul", [prev, f"W{i}"], [f"m{i}"]),
              helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
              helper.make_node("Softmax", [f"a{i}"], [out], axis=1) if i == 2
              else helper.make_node("Relu", [f"a{i}"], [out])]
    prev = out
graph = helper.make_graph(nodes, "fashion_mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
tmp = tempfile.mkdtemp()
fpath, qpath = os.path.join(tmp, "mlp.onnx"), os.path.join(tmp, "mlp-int8.onnx")
onnx.save(model, fpath)
quantize_dynamic(fpath, qpath, weight_type=QuantType.QInt8)


def session(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


print(f"onnxruntime {ort.__version__}")
for tag, path in (("", fpath), ("_int8", qpath)):
    s = session(path)
    batch = x_train[:1024]
    s.run(None, {"x": batch})
    rates = []
    for _ in range(a.repeats * 5):
        n, t0 = 20, time.perf_counter()
        for i in range(n):
            s.run(None, {"x": x_train[(i % 50) * 1024:(i % 50 + 1) * 1024]})
        rates.append(1024 * n / (time.perf_counter() - t0))
    print(f"ort_predict1024{tag}_sps {statistics.median(rates):.0f}")
    lat = []
    for _ in range(a.repeats * 5):
        n, t0 = 2000, time.perf_counter()
        for i in range(n):
            s.run(None, {"x": x_train[i % 1000:i % 1000 + 1]})
        lat.append((time.perf_counter() - t0) / n * 1e6)
    print(f"ort_predict1{tag}_us {statistics.median(lat):.2f}")
# what a Python call into ORT costs by itself: the smallest graph there is (one Identity)
ident = helper.make_model(helper.make_graph(
    [helper.make_node("Identity", ["x"], ["y"])], "id",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])]),
    opset_imports=[helper.make_opsetid("", 17)])
ident.ir_version = 8
ipath = os.path.join(tmp, "id.onnx")
onnx.save(ident, ipath)
s, one = session(ipath), np.zeros((1, 1), np.float32)
n, t0 = 20000, time.perf_counter()
for _ in range(n):
    s.run(None, {"x": one})
print(f"ort_call_us {(time.perf_counter() - t0) / n * 1e6:.2f}")

# ---- Keras 3 on JAX ----
os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # noqa: E402

print(f"keras {keras.__version__} {keras.backend.backend()}")
keras.utils.set_random_seed(1)
m = keras.Sequential([keras.Input((784,)), keras.layers.Dense(256, activation="relu"),
                      keras.layers.Dense(128, activation="relu"),
                      keras.layers.Dense(10, activation="softmax")])
m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
          metrics=["accuracy"])


class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        times.append(time.perf_counter() - self.t0)


times = []
m.fit(x_train, y_train, epochs=a.repeats + 1, batch_size=128, verbose=0, callbacks=[Timer()])
ep = statistics.median(times[1:])  # the first epoch compiles the step
print(f"keras_epoch_s {ep:.4f}\nkeras_epoch_sps {len(x_train) / ep:.0f}")
sys.stdout.flush()
