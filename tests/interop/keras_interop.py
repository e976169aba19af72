"""Real Keras 3 against maas, both directions (run by tests/interop/keras_interop.sh).

1. `maas fit` trains the seed model; keras.models.load_model loads the file and
   predicts what `maas predict` prints, within 1e-5.
2. Keras trains and saves model.h5 files (the seed model with an adapted
   Normalization layer and Dropout; a 3-class softmax model); `maas predict`
   serves them with Keras's predictions, within 1e-5; `maas evaluate` uses the
   file's training config.
3. A pruned maas model (deflated kernels) and an int8 one written back with
   --dequantize load in Keras and predict what maas does (6.: the same for a Keras-trained
   CNN, its convolutions pruned and quantized per filter).
4. A bf16 model (`maas optimize --bf16`) loads in Keras as it is, with bf16-valued kernels,
   and predicts what maas does on the same weights in float32.
5. Keras-trained models with Conv1D/2D, Max/AveragePooling1D/2D, GlobalAveragePooling1D/2D,
   BatchNormalization (moving statistics trained away from 0 and 1), Embedding, Flatten and
   Reshape serve through `maas predict` with Keras's answers; models with all of them trained
   by `maas fit` load in Keras and predict what maas does.
usage: python keras_interop.py MAAS_BINARY PIMA_CSV WORKDIR
"""
import os
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

MAAS, PIMA, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(WORK, exist_ok=True)
failures = []


def maas(*args):
    r = subprocess.run([MAAS, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"maas {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def compare(what, ours, theirs, tol=1e-5):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        failures.append(f"{what}: shapes {ours.shape} vs {theirs.shape}")
        return
    err = np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-3))
    print(f"{what}: {ours.shape[0]} rows, max relative difference {err:.2e}")
    if not err <= tol:
        failures.append(f"{what}: max relative difference {err:.2e} > {tol}")


data = np.loadtxt(PIMA, delimiter=",", skiprows=1, dtype=np.float32)
x, y = data[:, :8], data[:, 8:]
x_csv = os.path.join(WORK, "pima_x.csv")
np.savetxt(x_csv, x, delimiter=",", fmt="%.9g", comments="",
           header="pregnant,glucose,pressure,triceps,insulin,mass,pedigree,age")
print(f"keras {keras.__version__}, backend {keras.backend.backend()}")

# 1. maas -> Keras
m_path = os.path.join(WORK, "maas_seed.h5")
maas("fit", "--data", PIMA, "--label", "diabetes", "--layers", "10:relu,dropout:0.1,1:sigmoid",
     "--epochs", "10", "--batch-size", "32", "--standardize", "--seed", "7", "-q", "-o", m_path)
km = keras.models.load_model(m_path)
ours = np.loadtxt(maas("predict", "-m", m_path, "--data", x_csv).splitlines(), ndmin=2)
compare("maas fit -> keras load_model predict", ours, km.predict(x, verbose=0))
if km.loss is None or "binary_crossentropy" not in str(km.loss):
    failures.append(f"keras did not restore the loss from training_config: {km.loss}")
res = km.evaluate(x, y, verbose=0, return_dict=True)
ev = maas("evaluate", "-m", m_path, "--data", PIMA, "--label", "diabetes", "--format", "json")
import json  # noqa: E402
ev = json.loads(ev)
compare("evaluate loss (maas vs keras)", [ev["loss"]], [res["loss"]], 1e-4)
compare("evaluate accuracy (maas vs keras)", [ev["accuracy"]], [res["accuracy"]], 1e-6)

# 2. Keras -> maas: the seed model with an adapted Normalization layer and Dropout
keras.utils.set_random_seed(3)
norm = keras.layers.Normalization()
norm.adapt(x)
k1 = keras.Sequential([keras.Input((8,)), norm, keras.layers.Dense(10, activation="relu"),
                       keras.layers.Dropout(0.2), keras.layers.Dense(1, activation="sigmoid")])
