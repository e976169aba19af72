#!/usr/bin/python3
"""Keras model.h5 fixtures for tests/unit/test_model_io.c, made with h5py.

Writes into OUTDIR:
  good_NAME.h5, good_NAME.x.csv, good_NAME.expected.csv
      files in each layout Keras writes (tf.keras 2.x and Keras 3 names, vlen and
      fixed-length strings, chunked layer_names, Normalization, float64 weights...)
      and what numpy computes from the same weights for the inputs in x.csv;
  bad_NAME.h5 and bad.tsv (NAME <TAB> error code <TAB> text the message must contain)
      broken or unsupported files.
Run with Debian's interpreter: /usr/bin/python3 make_h5_fixtures.py OUTDIR
"""
import json
import os
import sys

import h5py
import numpy as np

RNG = np.random.default_rng(7)
ACT = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "softmax": lambda z: np.exp(z - z.max(-1, keepdims=True))
    / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True),
}


def s(v, fixed):
    """An attribute string: h5py 3 style (vlen) or h5py 2 style (fixed-length bytes)."""
    return np.bytes_(v.encode()) if fixed else v


def names(lst, fixed):
    if not lst:
        return np.array([], dtype=np.float64)
    if fixed:
        return np.array([n.encode() for n in lst], dtype="S%d" % max(len(n) for n in lst))
    return [n.encode() for n in lst]


def dense_cfg(name, units, act, bias=True, keras3=False, **extra):
    c = {"name": name, "trainable": True, "units": units, "activation": act, "use_bias": bias}
    if keras3:
        c["dtype"] = {"module": "keras", "class_name": "DTypePolicy",
                      "config": {"name": "float32"}, "registered_name": None}
        c["kernel_initializer"] = {"module": "keras.initializers", "class_name": "GlorotUniform",
                                   "config": {"seed": None}, "registered_name": None}
        c["quantization_config"] = None
    else:
        c["dtype"] = "float32"
        c["kernel_initializer"] = {"class_name": "GlorotUniform", "config": {"seed": None}}
    c.update(extra)
    return {"class_name": "Dense", "config": c}


def write_model(path, layers_cfg, weights, *, keras3=False, fixed=False, training=None,
                optimizer_weights=False, chunk_layer_names=False, wdtype=np.float32,
                model_class="Sequential", extra=None):
    """weights: list of (layer_name, [(weight_name, array)])."""
    cfg = {"class_name": model_class,
           "config": {"name": "sequential", "layers": layers_cfg}}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = s("3.10.0" if keras3 else "2.15.0", fixed)
        f.attrs["backend"] = s("jax" if keras3 else "tensorflow", fixed)
        f.attrs["model_config"] = (np.bytes_(json.dumps(cfg).encode()) if fixed
                                   else json.dumps(cfg).encode())
        if training is not None:
            f.attrs["training_config"] = json.dumps(training).encode()
        mw = f.create_group("model_weights")
        lnames = [n for n, _ in weights]
        if chunk_layer_names:
            half = len(lnames) // 2
            mw.attrs["layer_names0"] = names(lnames[:half], fixed)
            mw.attrs["layer_names1"] = names(lnames[half:], fixed)
        else:
            mw.attrs["layer_names"] = names(lnames, fixed)
        for lname, ws in weights:
            g = mw.create_group(lname)
            g.attrs["weight_names"] = names([w for w, _ in ws], fixed)
            for wname, arr in ws:
                g.create_dataset(wname, data=np.asarray(arr, dtype=wdtype))
        if keras3:
            t = mw.create_group("top_level_model_weights")
            t.attrs["weight_names"] = names([], fixed)
        if optimizer_weights:
            ow = f.create_group("optimizer_weights")
            ow.attrs["weight_names"] = names(["adam/iteration"], fixed)
            ow.create_dataset("adam/iteration", data=np.int64(3))
        if extra:
            extra(f)


def forward(x, spec, params, norm=None):
    h = x
    if norm is not None:
        h = (h - norm[0]) / np.maximum(np.sqrt(norm[1]), 1e-7)
    for (units, act, bias), (w, b) in zip(spec, params):
        h = h @ w + (b if bias else 0)
        h = ACT[act](h)
    return h


def make_params(n_in, spec):
    params, fan = [], n_in
    for units, _, bias in spec:
        w = RNG.uniform(-0.6, 0.6, (fan, units)).astype(np.float32)
        b = RNG.uniform(-0.2, 0.2, units).astype(np.float32) if bias else None
        params.append((w, b))
        fan = units
    return params


