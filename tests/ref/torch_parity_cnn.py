"""PyTorch reference for the convolutional models of tests/unit/test_parity.c (issue 23),
written by torch_parity.py into the same parity.bin.

Two small networks with every layer maas has beyond Dense, in float64 with PyTorch, in maas's
own layout (rows flat, channels last; kernels (kh, kw, C, F); TensorFlow's "same" padding):

  D  reshape 6x6x2, Conv2D 4 3x3 tanh same, BatchNormalization, MaxPooling 2x2 same,
     AveragePooling 2x2 stride 1 same, Conv2D 3 2x2 relu, GlobalAveragePooling2D, Dense 3 softmax
  E  Embedding 9x3 on 8 indices, Conv1D 4 3 elu same, MaxPooling1D 2, BatchNormalization,
     AveragePooling1D 2, Flatten, Dense 1 sigmoid

For each: the outputs at the initial weights (inference: BatchNormalization by its moving
statistics), and every parameter after one epoch of Keras-style Adam without shuffling
(BatchNormalization on each batch's statistics, its moving statistics moved by Keras's rule).
Tolerances come from float32 arithmetic as in torch_parity.py: the same computations run K
more times with every operation perturbed at its worst-case float32 rounding (Monte Carlo
arithmetic); a tolerance is SAFETY x the widest deviation plus an ulp per update.

Records: M.x, M.y, M.params0 (maas's parameter block: each layer's weights in Keras's order),
M.out0, M.out0_tol, M.params1, M.params1_tol.
"""
import numpy as np
import torch
import torch.nn.functional as F

from torch_parity import B1, B2, LR, U, Noise, adam_step, dense_fn, gamma, round_fn

BATCH, K, SAFETY = 16, 12, 4
MOM, BN_EPS = 0.99, 1e-3


def same_pad(n, k, s):
    out = (n + s - 1) // s
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2, total - total // 2


def patches(x, kh, kw, sh, sw, same, fill=0.0):
    """(N, H, W, C) -> (N, oh, ow, kh, kw, C) windows, TensorFlow's padding."""
    n, h, w, c = x.shape
    if same:
        _, pt, pb = same_pad(h, kh, sh)
        _, pl, pr = same_pad(w, kw, sw)
        x = F.pad(x, (0, 0, pl, pr, pt, pb), value=fill)
    return x.unfold(1, kh, sh).unfold(2, kw, sw).permute(0, 1, 2, 4, 5, 3)


def conv(x, k, b, sh, sw, same, noise):
    kh, kw, c, f = k.shape
    p = patches(x, kh, kw, sh, sw, same)
    n, oh, ow = p.shape[:3]
    y = dense_fn(noise)(p.reshape(n * oh * ow, kh * kw * c), k.reshape(kh * kw * c, f), b)
    return y.reshape(n, oh, ow, f)


def maxpool(x, kh, kw, sh, sw, same):
    return patches(x, kh, kw, sh, sw, same, fill=-np.inf).amax(dim=(3, 4))


def avgpool(x, kh, kw, sh, sw, same, noise):
    """Padding cells not counted; a sum of the window's cells, then one division."""
    s = patches(x, kh, kw, sh, sw, same).sum(dim=(3, 4))
    ones = torch.ones_like(x[..., :1])
    cnt = patches(ones, kh, kw, sh, sw, same).sum(dim=(3, 4))
    mag = patches(x.abs(), kh, kw, sh, sw, same).sum(dim=(3, 4))
    y = noise(s, gamma(kh * kw) * mag) / cnt
    return noise(y, 2 * U * y.abs())  # 1/count rounded, then the product


