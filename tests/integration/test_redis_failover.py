#!/usr/bin/python3
"""A Redis Cluster failover under a stream of jobs (issue 19), against the real 3-master +
3-replica cluster of the rediscluster fixture and the services fixture's Kafka.

Two workers serve the cluster; while inference and training jobs stream in (produced
straight to Kafka, as any client does), one master is killed with SIGKILL. Its replica is
promoted, the adapter follows the new slot map, and writes in between fail as retriable
(the workers rewind and retry). Then:
  - every job has exactly one record, final and succeeded (none lost: the workers confirm a
    write only after a replica has it, WAIT), each once (attempts as the worker counted);
  - every training job made exactly one version (none duplicated by its retries);
  - both workers kept running, and the killed node, started again, rejoins as a replica.
usage: test_redis_failover.py BIN_DIR PIMA_CSV WORKDIR REDIS_SH
       (env MAAS_KAFKA_BROKERS, MAAS_REDIS_URL = redis+cluster://..., MAAS_CONFIG, and the
       cluster's MAAS_STATE_DIR, MAAS_CRED_DIR, MAAS_REDIS_PORT for REDIS_SH)
"""
import csv
import os
import signal
import subprocess
import sys
import time
import uuid

import msgpack
from confluent_kafka import Producer
import redis

from itkeys import job_record, kafka_conf, redis_login

BIN, PIMA, WORK, REDIS_SH = sys.argv[1:5]
BROKERS = os.environ.get("MAAS_KAFKA_BROKERS", "127.0.0.1:29092")
URL = os.environ["MAAS_REDIS_URL"]
SEEDS = [h.split(":") for h in URL.split("://", 1)[1].split(",")]
W1, W2 = 29141, 29142
N_INFER, N_TRAIN, SECONDS = 400, 8, 8.0
os.makedirs(WORK, exist_ok=True)
RUN = uuid.uuid4().hex[:8]
failures, procs = [], []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def admin_login():
    """The fixture's admin login (INFO and CLUSTER are beyond the services' user); the workers
    and the CLI use the services' login."""
    login = redis_login()
    cred = os.environ.get("MAAS_CRED_DIR")
    if login and cred:
        with open(os.path.join(cred, "redis-admin.pass")) as f:
            login = {"username": "admin", "password": f.read().strip()}
    return login


PORTS = list(range(int(SEEDS[0][1]), int(SEEDS[0][1]) + 6))
conns = {}


def node(port):
    if port not in conns:
        conns[port] = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, **admin_login())
    return conns[port]


def rcmd(*args):
    """A command as a cluster client runs it: on a live node, following MOVED (written here:
    redis-py 4.3's cluster client does not get past a dead seed node)."""
    last = None
    for port in PORTS:
        target = port
        for _ in range(5):
            try:
                return node(target).execute_command(*args)
            except redis.exceptions.ResponseError as e:
                if not str(e).startswith("MOVED "):
                    raise
                target = int(str(e).split()[2].rsplit(":", 1)[1])
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
                last = e
                conns.pop(target, None)
                break
    raise last or RuntimeError("no redis node answered")


def cluster_ok():
    """cluster_state:ok on every live node, and each of its masters alive."""
    for port in PORTS:
        try:
            if b"cluster_state:ok" not in node(port).execute_command("CLUSTER", "INFO"):
                return False
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            conns.pop(port, None)
    return True


def nodes():
    """[(port, pid, role)] of the cluster's nodes, as redis.sh says."""
    out = subprocess.run([REDIS_SH, "nodes"], check=True, capture_output=True, text=True).stdout
    return [(int(p), int(pid) if pid.isdigit() else 0, role) for p, pid, role in
            (ln.split()[:3] for ln in out.splitlines() if len(ln.split()) >= 3)]


def spawn(name, *args):
    log = open(os.path.join(WORK, f"{name}-{len(procs)}.log"), "w")
    p = subprocess.Popen([os.path.join(BIN, name), *args], stdout=log, stderr=log)
    procs.append(p)
    return p


def maas(*args):
    return subprocess.run([os.path.join(BIN, "maas"), *args], check=True, capture_output=True)


def ready(port):
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


