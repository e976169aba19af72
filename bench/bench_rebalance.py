#!/usr/bin/python3
"""What creating a tenant costs the other tenants' inference: a running local stack
(deploy/local/stack.sh up, authentication on, its demo tenant) answers synchronous predicts
(HTTP, the demo tenant's key) back to back; after 5 s a new tenant is created (its three
topics appear, every worker's pattern subscription picks them up within 5 s and the groups
rebalance), and 20 s later it is deleted. Prints the predict latency percentiles before
and after, the longest predict and the longest gap between two answers.
usage: /usr/bin/python3 bench/bench_rebalance.py [--seconds 30]   (from the repository root)
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import threading
import time
import urllib.request
import uuid

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=float, default=30)
ap.add_argument("--api", default="http://127.0.0.1:18080")
args = ap.parse_args()
cred = os.path.join(os.environ.get("MAAS_STATE_DIR", ".local/state"), "credentials")
key = open(os.path.join(cred, "demo.key")).read().strip()


def call(method, path, body):
    req = urllib.request.Request(args.api + path, data=json.dumps(body).encode(), method=method,
                                 headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


rows = [[float(v) for v in r] for r in list(csv.reader(open("examples/data/pima-indians-diabetes.csv")))[1:]]
model = f"rb-{uuid.uuid4().hex[:6]}"
sub = call("POST", "/v1/jobs", {"type": "train", "model": model, "epochs": 1, "seed": 1,
                                "layers": [{"units": 10, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
                                "loss": "binary_crossentropy",
                                "data": {"x": [r[:8] for r in rows[:200]], "y": [r[8:] for r in rows[:200]]}})
for _ in range(600):
    req = urllib.request.Request(args.api + f"/v1/jobs/{sub['id']}", headers={"Authorization": f"Bearer {key}"})
    if json.loads(urllib.request.urlopen(req, timeout=10).read())["state"] == "succeeded":
        break
    time.sleep(0.1)

call("POST", f"/v1/models/{model}:predict", {"inputs": [rows[700][:8]], "timeout_ms": 60000})  # warm-up
tenant = f"rb{uuid.uuid4().hex[:6]}"
events = {}


def admin():
    time.sleep(5)
    events["create"] = time.time()
    subprocess.run(["build/bin/maas", "tenant", "create", tenant, "--key-file", "/dev/null"], capture_output=True)
    events["created"] = time.time()
    time.sleep(20)
    events["delete"] = time.time()
    subprocess.run(["build/bin/maas", "tenant", "delete", tenant], capture_output=True)


threading.Thread(target=admin, daemon=True).start()
samples, end = [], time.time() + args.seconds
while time.time() < end:
    t0 = time.time()
    call("POST", f"/v1/models/{model}:predict", {"inputs": [rows[700][:8]], "timeout_ms": 60000})
    samples.append((t0, time.time() - t0))
before = [d for t, d in samples if t < events.get("create", end)]
after = [d for t, d in samples if t >= events.get("create", end)]
gaps = [b[0] + b[1] - (a[0] + a[1]) for a, b in zip(samples, samples[1:])]
worst = max(range(len(gaps)), key=gaps.__getitem__) if gaps else 0
worst_at = samples[worst][0] + samples[worst][1] if gaps else 0


def pct(v, q):
    return sorted(v)[min(len(v) - 1, int(q * len(v)))] * 1e3 if v else float("nan")


print(f"{len(samples)} predicts; before the tenant: p50 {pct(before, .5):.1f} ms, p99 {pct(before, .99):.1f} ms; "
      f"after: p50 {pct(after, .5):.1f} ms, p99 {pct(after, .99):.1f} ms, max {max(after) * 1e3 if after else 0:.0f} ms; "
      f"longest gap between answers {max(gaps) * 1e3:.0f} ms (median {statistics.median(gaps) * 1e3:.1f} ms), "
      f"starting {worst_at - events.get('create', 0):.1f} s after the create began "
      f"({events.get('created', 0) - events.get('create', 0):.1f} s long) and "
      f"{worst_at - events.get('delete', 0):+.1f} s from the delete")
