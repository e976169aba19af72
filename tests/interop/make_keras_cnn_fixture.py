"""Writes tests/interop/fixtures/keras_cnn.{h5,x.csv,expected.csv}: a CNN trained and saved by
real Keras 3 (Conv2D same and strided valid, BatchNormalization with trained moving statistics,
MaxPooling2D, GlobalAveragePooling2D, Dense softmax), 12 input rows (flat, channels last) and
Keras's predictions for them. cli_cluster imports the file into the cluster and checks the
workers serve Keras's answers. Committed; regenerate with the interop venv:

  ~/.cache/maas/keras-venv/bin/python tests/interop/make_keras_cnn_fixture.py
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # noqa: E402
import numpy as np  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(23)
x = rng.normal(size=(200, 6, 6, 2)).astype(np.float32)
y = (x[:, :3].mean(axis=(1, 2, 3)) > x[:, 3:].mean(axis=(1, 2, 3))).astype(np.int64) + \
    (x[..., 0].mean(axis=(1, 2)) > 0)
keras.utils.set_random_seed(23)
L = keras.layers
m = keras.Sequential([
    keras.Input((6, 6, 2)), L.Conv2D(8, 3, padding="same", activation="relu"),
    L.BatchNormalization(), L.MaxPooling2D(2), L.Conv2D(6, 2, strides=1, activation="tanh"),
    L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")])
m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
m.fit(x, y, epochs=3, batch_size=16, verbose=0)
m.save(os.path.join(OUT, "keras_cnn.h5"))
xs = x[:12]
header = ",".join(f"f{i}" for i in range(72))
np.savetxt(os.path.join(OUT, "keras_cnn.x.csv"), xs.reshape(12, -1), delimiter=",", fmt="%.9g",
           header=header, comments="")
np.savetxt(os.path.join(OUT, "keras_cnn.expected.csv"), m.predict(xs, verbose=0), delimiter=",",
           fmt="%.9g")
print(f"keras {keras.__version__}: wrote {OUT}/keras_cnn.*")