k1.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
k1.fit(x, y, epochs=3, batch_size=32, verbose=0)
k1_path = os.path.join(WORK, "keras_seed.h5")
k1.save(k1_path)
ours = np.loadtxt(maas("predict", "-m", k1_path, "--data", x_csv).splitlines(), ndmin=2)
compare("keras fit+save -> maas predict (seed + Normalization)", ours, k1.predict(x, verbose=0))
ev = json.loads(maas("evaluate", "-m", k1_path, "--data", PIMA, "--label", "diabetes",
                     "--format", "json"))
res = k1.evaluate(x, y, verbose=0, return_dict=True)
compare("keras model: evaluate loss (maas vs keras)", [ev["loss"]], [res["loss"]], 1e-4)

# ... and a 3-class softmax model with every supported activation
rng = np.random.default_rng(1)
x3 = rng.normal(size=(300, 5)).astype(np.float32)
y3 = (x3[:, 0] > 0).astype(int) + (x3[:, 1] > 0.5).astype(int)
k2 = keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="tanh"),
                       keras.layers.Dense(12, activation="gelu"),
                       keras.layers.Dense(10, activation="elu"),
                       keras.layers.Dense(8, activation="leaky_relu", use_bias=False),
                       keras.layers.Dense(3, activation="softmax")])
k2.compile(optimizer=keras.optimizers.RMSprop(0.01), loss="sparse_categorical_crossentropy",
           metrics=["accuracy"])
k2.fit(x3, y3, epochs=5, verbose=0)
k2_path = os.path.join(WORK, "keras_softmax.h5")
k2.save(k2_path)
x3_csv = os.path.join(WORK, "x3.csv")
np.savetxt(x3_csv, x3, delimiter=",", fmt="%.9g", comments="", header="a,b,c,d,e")
ours = np.loadtxt(maas("predict", "-m", k2_path, "--data", x3_csv).splitlines(), delimiter=",",
                  ndmin=2)
compare("keras fit+save -> maas predict (softmax, 5 activations)", ours, k2.predict(x3, verbose=0))
print(maas("inspect", k2_path))

# 3. optimized models: a pruned one (deflated kernels) and a dequantized int8 one load in Keras
big = os.path.join(WORK, "maas_big.h5")
maas("fit", "--data", PIMA, "--label", "diabetes", "--layers", "256:relu,64:relu,1:sigmoid",
     "--epochs", "2", "--standardize", "--seed", "5", "-q", "-o", big)
pruned = os.path.join(WORK, "maas_pruned.h5")
maas("optimize", "-m", big, "--prune", "0.6", "-q", "-o", pruned)
kp = keras.models.load_model(pruned)
kernel = kp.layers[-2].get_weights()[0]
if not 0.3 < float(np.mean(kernel == 0)) < 0.9:
    failures.append(f"pruned kernel in keras has {np.mean(kernel == 0):.2f} zeros")
ours = np.loadtxt(maas("predict", "-m", pruned, "--data", x_csv).splitlines(), ndmin=2)
compare("maas optimize --prune -> keras load_model predict", ours, kp.predict(x, verbose=0))
q = os.path.join(WORK, "maas_int8.h5")
deq = os.path.join(WORK, "maas_dequantized.h5")
maas("optimize", "-m", big, "--quantize", "int8", "-q", "-o", q)
maas("optimize", "-m", q, "--dequantize", "-q", "-o", deq)
kd = keras.models.load_model(deq)
ours = np.loadtxt(maas("predict", "-m", deq, "--data", x_csv).splitlines(), ndmin=2)
compare("maas int8 -> --dequantize -> keras load_model predict", ours, kd.predict(x, verbose=0))
int8_out = np.loadtxt(maas("predict", "-m", q, "--data", x_csv).splitlines(), ndmin=2)
gap = float(np.max(np.abs(int8_out - kd.predict(x, verbose=0))))
print(f"int8 inference vs keras on the dequantized weights: max |diff| {gap:.4f}")
if not gap < 0.02:
    failures.append(f"int8 inference is {gap:.4f} away from the dequantized float model")

