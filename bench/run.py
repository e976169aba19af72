#!/usr/bin/python3
"""Runs maas-bench-core and the PyTorch reference in one run and prints the ratios.

usage: /usr/bin/python3 bench/run.py [--build build] [--repeats 3] [--threads 1] [--anchors]
The targets are those of issues 2 and 20; a ratio > 1 means maas is better. --anchors also
measures ONNX Runtime and Keras 3 (JAX) on the same work (bench/anchors.py, in a venv from PyPI
cached by bench/anchors_venv.sh), pinned to one core with one thread each; --threads must then
be 1.
"""
import argparse
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT,
                         env=env).stdout
    vals = {}
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        vals[k] = v
    return vals


def fashion_h5(part="train"):
    """Fashion-MNIST's training set (part "train": x 60000 x 784 float32 in [0, 1], y class
    indices) or test set ("t10k": 10 000 rows) as HDF5, made once from Debian's
    dataset-fashion-mnist into the cache dir."""
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "maas")
    path = os.path.join(cache, f"fashion-{part}.h5")
    if os.path.exists(path):
        return path
    import gzip
    import h5py
    import numpy as np
    src = "/usr/share/datasets/fashion-mnist/"
    with gzip.open(src + f"{part}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255
    with gzip.open(src + f"{part}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.float32).reshape(-1, 1)
    os.makedirs(cache, exist_ok=True)
    with h5py.File(path + ".tmp", "w") as h:
        h["x"], h["y"] = x, y
    os.replace(path + ".tmp", path)
    return path


def fit_process(a):
    """A user's one-epoch `maas fit` of the Fashion MLP from that HDF5 file, as a whole process
    against the epoch it prints: the rest is reading the 188 MB (warm page cache), starting
    and saving (issue 20's data loading, target <= 0.15 s)."""
    import re
    import statistics
    import time
    h5 = fashion_h5()
    maas = os.path.join(ROOT, a.build, "bin", "maas")
    out = os.path.join(ROOT, ".local", "bench-fit.h5")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cmd = [maas, "fit", "--data", h5 + ":/x", "--labels", h5 + ":/y", "--layers",
           "256:relu,128:relu,10:softmax", "--epochs", "1", "--batch-size", "128", "--seed", "1",
           "--threads", str(a.threads), "-o", out]
    walls, epochs, reads = [], [], []
    for i in range(a.repeats * 2 + 1):  # the first warms the page cache: not counted
        t0 = time.perf_counter()
        p = subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if i:
            walls.append(wall)
            epochs.append(float(re.search(r"Epoch 1/1 - ([0-9.]+)s", p.stdout).group(1)))
            reads.append(float(re.search(r"read in ([0-9.]+) s", p.stderr).group(1)))
    rest = statistics.median(x - y for x, y in zip(walls, epochs))
    print(f"{'maas fit, 188 MB HDF5: reading it (s)':38} {statistics.median(reads):>12.2f} "
          f"{'':>12} {'':>8}  <= 0.15 s (issue 20; the whole one-epoch process "
          f"{statistics.median(walls):.2f} s, its epoch {statistics.median(epochs):.2f} s, "
          f"all but the epoch {rest:.2f} s; medians of {len(walls)}, warm page cache)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--anchors", action="store_true")
    a = ap.parse_args()
    if a.anchors and a.threads != 1:
        ap.error("--anchors measures single-threaded peers: use --threads 1")
    args = ["--repeats", str(a.repeats), "--threads", str(a.threads)]
    m = run([os.path.join(ROOT, a.build, "bin", "maas-bench-core")] + args)
    # the same on OpenBLAS for the float batches (MAAS_FLOAT_GEMM, maas/cpu.h), for the ratio
    mb = run([os.path.join(ROOT, a.build, "bin", "maas-bench-core")] + args,
             env={**os.environ, "MAAS_FLOAT_GEMM": "openblas"})
    # torch.set_num_threads does not reach the BLAS Debian's torch calls for its linear layers
    # (OpenBLAS's pthread build, which starts one thread per core): pinned here, or PyTorch's
    # "single-threaded" batch predictions ran on every core (measured: 147 vs 94 GFLOP/s)
    threads = str(a.threads)
    t = run([sys.executable, os.path.join(HERE, "torch_bench.py")] + args,
            env={**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads})
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"machine: {cpu}, {os.cpu_count()} cores, {platform.machine()}; "
          f"BLAS kernel {m['blas_core']}; torch {t['torch']}; threads {a.threads}; "
          f"medians of {a.repeats} epochs / {a.repeats * 5} runs")
    print(f"{'benchmark':38} {'maas':>12} {'pytorch':>12} {'ratio':>8}  target")
    f = float

    def row(name, mv, tv, ratio, target, fmt="{:.0f}"):
        tv_s = fmt.format(tv) if tv is not None else "-"
        print(f"{name:38} {fmt.format(mv):>12} {tv_s:>12} {ratio:>7.2f}x  {target}")

    row("fashion epoch, batch 128 (samples/s)", f(m["fashion_epoch_sps"]),
        f(t["fashion_epoch_sps"]), f(m["fashion_epoch_sps"]) / f(t["fashion_epoch_sps"]),
        ">= 1.5x")
    row("pima seed model, 10 epochs (ms)", f(m["pima_10ep_s"]) * 1e3, f(t["pima_10ep_s"]) * 1e3,
        f(t["pima_10ep_s"]) / f(m["pima_10ep_s"]), ">= 30x", "{:.2f}")
    row("single-row predict (us)", f(m["predict1_us"]), f(t["predict1_us"]),
        f(t["predict1_us"]) / f(m["predict1_us"]), "<= 6 us (maas)", "{:.2f}")
    print(f"{'  its products: maas_rowvec vs sgemv (us)':38} {f(m['rowvec_fashion_us']):>12.2f} "
          f"{f(m['sgemv_fashion_us']):>12.2f} "
          f"{f(m['sgemv_fashion_us']) / f(m['rowvec_fashion_us']):>7.2f}x  (the second column: "
          f"OpenBLAS's sgemv on the same weights, same run; 0.94 MB of weights per row)")
    wmb = 4.0 * (784 * 256 + 256 * 128 + 128 * 10) / 1e6
    if f(m["read_weights_gbps"]) > 0:
        print(f"{'  its floor: reading the weights (us)':38} "
              f"{wmb * 1e3 / f(m['read_weights_gbps']):>12.2f} {'':>12} {'':>8}  (what bounds a row: "
              f"re-reading {wmb:.2f} MB runs at {f(m['read_weights_gbps']):.0f} GB/s here; maas_rowvec "
              f"reaches {wmb * 1e3 / f(m['rowvec_fashion_us']):.0f} GB/s; the bf16 model's "
              f"{wmb / 2:.2f} MB: floor {wmb / 2 * 1e3 / f(m['read_weights_bf16_gbps']):.2f} us, "
              f"measured {f(m['predict1_bf16_us']):.2f} us)")
    row(f"batch-1024 predict, {m['float_gemm']} (samples/s)", f(m["predict1024_sps"]),
        f(t["predict1024_sps"]), f(m["predict1024_sps"]) / f(t["predict1024_sps"]), ">= 1.5x")
    row("  the same on openblas (samples/s)", f(mb["predict1024_sps"]), f(t["predict1024_sps"]),
        f(mb["predict1024_sps"]) / f(t["predict1024_sps"]),
        f"{m['float_gemm']} / openblas: {f(m['predict1024_sps']) / f(mb['predict1024_sps']):.2f}x")
    row("single-row predict, int8 model (us)", f(m["predict1_int8_us"]), f(t["predict1_us"]),
        f(t["predict1_us"]) / f(m["predict1_int8_us"]), "(maas int8 vs torch float32)", "{:.2f}")
    row("batch-1024 predict, int8 (samples/s)", f(m["predict1024_int8_sps"]),
        f(t["predict1024_sps"]), f(m["predict1024_int8_sps"]) / f(t["predict1024_sps"]),
        ">= 1.5x (maas int8 vs torch float32)")
    print(f"{'explaining a row, 10 outputs (us)':38} {f(m['explain_gxi_us']):>12.0f} {'':>12} "
          f"{'':>8}  (gradient x input; integrated gradients at 64 steps: "
          f"{f(m['explain_ig64_us']):.0f} us; double-precision backward passes, issue 22)")
    row("single-row predict, bf16 model (us)", f(m["predict1_bf16_us"]), f(t["predict1_us"]),
        f(t["predict1_us"]) / f(m["predict1_bf16_us"]),
        f"(maas bf16 on {m['bf16_kernel']} vs torch float32)", "{:.2f}")
    row("batch-1024 predict, bf16 (samples/s)", f(m["predict1024_bf16_sps"]),
        f(t["predict1024_sps"]), f(m["predict1024_bf16_sps"]) / f(t["predict1024_sps"]),
        f"(maas bf16 vs torch float32; vs maas float32: "
        f"{f(m['predict1024_bf16_sps']) / f(m['predict1024_sps']):.2f}x)")
    peak = f(m["sgemm_peak_gflops"])
    # the Fashion model's forward pass: 2 * (784*256 + 256*128 + 128*10) FLOPs per row
    fwd = 2.0 * (784 * 256 + 256 * 128 + 128 * 10)
    print(f"{'batch-1024 predict GFLOP/s vs sgemm peak':38} "
          f"{f(m['predict1024_sps']) * fwd / 1e9:>12.1f} {f(t['predict1024_sps']) * fwd / 1e9:>12.1f} "
          f"{'':>8}  (OpenBLAS sgemm peak {peak:.1f}: maas "
          f"{f(m['predict1024_sps']) * fwd / 1e9 / peak:.2f}x of it, PyTorch "
          f"{f(t['predict1024_sps']) * fwd / 1e9 / peak:.2f}x)")
    # the best GEMM measured here: OpenBLAS's sgemm or oneDNN's f32 matmul, 1024^3, same run
    best = max(peak, f(m["onednn_peak_gflops"]))
    print(f"{'training GEMMs GFLOP/s vs best GEMM':38} {f(m['train_insitu_gflops']):>12.1f} "
          f"{best:>12.1f} {f(m['train_insitu_gflops']) / best:>7.2f}x  >= 0.80x "
          f"(issue 20; the GEMM calls inside the real steps; the best of OpenBLAS "
          f"{peak:.1f} and oneDNN {f(m['onednn_peak_gflops']):.1f} on 1024^3; sgemm alone on "
          f"the step's shapes: {f(m['sgemm_train_gflops']) / best:.2f}x)")
    print(f"{'whole step: GEMM FLOPs / epoch time':38} {f(m['train_gemm_gflops']):>12.1f} "
          f"{peak:>12.1f} {f(m['train_gemm_gflops']) / peak:>7.2f}x  (GEMM "
          f"{f(m['train_step_gemm_share']) * 100:.0f}% of step time, optimizer "
          f"{f(m['train_update_share']) * 100:.0f}%; the rest: activations, loss, copies)")
    fit_process(a)
    if not a.anchors:
        return
    py = subprocess.run([os.path.join(HERE, "anchors_venv.sh")], check=True, capture_output=True,
                        text=True).stdout.strip()
    one = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    r = run(["taskset", "-c", "0", py, os.path.join(HERE, "anchors.py"), "--repeats",
             str(a.repeats)], env=one)
    print(f"\nanchors (one core, one thread): onnxruntime {r['onnxruntime']}, keras {r['keras']}")
    print(f"{'benchmark':38} {'maas':>12} {'peer':>12} {'ratio':>8}  target (issue 20)")
    row("batch-1024 predict vs ORT (samples/s)", f(m["predict1024_sps"]),
        f(r["ort_predict1024_sps"]), f(m["predict1024_sps"]) / f(r["ort_predict1024_sps"]),
        ">= 1.0x")
    best = max(f(m["sgemm_peak_gflops"]), f(m["onednn_peak_gflops"]))
    print(f"{'  what bounds it (GFLOP/s)':38} {f(m['predict1024_sps']) * fwd / 1e9:>12.1f} "
          f"{f(r['ort_predict1024_sps']) * fwd / 1e9:>12.1f} {'':>8}  (both at the GEMM: maas "
          f"{f(m['predict1024_sps']) * fwd / 1e9 / best:.2f}x, ORT "
          f"{f(r['ort_predict1024_sps']) * fwd / 1e9 / best:.2f}x of the best GEMM measured here, "
          f"{best:.0f} GFLOP/s on 1024^3)")
    row("int8 batch-1024 vs ORT int8 (samples/s)", f(m["predict1024_int8_sps"]),
        f(r["ort_predict1024_int8_sps"]),
        f(m["predict1024_int8_sps"]) / f(r["ort_predict1024_int8_sps"]),
        ">= 1.2x (ORT: quantize_dynamic)")
    batch_us = 1024 / f(m["predict1024_int8_sps"]) * 1e6
    ort_us = 1024 / f(r["ort_predict1024_int8_sps"]) * 1e6
    print(f"{'  what bounds it (us per 1024 rows)':38} {batch_us:>12.0f} {ort_us:>12.0f} {'':>8}  "
          f"(maas's GEMMs alone {f(m['int8_gemms1024_us']):.0f} us = "
          f"{f(m['int8_gemms1024_us']) / batch_us * 100:.0f}% of its batch; 1.2x ORT needs the "
          f"whole batch in {ort_us / 1.2:.0f} us; the rest is per-row quantization, the f32 "
          f"epilogue, the input check and activations)")
    row("single row vs ORT (us)", f(m["predict1_us"]), f(r["ort_predict1_us"]),
        f(r["ort_predict1_us"]) / f(m["predict1_us"]),
        f">= 2x (ORT's includes a {f(r['ort_call_us']):.1f} us Python call)", "{:.2f}")
    row("int8 single row vs ORT int8 (us)", f(m["predict1_int8_us"]), f(r["ort_predict1_int8_us"]),
        f(r["ort_predict1_int8_us"]) / f(m["predict1_int8_us"]), "", "{:.2f}")
    row("bf16 batch-1024 vs ORT float (samples/s)", f(m["predict1024_bf16_sps"]),
        f(r["ort_predict1024_sps"]), f(m["predict1024_bf16_sps"]) / f(r["ort_predict1024_sps"]),
        f"(maas bf16 on {m['bf16_kernel']} vs ORT float32)")
    row("bf16 single row vs ORT float (us)", f(m["predict1_bf16_us"]), f(r["ort_predict1_us"]),
        f(r["ort_predict1_us"]) / f(m["predict1_bf16_us"]), "", "{:.2f}")
    row("fashion epoch vs Keras 3 / JAX (samples/s)", f(m["fashion_epoch_sps"]),
        f(r["keras_epoch_sps"]), f(m["fashion_epoch_sps"]) / f(r["keras_epoch_sps"]), ">= 1.5x")
    best = max(f(m["sgemm_peak_gflops"]), f(m["onednn_peak_gflops"]))
    ceiling = f(m["fashion_epoch_sps"]) * best / f(m["train_gemm_gflops"])
    print(f"{'  what bounds it (samples/s)':38} {ceiling:>12.0f} {'':>12} "
          f"{ceiling / f(r['keras_epoch_sps']):>7.2f}x  (the epoch with nothing but its GEMMs, "
          f"all at the best GEMM measured here, {best:.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