def save_io(out, name, x, y):
    cols = ",".join("f%d" % i for i in range(x.shape[1]))
    np.savetxt(os.path.join(out, "good_%s.x.csv" % name), x, delimiter=",", header=cols,
               comments="", fmt="%.9g")
    np.savetxt(os.path.join(out, "good_%s.expected.csv" % name), y.reshape(len(y), -1),
               delimiter=",", fmt="%.9g")


def tf_weights(lname, w, b):
    ws = [("%s/kernel:0" % lname, w)]
    if b is not None:
        ws.append(("%s/bias:0" % lname, b))
    return (lname, ws)


def k3_weights(lname, w, b):
    ws = [("sequential/%s/kernel" % lname, w)]
    if b is not None:
        ws.append(("sequential/%s/bias" % lname, b))
    return (lname, ws)


def good(out):
    x = RNG.normal(size=(12, 6)).astype(np.float32)
    adam_tf = {"loss": "binary_crossentropy", "metrics": [[{"class_name": "MeanMetricWrapper",
               "config": {"name": "accuracy", "dtype": "float32", "fn": "binary_accuracy"}}]],
               "weighted_metrics": None, "loss_weights": None,
               "optimizer_config": {"class_name": "Custom>Adam", "config": {
                   "name": "Adam", "weight_decay": None, "learning_rate": 0.0020000000949949026,
                   "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False,
                   "is_legacy_optimizer": False}}}
    # 1. tf.keras 2.x: vlen strings, dense/dense/kernel:0, InputLayer, Custom>Adam
    spec = [(5, "relu", True), (1, "sigmoid", True)]
    p = make_params(6, spec)
    layers = [{"class_name": "InputLayer", "config": {"batch_input_shape": [None, 6],
               "dtype": "float32", "sparse": False, "ragged": False, "name": "dense_input"}},
              dense_cfg("dense", 5, "relu"), dense_cfg("dense_1", 1, "sigmoid")]
    write_model(os.path.join(out, "good_tfkeras.h5"), layers,
                [tf_weights("dense", *p[0]), tf_weights("dense_1", *p[1])], training=adam_tf)
    save_io(out, "tfkeras", x, forward(x, spec, p))

    # 2. h5py 2 style: fixed-length strings everywhere, no training_config
    write_model(os.path.join(out, "good_fixed.h5"), layers,
                [tf_weights("dense", *p[0]), tf_weights("dense_1", *p[1])], fixed=True)
    save_io(out, "fixed", x, forward(x, spec, p))

    # 3. Keras 3: sequential/dense/kernel, batch_shape, DTypePolicy, optimizer_weights
    spec3 = [(7, "tanh", True), (3, "softmax", True)]
    p3 = make_params(6, spec3)
    layers3 = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 6],
                "dtype": "float32", "sparse": False, "ragged": False, "name": "input_layer",
                "optional": False}},
               dense_cfg("dense", 7, "tanh", keras3=True),
               {"class_name": "Dropout", "config": {"name": "dropout", "trainable": True,
                "dtype": "float32", "rate": 0.3, "seed": None, "noise_shape": None}},
               dense_cfg("dense_1", 3, "softmax", keras3=True)]
    k3_train = {"loss": "sparse_categorical_crossentropy", "loss_weights": None,
                "metrics": ["accuracy"], "weighted_metrics": None, "run_eagerly": False,
                "steps_per_execution": 1, "jit_compile": True,
                "optimizer_config": {"class_name": "SGD", "config": {
                    "name": "SGD", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True,
                    "weight_decay": None, "clipnorm": None}}}
    write_model(os.path.join(out, "good_keras3.h5"), layers3,
                [k3_weights("dense", *p3[0]), ("dropout", []), k3_weights("dense_1", *p3[1])],
                keras3=True, training=k3_train, optimizer_weights=True)
    save_io(out, "keras3", x, forward(x, spec3, p3))

    # 4. no InputLayer (first Dense has batch_input_shape), no-bias layer, chunked names
    spec4 = [(4, "linear", False), (2, "sigmoid", True)]
    p4 = make_params(6, spec4)
    layers4 = [dense_cfg("hidden", 4, "linear", bias=False, batch_input_shape=[None, 6]),
               dense_cfg("out", 2, "sigmoid")]
    write_model(os.path.join(out, "good_noinput.h5"), layers4,
                [tf_weights("hidden", *p4[0]), tf_weights("out", *p4[1])],
                chunk_layer_names=True)
    save_io(out, "noinput", x, forward(x, spec4, p4))

    # 5. adapted Normalization (statistics as weights) + Dense
    mean = RNG.normal(size=6).astype(np.float32)
    var = RNG.uniform(0.5, 2.0, 6).astype(np.float32)
    spec5 = [(3, "relu", True), (1, "linear", True)]
    p5 = make_params(6, spec5)
    layers5 = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 6], "name": "in"}},
               {"class_name": "Normalization", "config": {"name": "normalization", "axis": [-1],
                "mean": None, "variance": None, "invert": False}},
               dense_cfg("dense", 3, "relu", keras3=True), dense_cfg("dense_1", 1, "linear")]
    write_model(os.path.join(out, "good_norm.h5"), layers5,
                [("normalization", [("sequential/normalization/mean", mean),
                                    ("sequential/normalization/variance", var),
                                    ("sequential/normalization/count", np.array(100.0))]),
                 k3_weights("dense", *p5[0]), k3_weights("dense_1", *p5[1])], keras3=True)
    save_io(out, "norm", x, forward(x, spec5, p5, norm=(mean, var)))

    # 6. float64 weights, no input shape anywhere (width from the first kernel)
    spec6 = [(3, "sigmoid", True)]
    p6 = make_params(6, spec6)
    write_model(os.path.join(out, "good_f64.h5"), [dense_cfg("d", 3, "sigmoid")],
                [tf_weights("d", *p6[0])], wdtype=np.float64)
    save_io(out, "f64", x, forward(x, spec6, p6))