# 4. a bf16 model loads in Keras as it is: h5py widens its bf16 kernels to float32 exactly
bf = os.path.join(WORK, "maas_bf16.h5")
bf_deq = os.path.join(WORK, "maas_bf16_dequantized.h5")
maas("optimize", "-m", big, "--bf16", "-q", "-o", bf)
maas("optimize", "-m", bf, "--dequantize", "-q", "-o", bf_deq)
kb = keras.models.load_model(bf)
for layer in kb.layers:
    for wt in layer.get_weights():
        if wt.ndim == 2 and np.any(wt.astype(np.float32).view(np.uint32) & 0xFFFF):
            failures.append(f"{layer.name}: a bf16 kernel read by keras is not bf16-valued")
with h5py.File(bf, "r") as f:
    if f.attrs.get("maas_quantization") != "bf16":
        failures.append("the bf16 file has no maas_quantization = bf16")
ours = np.loadtxt(maas("predict", "-m", bf_deq, "--data", x_csv).splitlines(), ndmin=2)
compare("maas bf16 file -> keras load_model predict (= maas on its float32 weights)", ours,
        kb.predict(x, verbose=0))
bf16_out = np.loadtxt(maas("predict", "-m", bf, "--data", x_csv).splitlines(), ndmin=2)
gap = float(np.max(np.abs(bf16_out - kb.predict(x, verbose=0))))
print(f"bf16 inference (bf16 inputs) vs keras on the same weights: max |diff| {gap:.5f}")
if not gap < 0.02:
    failures.append(f"bf16 inference is {gap:.4f} away from its float32 weights in keras")

# 5. convolutional, pooling, normalization and embedding layers, both ways. maas's rows are
# flat (channels last): an input of rank > 1 is read as a flat row and a Reshape.
rng = np.random.default_rng(5)
img = rng.normal(size=(96, 8, 8, 2)).astype(np.float32)
img_y = rng.integers(0, 3, size=96)
seq = rng.integers(0, 20, size=(96, 12)).astype(np.float32)
seq_y = rng.integers(0, 2, size=(96, 1)).astype(np.float32)


def rows_csv(name, a):
    path = os.path.join(WORK, name)
    flat = a.reshape(a.shape[0], -1)
    np.savetxt(path, flat, delimiter=",", fmt="%.9g", comments="",
               header=",".join(f"f{i}" for i in range(flat.shape[1])))
    return path


img_csv, seq_csv = rows_csv("img.csv", img), rows_csv("seq.csv", seq)
L = keras.layers
keras.utils.set_random_seed(3)
ka = keras.Sequential([
    keras.Input((8, 8, 2)), L.Conv2D(4, 3, padding="same", activation="relu"),
    L.BatchNormalization(), L.MaxPooling2D(2), L.AveragePooling2D(2, strides=1, padding="same"),
    L.Conv2D(3, 2, strides=2, activation="tanh"), L.GlobalAveragePooling2D(),
    L.Dense(3, activation="softmax")])
ka.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
ka.fit(img, img_y, epochs=2, batch_size=16, verbose=0)  # moving statistics away from 0 and 1
ka_path = os.path.join(WORK, "keras_cnn2d.h5")
ka.save(ka_path)
ours = np.loadtxt(maas("predict", "-m", ka_path, "--data", img_csv).splitlines(), delimiter=",", ndmin=2)
compare("keras Conv2D/BN/pooling/GAP model -> maas predict", ours, ka.predict(img, verbose=0))
kb2 = keras.Sequential([
    keras.Input((12,)), L.Embedding(20, 4), L.Conv1D(6, 3, padding="same", activation="relu"),
    L.MaxPooling1D(2), L.BatchNormalization(), L.AveragePooling1D(2), L.Flatten(),
    L.Dense(8, activation="relu"), L.Reshape((2, 4)), L.GlobalAveragePooling1D(),
    L.Dense(1, activation="sigmoid")])