def embed_fn(noise):
    class Embed(torch.autograd.Function):
        @staticmethod
        def forward(ctx, idx, table):
            ctx.save_for_backward(idx, table)
            return table[idx]

        @staticmethod
        def backward(ctx, g):
            idx, table = ctx.saved_tensors
            gt = torch.zeros_like(table).index_add_(0, idx.reshape(-1), g.reshape(-1, g.shape[-1]))
            mag = torch.zeros_like(table).index_add_(0, idx.reshape(-1),
                                                     g.abs().reshape(-1, g.shape[-1]))
            return None, noise(gt, gamma(idx.numel()) * mag)

    return Embed.apply


def batchnorm(x, gm, bt, mm, mv, training, noise, moved):
    """Over every axis but the last. Training: the batch's mean and biased variance (summed in
    double by maas), the normalized values rounded to float, then scale and shift (2 roundings);
    the moving statistics moved as Keras does, into moved (a list) when given."""
    rnd = round_fn(noise, 2 * U)
    axes = tuple(range(x.dim() - 1))
    if training:
        mean = x.mean(dim=axes)
        var = ((x - mean) ** 2).mean(dim=axes)
        xhat = round_fn(noise, U)((x - mean) / torch.sqrt(var + BN_EPS))
        if moved is not None:
            with torch.no_grad():
                nm = noise(mm * MOM + mean.detach() * (1 - MOM), 3 * U * (mm.abs() + mean.abs()))
                nv = noise(mv * MOM + var.detach() * (1 - MOM), 3 * U * (mv.abs() + var.abs()))
            moved += [nm, nv]
        return rnd(xhat * gm + bt)
    a = gm / torch.sqrt(mv + BN_EPS)
    return rnd((x - mm) * noise(a, 2 * U * a.abs()) + bt)


def act(name, z):
    return {"tanh": torch.tanh, "relu": torch.relu, "elu": lambda t: F.elu(t, alpha=1.0),
            "linear": lambda t: t}[name](z)


# parameter order in maas's block: each layer's weights in Keras's order
D_SHAPES = [("k0", (3, 3, 2, 4)), ("b0", (4,)), ("gamma", (4,)), ("beta", (4,)), ("mm", (4,)),
            ("mv", (4,)), ("k1", (2, 2, 4, 3)), ("b1", (3,)), ("w2", (3, 3)), ("b2", (3,))]
E_SHAPES = [("emb", (9, 3)), ("k0", (1, 3, 3, 4)), ("b0", (4,)), ("gamma", (4,)), ("beta", (4,)),
            ("mm", (4,)), ("mv", (4,)), ("w1", (8, 1)), ("b1", (1,))]
MODELS = [("D", 72, D_SHAPES, "sparse_categorical_crossentropy", 64),
          ("E", 8, E_SHAPES, "binary_crossentropy", 64)]


def forward(name, p, x, training, noise, moved=None):
    """(output, logits) of model name with parameters p (a dict); x is (N, inputs)."""
    rnd = round_fn(noise, 4 * U)
    if name == "D":
        h = x.reshape(-1, 6, 6, 2)
        h = rnd(act("tanh", conv(h, p["k0"], p["b0"], 1, 1, True, noise)))
        h = batchnorm(h, p["gamma"], p["beta"], p["mm"], p["mv"], training, noise, moved)
        h = maxpool(h, 2, 2, 2, 2, True)
        h = avgpool(h, 2, 2, 1, 1, True, noise)
        h = rnd(act("relu", conv(h, p["k1"], p["b1"], 1, 1, False, noise)))
        n = h.shape[1] * h.shape[2]
        g = noise(h.sum(dim=(1, 2)), gamma(n) * h.abs().sum(dim=(1, 2))) / n
        g = noise(g, 2 * U * g.abs())
        z = dense_fn(noise)(g, p["w2"], p["b2"])
        return rnd(torch.softmax(z, dim=-1)), z
    h = embed_fn(noise)(x.long(), p["emb"]).reshape(-1, 1, 8, 3)
    h = rnd(act("elu", conv(h, p["k0"], p["b0"], 1, 1, True, noise)))
    h = maxpool(h, 1, 2, 1, 2, False)
    h = batchnorm(h, p["gamma"], p["beta"], p["mm"], p["mv"], training, noise, moved)
    h = avgpool(h, 1, 2, 1, 2, False, noise)
    z = dense_fn(noise)(h.reshape(h.shape[0], -1), p["w1"], p["b1"])
    return rnd(torch.sigmoid(z)), z


