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

Tolerances for the trained weights and the loss (NAME.w0_1_tol, ...) come from
float32 arithmetic, not from one machine's output: the same epoch is run again
K times in float64 with every operation's result perturbed as float32
rounding could perturb it, at its worst-case size (Monte Carlo arithmetic):
  * a matmul or sum of n products (forward, and both backward products) by
    uniform noise in +-gamma_n * (|A| @ |B|), gamma_n = n u / (1 - n u), the
    bound on any float32 summation order of n terms (u = 2^-24), with or
    without FMA;
  * an activation, a loss gradient and each Adam quantity (m, v, the update)
    by a relative +-4u (libm's expf/tanhf/erff/expm1f are within 2 ulp).
The tolerance of each weight is SAFETY times the widest deviation seen, plus
one ulp of its value per update and one more: a weight whose gradient is well above its rounding noise
gets a tight bound, one whose gradient is at the noise (where Adam's
g / sqrt(v) can flip sign) a wide one. A real bug (a wrong beta, learning
rate, activation or gradient) moves weights by far more.

Writes OUT as a sequence of records: 32-byte NUL-padded name, uint32 count,
then count little-endian float32 values.
The convolutional models come from torch_parity_cnn.py, into the same file.
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
U = 2.0 ** -24  # float32 unit roundoff
K, SAFETY = 12, 4  # perturbed runs; tolerance = SAFETY x the widest deviation


def gamma(n):
    return n * U / (1 - n * U)


class Noise:
    """Perturbation source for one Monte Carlo run (None: exact float64)."""

    def __init__(self, seed):
        self.g = None if seed is None else torch.Generator().manual_seed(seed)

    def __call__(self, t, scale):
        """t + U(-1, 1) * scale, elementwise (scale broadcasts)."""
        if self.g is None:
            return t
        r = torch.rand(t.shape, generator=self.g, dtype=torch.float64) * 2 - 1
        return t + r * scale


def round_fn(noise, rel):
    """An identity whose value and incoming gradient are perturbed by +-rel relative."""

    class Round(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return noise(t, rel * t.abs())

        @staticmethod
        def backward(ctx, g):
            return noise(g, rel * g.abs())

    return Round.apply


def dense_fn(noise):
    """h @ W + b with forward and backward roundings at their worst-case size."""

    class Dense(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h, w, b):
            ctx.save_for_backward(h, w)
            n = h.shape[1]
            return noise(h @ w + b, gamma(n + 1) * (h.abs() @ w.abs() + b.abs()))

        @staticmethod
        def backward(ctx, g):
            h, w = ctx.saved_tensors
            gh = noise(g @ w.T, gamma(w.shape[1]) * (g.abs() @ w.abs().T))
            gw = noise(h.T @ g, gamma(h.shape[0]) * (h.abs().T @ g.abs()))
            gb = noise(g.sum(0), gamma(g.shape[0]) * g.abs().sum(0))
            return gh, gw, gb

    return Dense.apply


def act(name, z):
    return {
        "relu": torch.relu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "gelu": lambda t: F.gelu(t),  # exact erf form
        "softmax": lambda t: torch.softmax(t, dim=-1),
        "elu": lambda t: F.elu(t, alpha=1.0),
        # maas (like Keras) holds alpha as a float32: 0.2f, not the double 0.2
        "leaky_relu": lambda t: F.leaky_relu(t, negative_slope=float(np.float32(0.2))),
        "linear": lambda t: t,
    }[name](z)


def forward(params, layers, x, noise=None):
    """Returns (output, logits of the last layer); noise perturbs every operation."""
    noise = noise or Noise(None)
    dense, rnd = dense_fn(noise), round_fn(noise, 4 * U)
    h, z = x, None
    for i, (_, a) in enumerate(layers):
        z = dense(h, params[2 * i], params[2 * i + 1])
        h = rnd(act(a, z))
    return h, z


def adam_step(pi, gi, mi, vi, alpha, noise):
    """Keras's Adam update of one tensor in place, each quantity rounded as float32 could."""
    mi += (gi - mi) * (1 - B1)
    mi.copy_(noise(mi, 4 * U * mi.abs()))
    vi += (gi * gi - vi) * (1 - B2)
    vi.copy_(noise(vi, 4 * U * vi.abs()))
    step = alpha * mi / (torch.sqrt(vi) + EPS)
    pi -= noise(step, 4 * U * step.abs())
    pi.copy_(noise(pi, U * pi.abs()))  # the subtraction rounds too


def train_epoch(params, layers, loss, xt, yt, noise=None):
    """One epoch of Keras-style Adam in float64 (perturbed when noise is given)."""
    noise = noise or Noise(None)
    rnd = round_fn(noise, 4 * U)
    p = [t.detach().clone().requires_grad_(True) for t in params]
    m = [torch.zeros_like(t) for t in p]
    v = [torch.zeros_like(t) for t in p]
    t = 0
    for start in range(0, xt.shape[0], BATCH):
        xb, yb = xt[start:start + BATCH], yt[start:start + BATCH]
        out, logits = forward(p, layers, xb, noise)
        lval = loss_fn(loss, layers, out, rnd(logits), yb)
        grads = torch.autograd.grad(lval, p)
        t += 1
        alpha = LR * np.sqrt(1 - B2 ** t) / (1 - B1 ** t)
        with torch.no_grad():
            for pi, gi, mi, vi in zip(p, grads, m, v):
                adam_step(pi, gi, mi, vi, alpha, noise)
    with torch.no_grad():
        out1, logits1 = forward(p, layers, xt, noise)
        l1 = loss_fn(loss, layers, out1, logits1, yt)
        # the mean of per-row losses (each within a few ulp): a sum of rows + 8 roundings
        l1 = noise(l1, gamma(xt.shape[0] + 8) * l1.abs())
    return [q.detach() for q in p], float(l1)


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

        p1, loss1 = train_epoch(p, layers, loss, xt, yt)
        dev = [torch.zeros_like(t) for t in p1]
        ldev = 0.0
        for k in range(K):
            pk, lk = train_epoch(p, layers, loss, xt, yt, Noise(1000 + k))
            dev = [torch.maximum(d, (a - b).abs()) for d, a, b in zip(dev, pk, p1)]
            ldev = max(ldev, abs(lk - loss1))
        for i, (pi, di) in enumerate(zip(p1, dev)):
            tag = f"{name}.{'w' if i % 2 == 0 else 'b'}{i // 2}_1"
            put(tag, pi.numpy())
            # + (steps + 1) ulp: each update rounds the weight once (<= 1/2 ulp <= U |w|)
            steps = -(-rows // BATCH)
            put(tag + "_tol", (SAFETY * di + 2 * (steps + 1) * U * pi.abs()).numpy())
        put(f"{name}.loss1", [loss1])
        put(f"{name}.loss1_tol", [SAFETY * ldev + 2 * U * abs(loss1)])

    import torch_parity_cnn  # the convolutional models (issue 23), into the same file
    torch_parity_cnn.records(rng, put)

    with open(out_path, "wb") as f:
        for name, arr in records:
            f.write(struct.pack("<32sI", name.encode(), arr.size))
            f.write(arr.astype("<f4").tobytes())
    print(f"wrote {len(records)} reference arrays to {out_path} (torch {torch.__version__})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: torch_parity.py OUT")
    main(sys.argv[1])