kb2.compile(optimizer="adam", loss="binary_crossentropy")
kb2.fit(seq, seq_y, epochs=2, batch_size=16, verbose=0)
kb_path = os.path.join(WORK, "keras_seq.h5")
kb2.save(kb_path)
ours = np.loadtxt(maas("predict", "-m", kb_path, "--data", seq_csv).splitlines(), delimiter=",", ndmin=2)
compare("keras Embedding/Conv1D/pooling/BN/Reshape model -> maas predict", ours,
        kb2.predict(seq, verbose=0))
np.savetxt(os.path.join(WORK, "img_train.csv"), np.hstack([img.reshape(96, -1), img_y[:, None]]),
           delimiter=",", fmt="%.9g", comments="",
           header=",".join([f"f{i}" for i in range(128)] + ["y"]))
np.savetxt(os.path.join(WORK, "seq_train.csv"), np.hstack([seq, seq_y]), delimiter=",",
           fmt="%.9g", comments="", header=",".join([f"f{i}" for i in range(12)] + ["y"]))
for name, layers, data, x_in in [
        ("cnn2d", "reshape:8x8x2,conv2d:4:3x3:relu:same,batchnorm,maxpool:2x2,"
                  "avgpool:2x2:s1x1:same,conv2d:3:2x2:tanh:s2x2,gap2d,3:softmax",
         "img_train.csv", img),
        ("seq", "embedding:20:4,conv1d:6:3:relu:same,maxpool:2,batchnorm,avgpool:2,flatten,"
                "8:relu,reshape:2x4,gap1d,1:sigmoid", "seq_train.csv", seq)]:
    path = os.path.join(WORK, f"maas_{name}.h5")
    maas("fit", "--data", os.path.join(WORK, data), "--label", "y", "--layers", layers,
         "--epochs", "2", "--batch-size", "16", "--seed", "3", "-q", "-o", path)
    km = keras.models.load_model(path)
    ours = np.loadtxt(maas("predict", "-m", path, "--data",
                           img_csv if name == "cnn2d" else seq_csv).splitlines(), delimiter=",", ndmin=2)
    compare(f"maas fit {name} -> keras load_model predict", ours,
            km.predict(x_in.reshape(x_in.shape[0], -1), verbose=0))

# 6. the Keras-trained CNN pruned (convolution kernels deflated) and quantized to int8 (per
# filter) by maas, written back with --dequantize: Keras loads it and predicts what maas does
# on those weights; maas's int8 inference stays near it
cnn_q = os.path.join(WORK, "keras_cnn2d_int8.h5")
cnn_deq = os.path.join(WORK, "keras_cnn2d_dequantized.h5")
maas("optimize", "-m", ka_path, "--prune", "0.3", "--quantize", "int8", "-q", "-o", cnn_q)
maas("optimize", "-m", cnn_q, "--dequantize", "-q", "-o", cnn_deq)
kq = keras.models.load_model(cnn_deq)  # takes flat rows: maas writes the input's Reshape
conv_kernel = next(la for la in kq.layers if isinstance(la, L.Conv2D)).get_weights()[0]
img_flat = img.reshape(img.shape[0], -1)
if conv_kernel.shape != (3, 3, 2, 4) or not 0.1 < float(np.mean(conv_kernel == 0)) < 0.9:
    failures.append(f"pruned conv kernel in keras: shape {conv_kernel.shape}, "
                    f"{np.mean(conv_kernel == 0):.2f} zeros")
ours = np.loadtxt(maas("predict", "-m", cnn_deq, "--data", img_csv).splitlines(), delimiter=",",
                  ndmin=2)
compare("keras CNN -> maas int8 + pruning -> --dequantize -> keras predict", ours,
        kq.predict(img_flat, verbose=0))
int8_out = np.loadtxt(maas("predict", "-m", cnn_q, "--data", img_csv).splitlines(), delimiter=",",
                      ndmin=2)
gap = float(np.max(np.abs(int8_out - kq.predict(img_flat, verbose=0))))
print(f"int8 CNN inference vs keras on the dequantized weights: max |diff| {gap:.4f}")
if not gap < 0.03:
    failures.append(f"int8 CNN inference is {gap:.4f} away from the dequantized float model")

if failures:
    print("FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("keras interop: all checks passed")