def bad(out):
    rows = []
    spec = [(3, "relu", True), (1, "sigmoid", True)]
    p = make_params(4, spec)
    inl = {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4]}}
    base_layers = [inl, dense_cfg("dense", 3, "relu"), dense_cfg("dense_1", 1, "sigmoid")]
    base_w = [tf_weights("dense", *p[0]), tf_weights("dense_1", *p[1])]

    def case(name, code, text, layers=None, weights=None, **kw):
        write_model(os.path.join(out, "bad_%s.h5" % name),
                    base_layers if layers is None else layers,
                    base_w if weights is None else weights, **kw)
        rows.append((name, code, text))

    case("functional", "UNKNOWN_NAME", "Sequential models only", model_class="Functional")
    case("conv2d", "BAD_FORMAT", "filters and kernel_size", layers=[inl, {"class_name": "Conv2D",
         "config": {"name": "conv2d", "filters": 3}}, dense_cfg("dense_1", 1, "sigmoid")])
    # the layers beyond Dense: what maas does not support is named, malformed configs refused
    img = {"class_name": "InputLayer", "config": {"batch_shape": [None, 2, 2, 1]}}

    def conv(**cfg):
        return {"class_name": "Conv2D", "config": {"name": "c", "filters": 1, "kernel_size": [1, 1],
                                                   **cfg}}
    flat = {"class_name": "Flatten", "config": {"name": "f"}}
    case("conv3d", "UNKNOWN_NAME", "Conv3D", layers=[img, {"class_name": "Conv3D",
         "config": {"name": "c3", "filters": 1}}, flat, dense_cfg("dense_1", 1, "sigmoid")])
    case("dilation", "UNKNOWN_NAME", "dilation_rate",
         layers=[img, conv(dilation_rate=[2, 2]), flat, dense_cfg("dense_1", 1, "sigmoid")])
    case("channels_first", "UNKNOWN_NAME", "channels_first",
         layers=[img, conv(data_format="channels_first"), flat, dense_cfg("dense_1", 1, "sigmoid")])
    case("causal", "UNKNOWN_NAME", "padding 'causal'",
         layers=[img, conv(padding="causal"), flat, dense_cfg("dense_1", 1, "sigmoid")])
    case("kernel_zero", "BAD_FORMAT", "filters and kernel_size",
         layers=[img, conv(kernel_size=[0, 1]), flat, dense_cfg("dense_1", 1, "sigmoid")])
    case("conv_flat_input", "BAD_FORMAT", "reshape:", layers=[inl, {"class_name": "Conv1D",
         "config": {"name": "c1", "filters": 1, "kernel_size": 1}}, flat,
         dense_cfg("dense_1", 1, "sigmoid")])
    case("dense_on_image", "BAD_FORMAT", "put a flatten",
         layers=[img, dense_cfg("dense_1", 1, "sigmoid")])
    case("reshape_minus1", "BAD_FORMAT", "target_shape", layers=[inl, {"class_name": "Reshape",
         "config": {"name": "r", "target_shape": [-1, 2]}}, flat, dense_cfg("dense_1", 1, "sigmoid")])
    case("reshape_size", "BAD_FORMAT", "cannot reshape", layers=[inl, {"class_name": "Reshape",
         "config": {"name": "r", "target_shape": [3, 2]}}, flat, dense_cfg("dense_1", 1, "sigmoid")])
    case("mask_zero", "UNKNOWN_NAME", "mask_zero", layers=[inl, {"class_name": "Embedding",
         "config": {"name": "e", "input_dim": 5, "output_dim": 2, "mask_zero": True}}, flat,
         dense_cfg("dense_1", 1, "sigmoid")])
    case("bn_axis", "BAD_FORMAT", "only the last axis", layers=[img, {"class_name":
         "BatchNormalization", "config": {"name": "b", "axis": 1}}, flat,
         dense_cfg("dense_1", 1, "sigmoid")])
    case("pool_huge", "BAD_FORMAT", "pool_size", layers=[img, {"class_name": "MaxPooling2D",
         "config": {"name": "p", "pool_size": [10 ** 9, 1]}}, flat, dense_cfg("dense_1", 1, "sigmoid")])
    case("pool_too_big", "BAD_FORMAT", "does not fit", layers=[img, {"class_name": "MaxPooling2D",
         "config": {"name": "p", "pool_size": [3, 3]}}, flat, dense_cfg("dense_1", 1, "sigmoid")])
    case("rank4_input", "BAD_FORMAT", "batch_shape", layers=[{"class_name": "InputLayer",
         "config": {"batch_shape": [None, 2, 2, 2, 1]}}, flat, dense_cfg("dense_1", 1, "sigmoid")])
    case("custom", "UNKNOWN_NAME", "MyLayer", layers=[inl, {"class_name": "MyLayer",
         "config": {"name": "mine"}}, dense_cfg("dense_1", 1, "sigmoid")])
    case("swish", "UNKNOWN_NAME", "unknown activation 'swish'",
         layers=[inl, dense_cfg("dense", 3, "swish"), dense_cfg("dense_1", 1, "sigmoid")])
    case("units_absurd", "BAD_FORMAT", "units must be",
         layers=[inl, dense_cfg("dense", 10 ** 9, "relu"), dense_cfg("dense_1", 1, "sigmoid")])
    case("rank3", "BAD_FORMAT", "put a flatten",
         layers=[{"class_name": "InputLayer", "config": {"batch_input_shape": [None, 2, 2]}},
                 dense_cfg("dense", 3, "relu"), dense_cfg("dense_1", 1, "sigmoid")])
    case("kernel_shape", "SHAPE_MISMATCH", "kernel is 5x3",
         weights=[tf_weights("dense", np.ones((5, 3)), p[0][1]), base_w[1]])
    case("bias_shape", "SHAPE_MISMATCH", "bias is 2, the model needs 3",
         weights=[tf_weights("dense", p[0][0], np.ones(2)), base_w[1]])
    nan_w = p[0][0].copy()
    nan_w[1, 1] = np.nan
    case("nan", "NON_FINITE", "non-finite weight",
         weights=[tf_weights("dense", nan_w, p[0][1]), base_w[1]])
    case("count", "BAD_FORMAT", "weights for 1 layers", weights=[base_w[0]])
    case("int_weights", "BAD_FORMAT", "not floating point",
         weights=[tf_weights("dense", np.ones((4, 3), dtype=np.int32), p[0][1]), base_w[1]],
         wdtype=np.int32)

    def drop_group(f):
        del f["model_weights/dense_1"]
    case("missing_group", "BAD_FORMAT", "has no group", extra=drop_group)

    def drop_dataset(f):
        del f["model_weights/dense_1/dense_1/bias:0"]
    case("missing_dataset", "BAD_FORMAT", "missing or is a link", extra=drop_dataset)

    def soft_link(f):
        g = f["model_weights/dense_1/dense_1"]
        del g["bias:0"]
        g["bias:0"] = h5py.SoftLink("/model_weights/dense/dense/bias:0")
    case("soft_link", "BAD_FORMAT", "is a link", extra=soft_link)

    def ext_link(f):
        g = f["model_weights/dense_1/dense_1"]
        del g["bias:0"]
        g["bias:0"] = h5py.ExternalLink("/etc/passwd.h5", "/x")
    case("external_link", "BAD_FORMAT", "is a link", extra=ext_link)

    def ext_storage(f):
        g = f["model_weights/dense_1/dense_1"]
        del g["bias:0"]
        raw = os.path.join(out, "bad_external_storage.raw")
        np.ones(1, dtype="<f4").tofile(raw)
        g.create_dataset("bias:0", shape=(1,), dtype="<f4", external=[(raw, 0, 4)])
    case("external_storage", "BAD_FORMAT", "stored outside", extra=ext_storage)

    def no_weights(f):
        del f["model_weights"]
    case("no_model_weights", "BAD_FORMAT", "no model_weights group", extra=no_weights)

    def no_config(f):
        del f.attrs["model_config"]
    case("no_config", "BAD_FORMAT", "no model_config", extra=no_config)

    def int_config(f):
        f.attrs["model_config"] = 42
    case("int_config", "BAD_FORMAT", "malformed", extra=int_config)

    # maas's own quantized layouts (schemas/model-h5.md): an unknown kind, and bf16 files whose
    # kernels are not bf16 or hold a NaN
    def quant_unknown(f):
        f.attrs["maas_quantization"] = "fp8"
    case("quant_unknown", "UNKNOWN_NAME", "unsupported maas_quantization 'fp8'",
         extra=quant_unknown)

    def bf16_mislabelled(f):
        f.attrs["maas_quantization"] = "bf16"
    case("bf16_float32", "BAD_FORMAT", "is not bf16", extra=bf16_mislabelled)

    def bf16_nan(f):
        f.attrs["maas_quantization"] = "bf16"
        for lname in ("dense", "dense_1"):
            g = f["model_weights/%s/%s" % (lname, lname)]
            w = np.asarray(g["kernel:0"], dtype=np.float32)
            if lname == "dense":
                w[1, 1] = np.nan
            del g["kernel:0"]
            t = h5py.h5t.IEEE_F32LE.copy()  # bfloat16: the upper half of a float32
            t.set_fields(15, 7, 8, 0, 7)
            t.set_precision(16)
            t.set_size(2)
            t.set_ebias(127)
            d = h5py.h5d.create(g.id, b"kernel:0", t, h5py.h5s.create_simple(w.shape))
            d.write(h5py.h5s.ALL, h5py.h5s.ALL, (w.view(np.uint32) >> 16).astype(np.uint16),
                    mtype=t)
    case("bf16_nan", "NON_FINITE", "non-finite weight", extra=bf16_nan)

    def bad_json(f):
        f.attrs["model_config"] = b'{"class_name": "Sequential", "config": {'
    case("bad_json", "BAD_FORMAT", "not valid JSON", extra=bad_json)

    def deep_json(f):
        f.attrs["model_config"] = ('{"class_name": "Sequential", "config": ' + "[" * 200
                                   + "]" * 200 + "}").encode()
    case("deep_json", "LIMIT_EXCEEDED", "nests deeper", extra=deep_json)

    # not HDF5 at all, and a truncated copy of a good file
    with open(os.path.join(out, "bad_text.h5"), "wb") as f:
        f.write(b"this is not a model\n")
    rows.append(("text", "BAD_FORMAT", "not an HDF5 file"))
    with open(os.path.join(out, "good_tfkeras.h5"), "rb") as f:
        data = f.read()
    with open(os.path.join(out, "bad_truncated.h5"), "wb") as f:
        f.write(data[:len(data) // 2])
    rows.append(("truncated", "BAD_FORMAT", "truncated or corrupt"))

    with open(os.path.join(out, "bad.tsv"), "w") as f:
        for r in rows:
            f.write("\t".join(r) + "\n")
    return len(rows)


def main(out):
    os.makedirs(out, exist_ok=True)
    good(out)
    n = bad(out)
    print("wrote 6 good and %d bad model fixtures to %s (h5py %s)" % (n, out, h5py.__version__))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_h5_fixtures.py OUTDIR")
    main(sys.argv[1])
