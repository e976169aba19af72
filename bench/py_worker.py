#!/usr/bin/python3
"""The reference for bench/bench_e2e.py: a plain Python inference worker, as one
would write it with Debian's confluent-kafka, numpy, h5py and redis-py. One job
at a time: consume, decode (msgpack), resolve the model (alias -> version, h5
bytes from Redis, cached), forward pass with numpy, write the result and the
final state to Redis, then store the offset. Used only as the benchmark's
reference; it is not part of maas.
usage: py_worker.py BROKERS REDIS_URL TOPIC GROUP
"""
import base64
import io
import json
import signal
import struct
import sys
import time

import h5py
import msgpack
import numpy as np
import redis
from confluent_kafka import Consumer

brokers, redis_url, topic, group = sys.argv[1:5]
r = redis.Redis.from_url(redis_url)
c = Consumer({"bootstrap.servers": brokers, "group.id": group, "auto.offset.reset": "earliest",
              "enable.auto.offset.store": False})
c.subscribe([topic])
models = {}
running = True
signal.signal(signal.SIGTERM, lambda *a: globals().__setitem__("running", False))

ACT = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
       "linear": lambda z: z, "tanh": np.tanh,
       "softmax": lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)}


def load(name, version):
    key = (name, version)
    if key not in models:
        h5 = r.hget(f"maas:model:{{{name}}}:versions", f"{version}.h5")
        f = h5py.File(io.BytesIO(h5), "r")
        cfg = json.loads(f.attrs["model_config"])
        layers, norm = [], None
        mw = f["model_weights"]
        for l in cfg["config"]["layers"]:
            c_ = l["config"]
            if l["class_name"] == "Normalization":
                norm = (np.array(c_["mean"], np.float32), np.sqrt(np.array(c_["variance"], np.float32)))
            if l["class_name"] == "Dense":
                g = mw[c_["name"]]
                names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
                w = g[names[0]][()]
                b = g[names[1]][()] if len(names) > 1 else 0
                layers.append((w, b, ACT[c_.get("activation") or "linear"]))
        models[key] = (norm, layers)
    return models[key]


while running:
    m = c.poll(0.1)
    if m is None or m.error():
        continue
    job = msgpack.unpackb(m.value())
    ref = job["model"]
    name, alias = (ref.split("@") + ["latest"])[:2] if "@" in ref else (ref.split(":")[0], "latest")
    version = int(r.hget(f"maas:model:{{{name}}}:aliases", alias))
    norm, layers = load(name, version)
    x = np.asarray(job["inputs"], dtype=np.float32)
    if norm is not None:
        x = (x - norm[0]) / norm[1]
    for w, b, act in layers:
        x = act(x @ w + b)
    out = x.astype("<f4")
    result = msgpack.packb({"v": 1, "type": "infer", "model": name, "version": version,
                            "outputs": {"shape": list(out.shape), "dtype": "float32", "data": out.tobytes()}})
    now = int(time.time() * 1000)
    r.set(f"maas:job:{{{job['id']}}}", json.dumps({
        "id": job["id"], "type": "infer", "state": "succeeded",
        "result": base64.b64encode(result).decode(), "created_ms": job.get("created_ms", 0),
        "finished_ms": now, "worker": "py"}))
    c.store_offsets(m)
c.close()