rows = [[float(v) for v in r] for r in list(csv.reader(open(PIMA)))[1:]]
victim = None
try:
    # a model to serve and a dataset to train on, through the CLI (the C adapter on the cluster)
    model, ds = f"fo{RUN}", f"fods{RUN}"
    h5 = os.path.join(WORK, "m.h5")
    maas("fit", "--data", PIMA, "--label", "-1", "--layers", "10:relu,1:sigmoid", "--epochs", "2",
         "-o", h5)
    maas("import", h5, "--name", model)
    maas("dataset", "put", ds, "--data", PIMA, "--label", "-1")
    check(rcmd("EXISTS", f"maas:dataset:{{{ds}}}") == 1, "the CLI stored a model and a dataset on the cluster")

    for port in (W1, W2):
        spawn("maas-worker", "--id", f"fo{port}-{RUN}", "--brokers", BROKERS, "--redis", URL,
              "--http", f"127.0.0.1:{port}")
    end = time.time() + 90
    while time.time() < end and not (ready(W1) and ready(W2)):
        time.sleep(0.2)
    check(ready(W1) and ready(W2), "two workers serve the cluster (ready)")

    # the stream: N_INFER inference jobs and N_TRAIN training jobs over SECONDS; a master dies
    # a third of the way in
    P = Producer(kafka_conf(BROKERS, enable_idempotence=True, linger_ms=5))
    victim = next((n for n in nodes() if n[2] == "master"), None)
    check(victim is not None and victim[1] > 0, f"a master to kill: {victim}")
    infer_ids = [f"fi{k}-{RUN}" for k in range(N_INFER)]
    train_ids = [f"ft{k}-{RUN}" for k in range(N_TRAIN)]
    t0, killed_at, sent = time.time(), None, 0
    for k, jid in enumerate(infer_ids):
        P.produce("maas.jobs.infer", key=jid, value=msgpack.packb(
            {"v": 1, "id": jid, "type": "infer", "model": model, "inputs": [rows[k % 700][:8]]}))
        if k % (N_INFER // N_TRAIN) == 0 and k // (N_INFER // N_TRAIN) < N_TRAIN:
            t = train_ids[k // (N_INFER // N_TRAIN)]
            P.produce("maas.jobs.work", key=t, value=msgpack.packb(
                {"v": 1, "id": t, "type": "train", "model": f"{model}-{t}",
                 "layers": [{"units": 4, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
                 "loss": "binary_crossentropy", "epochs": 2, "data": {"dataset": ds}}))
        P.poll(0)
        sent += 1
        if killed_at is None and time.time() - t0 > SECONDS / 3:
            os.kill(victim[1], signal.SIGKILL)  # a node of the fixture's cluster: ours
            killed_at = time.time()
        time.sleep(max(0.0, t0 + SECONDS * (k + 1) / N_INFER - time.time()))
    P.flush(30)
    check(killed_at is not None, f"master {victim[0]} killed {killed_at - t0:.1f} s into a "
          f"{SECONDS:.0f} s stream of {N_INFER} inference and {N_TRAIN} training jobs")

    # the replica takes over: every slot served again
    promoted = None
    end = time.time() + 60
    while time.time() < end and promoted is None:
        if cluster_ok():
            promoted = time.time()
        time.sleep(0.1)
    check(promoted is not None, f"a replica was promoted: the cluster served every slot again "
          f"{(promoted or time.time()) - killed_at:.1f} s after the kill")

    # every job final, once
    def states():
        recs = {jid: job_record(rcmd("GET", f"maas:job:{{{jid}}}"), None)
                for jid in infer_ids + train_ids}
        return {jid: [str(r[f]).encode() if f in r else None
                      for f in ("state", "attempts", "error_message")] for jid, r in recs.items()}
    end = time.time() + 180
    got = {}
    while time.time() < end:
        try:
            got = states()
        except redis.exceptions.RedisError:
            time.sleep(0.5)
            continue
        if all(v[0] == b"succeeded" for v in got.values()):
            break
        time.sleep(0.5)
    bad = {j: v for j, v in got.items() if v[0] != b"succeeded"}
    check(len(got) == N_INFER + N_TRAIN and not bad,
          f"every job has one final record, succeeded ({len(got) - len(bad)} of "
          f"{N_INFER + N_TRAIN}; not: {dict(list(bad.items())[:5])})")
    retried = sum(1 for v in got.values() if v[1] and int(v[1]) > 1)
    print(f"     {retried} jobs were taken more than once (redelivered after a retriable error)")
    versions = {t: rcmd("HGET", f"maas:model:{{{model}-{t}}}", "next_version") for t in train_ids}
    check(all(v == b"1" for v in versions.values()),
          f"every training job made exactly one version: {sorted(set(versions.values()), key=str)}")
    for p in procs:
        check(p.poll() is None, f"worker pid {p.pid} still runs")

    # the killed node comes back as a replica of its successor
    subprocess.run([REDIS_SH, "start-node", str(victim[0])], check=True, capture_output=True)
    end = time.time() + 60
    role = None
    while time.time() < end:
        role = next((n[2] for n in nodes() if n[0] == victim[0]), None)
        if role == "slave":
            break
        time.sleep(0.2)
    check(role == "slave", f"node {victim[0]}, started again, rejoined as a replica ({role})")
    end = time.time() + 60
    ok = False
    while time.time() < end and not ok:
        ok = cluster_ok()
        time.sleep(0.2)
    check(ok, "the cluster is whole again (cluster_state ok)")
finally:
    # whatever failed above, the cluster is left whole for the tests after this one
    if victim and not any(n[0] == victim[0] and n[1] for n in nodes()):
        subprocess.run([REDIS_SH, "start-node", str(victim[0])], capture_output=True)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
