#!/usr/bin/python3
"""Scaling out while jobs flow: one worker, then two, then three, under a steady stream of
inference jobs. Proves that the partitions get shared (each worker reports its share on
/readyz), that every job ends in exactly one final record, and reports throughput per phase
(on a 2-core machine more workers mostly share the same cores: correctness, not speed).
usage: test_scaling.py WORKER_BINARY WORKDIR   (env MAAS_KAFKA_BROKERS, MAAS_REDIS_URL)
"""
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import urllib.request
import uuid

import msgpack
import redis
from confluent_kafka import Producer

from itkeys import job_record, job_state, kafka_conf, redis_login

WORKER, WORK = sys.argv[1], sys.argv[2]
BROKERS = os.environ.get("MAAS_KAFKA_BROKERS", "127.0.0.1:29092")
REDIS_URL = os.environ.get("MAAS_REDIS_URL", "redis://127.0.0.1:26379")
os.makedirs(WORK, exist_ok=True)
R = redis.Redis.from_url(REDIS_URL, **redis_login())
P = Producer(kafka_conf(BROKERS, enable_idempotence=True, linger_ms=2))
RUN = uuid.uuid4().hex[:8]
PREFIX = f"scale{RUN}."
procs, failures = {}, []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def start(name, port):
    log = open(os.path.join(WORK, f"{name}.log"), "w")
    procs[name] = subprocess.Popen(
        [WORKER, "--brokers", BROKERS, "--redis", REDIS_URL, "--id", name, "--topic-prefix", PREFIX,
         "--http", f"127.0.0.1:{port}", "-X", "kafka.session.timeout.ms=6000"], stderr=log, stdout=log)


def readyz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as r:
            return json.loads(r.read())
    except Exception as e:  # 503 while joining
        return json.loads(e.read()) if hasattr(e, "read") else {"partitions": {"infer": 0}}


admin = os.path.join(os.path.dirname(WORKER), "maas-kafka-admin")
subprocess.run([admin, "--brokers", BROKERS, "create-topics", "--prefix", PREFIX], check=True,
               stdout=subprocess.DEVNULL)
rng = random.Random(1)
X = [[rng.gauss(0, 1) for _ in range(8)] for _ in range(300)]
Y = [[1.0 if r[0] > 0 else 0.0] for r in X]
flat = lambda m: struct.pack("<%df" % (len(m) * len(m[0])), *[v for r in m for v in r])
mat = lambda m: {"shape": [len(m), len(m[0])], "dtype": "float32", "data": flat(m)}
ports = {"s1": 29111, "s2": 29112, "s3": 29113}
try:
    start("s1", ports["s1"])
    tid = f"scale-train-{RUN}"
    P.produce(PREFIX + "jobs.work", key=tid, value=msgpack.packb({
        "v": 1, "id": tid, "type": "train", "model": f"scale-{RUN}",
        "layers": [{"units": 8, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
        "loss": "binary_crossentropy", "epochs": 3, "data": {"x": mat(X), "y": mat(Y)}}))
    P.flush()
    end = time.time() + 60
    while job_state(R, tid) != b"succeeded" and time.time() < end:
        time.sleep(0.05)
    check(job_state(R, tid) == b"succeeded", "a model to serve")

    ids, phases, rate = [], [], 800
    for phase, joiner in enumerate([None, "s2", "s3"]):
        if joiner:
            start(joiner, ports[joiner])
        t0 = time.time()
        first = len(ids)
        # a phase lasts 8 s and at least 2 s past the moment the group has settled (every
        # worker holds partitions, all 6 assigned): a loaded machine may take longer to join
        # a worker, and the phase must not end on a fixed guess (at most 90 s)
        settled_at, it = None, 0
        while time.time() - t0 < 90 and not (time.time() - t0 >= 8 and settled_at
                                               and time.time() - settled_at >= 2):
            it += 1
            if settled_at is None and it % 10 == 1:  # about once a second
                held = [readyz(ports[n])["partitions"]["infer"] for n in procs]
                if sum(held) == 6 and min(held) >= 1:
                    settled_at = time.time()
            for _ in range(rate // 10):
                jid = f"sc-{RUN}-{len(ids)}"
                ids.append(jid)
                P.produce(PREFIX + "jobs.infer", key=jid, value=msgpack.packb({
                    "v": 1, "id": jid, "type": "infer", "model": f"scale-{RUN}",
                    "created_ms": int(time.time() * 1000), "inputs": [X[len(ids) % 300]]}))
            P.poll(0)
            time.sleep(0.1)
        P.flush()
        parts = {n: readyz(ports[n])["partitions"]["infer"] for n in procs}
        phases.append((len(procs), first, len(ids), parts))
        print(f"     {len(procs)} worker(s): inference partitions {parts}", flush=True)

    end = time.time() + 120
    pending = set(ids)
    while pending and time.time() < end:
        pipe = R.pipeline()
        batch = list(pending)[:5000]
        for j in batch:
            pipe.get(f"maas:job:{{{j}}}")
        for j, raw in zip(batch, pipe.execute()):
            if job_state(raw, None) == b"succeeded":
                pending.discard(j)
        time.sleep(0.1)
    check(not pending, f"all {len(ids)} jobs succeeded ({len(pending)} left)")
    pipe = R.pipeline()
    for j in ids:
        pipe.get(f"maas:job:{{{j}}}")
    recs = [[str(job_record(raw, None).get(f, "")).encode()
             for f in ("attempts", "worker", "created_ms", "finished_ms")] for raw in pipe.execute()]
    check(all(a == b"1" for a, _, _, _ in recs), "every job ran exactly once")
    n_parts = [sum(p.values()) for _, _, _, p in phases]
    check(all(n == 6 for n in n_parts), f"the 6 partitions are always fully assigned ({n_parts})")
    final = phases[-1][3]
    check(all(v >= 1 for v in final.values()), f"with three workers each holds partitions ({final})")
    for nw, a, b, _ in phases:
        by = {}
        fins = []
        for (att, w, c, f) in recs[a:b]:
            by[w.decode()] = by.get(w.decode(), 0) + 1
            fins.append(int(f))
        span = (max(fins) - min(fins)) / 1000 if fins else 0
        print(f"     phase with {nw} worker(s): {b - a} jobs at {(b - a) / span if span else 0:.0f}/s "
              f"(offered {rate}/s), served by {by}", flush=True)
    last = phases[-1]
    served = {w.decode() for (_, w, _, _) in recs[last[1]:last[2]]}
    check(len(served) == 3, f"in the last phase all three workers served jobs ({sorted(served)})")
finally:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        p.wait(30)
print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failed checks")
sys.exit(1 if failures else 0)
