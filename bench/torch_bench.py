#!/usr/bin/python3
"""PyTorch reference for bench/run.py: the same work as maas-bench-core.

Prints `key value` lines with the same keys. Uses PyTorch's own layers,
CrossEntropy/BCE losses and torch.optim.Adam, single-threaded unless --threads.
"""
import argparse
import csv
import gzip
import statistics
import time

import numpy as np
import torch


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fashion-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--pima", default="examples/data/pima-indians-diabetes.csv")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    print(f"torch {torch.__version__}\nthreads {torch.get_num_threads()}")

    x = torch.tensor(idx(f"{a.fashion_dir}/train-images-idx3-ubyte.gz").reshape(-1, 784),
                     dtype=torch.float32) / 255.0
    y = torch.tensor(idx(f"{a.fashion_dir}/train-labels-idx1-ubyte.gz").astype(np.int64))
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    lossf = torch.nn.CrossEntropyLoss()
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        perm = torch.randperm(len(x))
        for s in range(0, len(x), 128):
            i = perm[s:s + 128]
            opt.zero_grad()
            loss = lossf(model(x[i]), y[i])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    ep = statistics.median(times)
    print(f"fashion_epoch_s {ep:.4f}\nfashion_epoch_sps {len(x) / ep:.0f}")

    model.eval()
    smodel = torch.nn.Sequential(model, torch.nn.Softmax(dim=-1))
    with torch.inference_mode():
        lat = []
        for _ in range(a.repeats * 5):
            t0 = time.perf_counter()
            for i in range(2000):
                smodel(x[i % 1000:i % 1000 + 1])
            lat.append((time.perf_counter() - t0) / 2000 * 1e6)
        print(f"predict1_us {statistics.median(lat):.2f}")
        tp = []
        for _ in range(a.repeats * 5):
            t0 = time.perf_counter()
            for i in range(20):
                smodel(x[(i % 50) * 1024:(i % 50 + 1) * 1024])
            tp.append(1024 * 20 / (time.perf_counter() - t0))
        print(f"predict1024_sps {statistics.median(tp):.0f}")

    with open(a.pima) as f:
        rows = list(csv.reader(f))[1:]
    data = torch.tensor([[float(v) for v in r] for r in rows], dtype=torch.float32)
    n_train = len(data) * 8 // 10
    px, py = data[:n_train, :8], data[:n_train, 8:]
    px = (px - px.mean(0)) / px.std(0, unbiased=False)
    pt = []
    for r in range(a.repeats * 5):
        torch.manual_seed(r)
        m = torch.nn.Sequential(torch.nn.Linear(8, 10), torch.nn.ReLU(), torch.nn.Linear(10, 1))
        o = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-7)
        bce = torch.nn.BCEWithLogitsLoss()
        t0 = time.perf_counter()
        for _ in range(10):
            perm = torch.randperm(n_train)
            for s in range(0, n_train, 32):
                i = perm[s:s + 32]
                o.zero_grad()
                bce(m(px[i]), py[i]).backward()
                o.step()
        pt.append(time.perf_counter() - t0)
    print(f"pima_10ep_s {statistics.median(pt):.6f}")


if __name__ == "__main__":
    main()