def loss_of(loss, out, z, y):
    if loss == "binary_crossentropy":
        return F.binary_cross_entropy_with_logits(z, y, reduction="none").mean(-1).mean()
    return F.cross_entropy(z, y.long().reshape(-1))


def train_epoch(name, shapes, loss, p0, xt, yt, noise):
    names = [n for n, _ in shapes]
    trained = [n for n in names if n not in ("mm", "mv")]
    p = {n: p0[n].detach().clone().requires_grad_(n in trained) for n in names}
    m = {n: torch.zeros_like(p[n]) for n in trained}
    v = {n: torch.zeros_like(p[n]) for n in trained}
    rnd = round_fn(noise, 4 * U)
    t = 0
    for start in range(0, xt.shape[0], BATCH):
        xb, yb = xt[start:start + BATCH], yt[start:start + BATCH]
        moved = []
        out, z = forward(name, p, xb, True, noise, moved)
        grads = torch.autograd.grad(loss_of(loss, out, rnd(z), yb), [p[n] for n in trained])
        t += 1
        alpha = LR * np.sqrt(1 - B2 ** t) / (1 - B1 ** t)
        with torch.no_grad():
            p["mm"].copy_(moved[0])
            p["mv"].copy_(moved[1])
            for n, gi in zip(trained, grads):
                adam_step(p[n], gi, m[n], v[n], alpha, noise)
    return torch.cat([p[n].detach().reshape(-1) for n in names])


def records(rng, put):
    for name, n_in, shapes, loss, rows in MODELS:
        if name == "E":
            x = rng.integers(0, 9, size=(rows, n_in)).astype(np.float32)
        else:
            x = rng.standard_normal((rows, n_in)).astype(np.float32)
        if loss == "binary_crossentropy":
            y = (rng.random((rows, 1)) < 0.4).astype(np.float32)
        else:
            y = rng.integers(0, 3, size=(rows, 1)).astype(np.float32)
        p0 = {}
        for n, shape in shapes:
            if n == "mv":
                a = rng.uniform(0.5, 2.0, size=shape)
            elif n == "gamma":
                a = rng.uniform(0.7, 1.3, size=shape)
            else:
                a = rng.uniform(-0.5, 0.5, size=shape)
            p0[n] = torch.tensor(a.astype(np.float32), dtype=torch.float64)
        put(f"{name}.x", x)
        put(f"{name}.y", y)
        put(f"{name}.params0", torch.cat([p0[n].reshape(-1) for n, _ in shapes]).numpy())
        xt = torch.tensor(x, dtype=torch.float64)
        yt = torch.tensor(y, dtype=torch.float64)
        with torch.no_grad():
            out0, _ = forward(name, p0, xt, False, Noise(None))
            dev0 = torch.zeros_like(out0)
            for k in range(K):
                ok, _ = forward(name, p0, xt, False, Noise(2000 + k))
                dev0 = torch.maximum(dev0, (ok - out0).abs())
        put(f"{name}.out0", out0.numpy())
        put(f"{name}.out0_tol", (SAFETY * dev0 + 2 * U * out0.abs()).numpy())
        p1 = train_epoch(name, shapes, loss, p0, xt, yt, Noise(None))
        dev = torch.zeros_like(p1)
        for k in range(K):
            pk = train_epoch(name, shapes, loss, p0, xt, yt, Noise(3000 + k))
            dev = torch.maximum(dev, (pk - p1).abs())
        steps = -(-rows // BATCH)
        put(f"{name}.params1", p1.numpy())
        put(f"{name}.params1_tol", (SAFETY * dev + 2 * (steps + 1) * U * p1.abs()).numpy())
