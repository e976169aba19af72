#!/usr/bin/python3
"""PyTorch reference for tests/unit/test_parity.c.

Builds three small Sequential MLPs from seeded NumPy data and weights, then
computes in float64 with PyTorch:
  * the forward outputs at the initial weights, and
  * the weights after one epoch of Keras-style Adam (batch 32, no shuffle).
Adam is written out as Keras does it (epsilon added to the uncorrected
sqrt(v); alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)), since torch.optim.Adam
places epsilon differently. Losses match Keras's TensorFlow backend: a
sigmoid + binary cross-entropy or softmax + cross-entropy output is computed
from the logits.

Writes OUT as a sequence of records: 32-byte NUL-padded name, uint32 count,
then count little-endian float32 values.
Run with Debian's interpreter: /usr/bin/python3 torch_parity.py OUT
"""
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

# name, inputs, [(units, activation)], loss, rows
MODELS = [
    ("A", 8, [(10, "relu"), (1, "sigmoid")], "binary_crossentropy", 96),
    ("B", 12, [(16, "tanh"), (8, "gelu"), (4, "softmax")], "sparse_categorical_crossentropy", 96),
    ("C", 6, [(7, "elu"), (5, "leaky_relu"), (3, "linear")], "mse", 80),
]
LR, B1, B2, EPS, BATCH = 1e-3, 0.9, 0.999, 1e-7, 32


def act(name, z):
    return {
        "relu": torch.relu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "gelu": lambda t: F.gelu(t),  # exact erf form
        "softmax": lambda t: torch.softmax(t, dim=-1),
        "elu": lambda t: F.elu(t, alpha=1.0),
        "leaky_relu": lambda t: F.leaky_relu(t, negative_slope=0.2),
        "linear": lambda t: t,
    }[name](z)


def forward(params, layers, x):
    """Returns (output, logits of the last layer)."""
    h, z = x, None
    for i, (_, a) in enumerate(layers):
        z = h @ params[2 * i] + params[2 * i + 1]
        h = act(a, z)
    return h, z


def loss_fn(loss, layers, out, logits, y):
    last = layers[-1][1]
    if loss == "binary_crossentropy":
        assert last == "sigmoid"
        return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(-1).mean()
    if loss == "sparse_categorical_crossentropy":
        assert last == "softmax"
        return F.cross_entropy(logits, y.long().reshape(-1))
    if loss == "mse":
        return ((out - y) ** 2).mean(-1).mean()
    raise ValueError(loss)


def main(out_path):
    rng = np.random.default_rng(20261129)
    records = []

    def put(name, arr):
        records.append((name, np.asarray(arr, dtype=np.float32).ravel()))

    for name, n_in, layers, loss, rows in MODELS:
        x = rng.standard_normal((rows, n_in)).astype(np.float32)
        k = layers[-1][0]
        if loss == "binary_crossentropy":
            y = (rng.random((rows, k)) < 0.4).astype(np.float32)
        elif loss == "sparse_categorical_crossentropy":
            y = rng.integers(0, k, size=(rows, 1)).astype(np.float32)
        else:
            y = rng.standard_normal((rows, k)).astype(np.float32)
        put(f"{name}.x", x)
        put(f"{name}.y", y)
        params = []
        fan_in = n_in
        for i, (units, _) in enumerate(layers):
            limit = np.sqrt(6.0 / (fan_in + units))
            w = rng.uniform(-limit, limit, size=(fan_in, units)).astype(np.float32)
            b = rng.uniform(-0.1, 0.1, size=(units,)).astype(np.float32)
            put(f"{name}.w{i}", w)
            put(f"{name}.b{i}", b)
            params += [w, b]
            fan_in = units

        p = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in params]
        xt = torch.tensor(x, dtype=torch.float64)
        yt = torch.tensor(y, dtype=torch.float64)
        with torch.no_grad():
            out0, _ = forward(p, layers, xt)
        put(f"{name}.out0", out0.numpy())

        m = [torch.zeros_like(t) for t in p]
        v = [torch.zeros_like(t) for t in p]
        t = 0
        for start in range(0, rows, BATCH):
            xb, yb = xt[start:start + BATCH], yt[start:start + BATCH]
            out, logits = forward(p, layers, xb)
            lval = loss_fn(loss, layers, out, logits, yb)
            grads = torch.autograd.grad(lval, p)
            t += 1
            alpha = LR * np.sqrt(1 - B2 ** t) / (1 - B1 ** t)
            with torch.no_grad():
                for pi, gi, mi, vi in zip(p, grads, m, v):
                    mi += (gi - mi) * (1 - B1)
                    vi += (gi * gi - vi) * (1 - B2)
                    pi -= alpha * mi / (torch.sqrt(vi) + EPS)
        for i, pi in enumerate(p):
            put(f"{name}.{'w' if i % 2 == 0 else 'b'}{i // 2}_1", pi.detach().numpy())
        with torch.no_grad():
            out1, logits1 = forward(p, layers, xt)
            put(f"{name}.loss1", [float(loss_fn(loss, layers, out1, logits1, yt))])

    with open(out_path, "wb") as f:
        for name, arr in records:
            f.write(struct.pack("<32sI", name.encode(), arr.size))
            f.write(arr.astype("<f4").tobytes())
    print(f"wrote {len(records)} reference arrays to {out_path} (torch {torch.__version__})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: torch_parity.py OUT")
    main(sys.argv[1])
