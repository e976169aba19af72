#!/usr/bin/python3
"""Issue 23's benchmark: the Fashion CNN (Conv2D 32 3x3 relu, MaxPooling 2x2, Conv2D 64 3x3
relu, MaxPooling 2x2, Flatten, Dense 128 relu, Dense 10 softmax; 225 034 parameters) in maas
against its peers, in the same run, one thread each, pinned to one core (taskset -c 0):

  training   one epoch of the 60 000 Fashion-MNIST images, Adam, batch 128: `maas fit` (the
             epoch time it prints), Keras 3 on JAX (the anchors venv, bench/anchors_venv.sh),
             PyTorch (Debian's); the median epoch after the first (which compiles the step);
  inference  batches of 256 images: maas (maas-bench-cnn, the C API as the worker calls it),
             ONNX Runtime (the same network as an ONNX graph) and PyTorch (inference_mode);
             the median of 5 rounds of 40 batches.
  int8       the trained model quantized by `maas optimize --quantize int8` (per filter and
             unit, each window and row its own input scale) against ONNX Runtime's
             quantize_dynamic of its graph (ConvInteger/MatMulInteger, int8 weights), the same
             batches; and the 10 000 test images' accuracy of the float and int8 models.

Targets (issue 23): training >= 1.2x Keras, inference >= 1.0x the best peer. OPENBLAS_CORETYPE
and OPENBLAS_L2_SIZE are left as the environment has them.

  /usr/bin/python3 bench/bench_cnn.py [--build build] [--epochs 3]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from run import fashion_h5  # noqa: E402

LAYERS = ("reshape:28x28x1,conv2d:32:3x3:relu,maxpool:2x2,conv2d:64:3x3:relu,maxpool:2x2,"
          "flatten,128:relu,10:softmax")
ONE = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
       "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}

PEERS = r'''
import os, statistics, sys, time
import h5py, numpy as np
which, h5, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
with h5py.File(h5) as f:
    x, y = f["x"][:].astype(np.float32), f["y"][:].astype(np.int64).ravel()
rng = np.random.default_rng(1)
def conv_w(kh, kw, c, f): return (rng.standard_normal((kh, kw, c, f)) * np.sqrt(2 / (kh * kw * c))).astype(np.float32)
W = [conv_w(3, 3, 1, 32), conv_w(3, 3, 32, 64),
     (rng.standard_normal((1600, 128)) * np.sqrt(2 / 1600)).astype(np.float32),
     (rng.standard_normal((128, 10)) * np.sqrt(2 / 128)).astype(np.float32)]
def rate(run, n_batches=40, batch=256, rounds=5):
    run(x[:batch])
    r = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for b in range(n_batches):
            run(x[b * batch:(b + 1) * batch])
        r.append(n_batches * batch / (time.perf_counter() - t0))
    return statistics.median(r)
if which == "torch":
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 28, 28)), torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(1600, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    times = []
    for e in range(epochs):
        perm = torch.randperm(len(xt))
        t0 = time.perf_counter()
        for i in range(0, len(xt), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    print(f"torch_epoch_s {statistics.median(times[1:]):.3f}")
    net.eval()
    with torch.inference_mode():
        print(f"torch_predict256_sps {rate(lambda b: torch.softmax(net(torch.from_numpy(b)), 1)):.0f}")
    print(f"torch_version {torch.__version__}")
elif which == "keras":
    import keras
    L = keras.layers
    keras.utils.set_random_seed(1)
    m = keras.Sequential([keras.Input((784,)), L.Reshape((28, 28, 1)),
                          L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
                          L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
                          L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")])
    m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    times = []
    class T(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None): self.t0 = time.perf_counter()
        def on_epoch_end(self, e, logs=None): times.append(time.perf_counter() - self.t0)
    m.fit(x, y, epochs=epochs, batch_size=128, verbose=0, callbacks=[T()])
    print(f"keras_epoch_s {statistics.median(times[1:]):.3f}")
    print(f"keras_version {keras.__version__}")
    import onnx, onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    init = [numpy_helper.from_array(np.array([-1, 1, 28, 28], np.int64), "s0"),
            numpy_helper.from_array(np.array([-1, 1600], np.int64), "s1"),
            numpy_helper.from_array(W[0].transpose(3, 2, 0, 1).copy(), "k0"),
            numpy_helper.from_array(np.zeros(32, np.float32), "b0"),
            numpy_helper.from_array(W[1].transpose(3, 2, 0, 1).copy(), "k1"),
            numpy_helper.from_array(np.zeros(64, np.float32), "b1"),
            numpy_helper.from_array(W[2], "w2"), numpy_helper.from_array(np.zeros(128, np.float32), "b2"),
            numpy_helper.from_array(W[3], "w3"), numpy_helper.from_array(np.zeros(10, np.float32), "b3")]
    n = helper.make_node
    nodes = [n("Reshape", ["x", "s0"], ["r"]), n("Conv", ["r", "k0", "b0"], ["c0"]), n("Relu", ["c0"], ["a0"]),
             n("MaxPool", ["a0"], ["p0"], kernel_shape=[2, 2], strides=[2, 2]),
             n("Conv", ["p0", "k1", "b1"], ["c1"]), n("Relu", ["c1"], ["a1"]),
             n("MaxPool", ["a1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             n("Transpose", ["p1"], ["t1"], perm=[0, 2, 3, 1]), n("Reshape", ["t1", "s1"], ["f"]),
             n("Gemm", ["f", "w2", "b2"], ["d2"]), n("Relu", ["d2"], ["a2"]),
             n("Gemm", ["a2", "w3", "b3"], ["d3"]), n("Softmax", ["d3"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "fashion_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], init)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    o = ort.SessionOptions()
    o.intra_op_num_threads = o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(model.SerializeToString(), o, providers=["CPUExecutionProvider"])
    print(f"ort_predict256_sps {rate(lambda b: s.run(None, {'x': b})):.0f}")
    import tempfile
    from onnxruntime.quantization import QuantType, quantize_dynamic
    d = tempfile.mkdtemp()
    onnx.save(model, os.path.join(d, "f32.onnx"))
    quantize_dynamic(os.path.join(d, "f32.onnx"), os.path.join(d, "int8.onnx"),
                     weight_type=QuantType.QInt8)
    sq = ort.InferenceSession(os.path.join(d, "int8.onnx"), o, providers=["CPUExecutionProvider"])
    print(f"ort_int8_predict256_sps {rate(lambda b: sq.run(None, {'x': b})):.0f}")
    print(f"ort_version {ort.__version__}")
'''


def kv(text):
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    h5 = fashion_h5()
    bindir = os.path.join(ROOT, a.build, "bin")
    tmp = tempfile.mkdtemp()
    pin = ["taskset", "-c", "0"]
    fit = subprocess.run(pin + [os.path.join(bindir, "maas"), "fit", "--data", h5 + ":/x",
                                "--labels", h5 + ":/y", "--layers", LAYERS, "--epochs",
                                str(a.epochs), "--batch-size", "128", "--seed", "1", "-o",
                                os.path.join(tmp, "cnn.h5")],
                         env=ONE, capture_output=True, text=True, check=True)
    ep = [float(s) for s in re.findall(r"^Epoch \d+/\d+ - ([0-9.]+)s", fit.stdout, re.M)]
    res = {"maas_epoch_s": statistics.median(ep[1:] or ep)}
    res.update({k: float(v) for k, v in kv(subprocess.run(
        pin + [os.path.join(bindir, "maas-bench-cnn"), os.path.join(tmp, "cnn.h5"), h5 + ":/x"],
        env=ONE, capture_output=True, text=True, check=True).stdout).items()})
    subprocess.run([os.path.join(bindir, "maas"), "optimize", "-m", os.path.join(tmp, "cnn.h5"),
                    "--quantize", "int8", "-q", "-o", os.path.join(tmp, "cnn-int8.h5")],
                   env=ONE, check=True, capture_output=True)
    res.update({k.replace("maas_", "maas_int8_"): float(v) for k, v in kv(subprocess.run(
        pin + [os.path.join(bindir, "maas-bench-cnn"), os.path.join(tmp, "cnn-int8.h5"),
               h5 + ":/x"], env=ONE, capture_output=True, text=True, check=True).stdout).items()})
    test = fashion_h5("t10k")
    for name in ("cnn", "cnn-int8"):
        ev = subprocess.run([os.path.join(bindir, "maas"), "evaluate", "-m",
                             os.path.join(tmp, name + ".h5"), "--data", test + ":/x", "--labels",
                             test + ":/y", "--format", "json"], env=ONE, check=True,
                            capture_output=True, text=True)
        res[name + "_test_accuracy"] = json.loads(ev.stdout)["accuracy"]
    script = os.path.join(tmp, "peers.py")
    with open(script, "w") as f:
        f.write(PEERS)
    anchors = subprocess.run([os.path.join(HERE, "anchors_venv.sh")], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
    for which, py in (("torch", "/usr/bin/python3"), ("keras", anchors)):
        r = subprocess.run(pin + [py, script, which, h5, str(a.epochs)], env=ONE,
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"{which}: {r.stderr[-2000:]}")
        for k, v in kv(r.stdout).items():
            res[k] = v if k.endswith("version") else float(v)
    print(f"Fashion CNN, one thread, {os.uname().machine}; torch {res['torch_version']}, "
          f"keras {res['keras_version']} (jax), onnxruntime {res['ort_version']}")
    print(f"{'':34} {'maas':>9} {'Keras':>9} {'PyTorch':>9} {'ORT':>9}  ratio")
    sps = 60000 / res["maas_epoch_s"]
    ks, ts = 60000 / res["keras_epoch_s"], 60000 / res["torch_epoch_s"]
    print(f"{'training epoch, batch 128 (img/s)':34} {sps:9.0f} {ks:9.0f} {ts:9.0f} {'':>9}  "
          f"{sps / ks:.2f}x Keras (target 1.2), {sps / ts:.2f}x PyTorch")
    mp, tp, op = res["maas_predict256_sps"], res["torch_predict256_sps"], res["ort_predict256_sps"]
    print(f"{'inference, batch 256 (img/s)':34} {mp:9.0f} {'':>9} {tp:9.0f} {op:9.0f}  "
          f"{mp / max(tp, op):.2f}x the best peer (target 1.0)")
    mq, oq = res["maas_int8_predict256_sps"], res["ort_int8_predict256_sps"]
    print(f"{'int8 inference, batch 256 (img/s)':34} {mq:9.0f} {'':>9} {'':>9} {oq:9.0f}  "
          f"{mq / oq:.2f}x ORT int8, {mq / mp:.2f}x maas float32")
    print(f"test accuracy (10 000 images): float32 {res['cnn_test_accuracy']:.4f}, "
          f"int8 {res['cnn-int8_test_accuracy']:.4f}")
    print(f"maas: {res['maas_forward_flops_per_row'] / 1e6:.2f} MFLOP per image forward, "
          f"{mp * res['maas_forward_flops_per_row'] / 1e9:.1f} GFLOP/s in inference")


if __name__ == "__main__":
    main()
