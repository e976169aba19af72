"""Writes Fashion-MNIST's training and test sets (Debian's dataset-fashion-mnist) as train.h5
and test.h5 in the current directory: x (N, 28, 28) float32 in [0, 1], y (N, 1) class indices.
Used by the Fashion CNN accuracy tests (local and on the cluster)."""
import gzip

import h5py
import numpy as np

SRC = "/usr/share/datasets/fashion-mnist/"
for part, out in (("train", "train.h5"), ("t10k", "test.h5")):
    with gzip.open(f"{SRC}{part}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28).astype(np.float32) / 255
    with gzip.open(f"{SRC}{part}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.float32).reshape(-1, 1)
    with h5py.File(out, "w") as h:
        h["x"], h["y"] = x, y
