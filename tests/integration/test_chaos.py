#!/usr/bin/python3
"""Chaos (issue 16): a mixed stream of ~1 000 jobs (infer, evaluate, train) through three
workers while, at seeded random moments, workers are kill -9ed and restarted, the broker is
restarted and Redis is restarted (AOF on). At the end every job has exactly one final record,
every train job made exactly one version, nothing is left queued or running: 0 jobs lost.
Runs on a broker and a Redis of its own (deploy/local scripts, own ports and state), bounded:
it gives up after CHAOS_LIMIT_S (240 s) and prints the faults injected and the tally.
usage: test_chaos.py BIN_DIR WORKDIR [SEED]
"""
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time

import msgpack
import redis
from confluent_kafka import Producer

from itkeys import job_state

BIN, WORK = sys.argv[1], sys.argv[2]
SEED = int(sys.argv[3]) if len(sys.argv) > 3 else int(time.time())
HERE = os.path.dirname(os.path.abspath(__file__))
LOCAL = os.path.join(HERE, "../../deploy/local")
STATE = os.path.join(WORK, "state")
# below the kernel's ephemeral range (32768-60999): no client socket can hold them first
KPORT, RPORT = 23092, 23379
BROKERS = f"127.0.0.1:{KPORT}"
# its services are its own and open: the fixture's login is not for them
os.environ.pop("MAAS_CONFIG", None)
os.environ.pop("MAAS_CLIENT_CONF", None)
ENV = dict(os.environ, MAAS_STATE_DIR=STATE, MAAS_KAFKA_PORT=str(KPORT),
           MAAS_KAFKA_CONTROLLER_PORT=str(KPORT + 1), MAAS_REDIS_PORT=str(RPORT),
           MAAS_KAFKA_ADMIN=os.path.join(BIN, "maas-kafka-admin"))
LIMIT_S = 240
N_JOBS = 1000
rng = random.Random(SEED)
failures, faults, workers = [], [], {}
# a SIGTERM (ctest's timeout, a user) still runs the finally blocks: services stopped by pid
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
lock = threading.Lock()
os.makedirs(WORK, exist_ok=True)
print(f"seed {SEED}", flush=True)


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def service(name, action):
    subprocess.run([os.path.join(LOCAL, f"{name}.sh"), action], env=ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)


def start_worker(name):
    log = open(os.path.join(WORK, f"{name}.log"), "a")
    workers[name] = subprocess.Popen(
        [os.path.join(BIN, "maas-worker"), "--brokers", BROKERS,
         "--redis", f"redis://127.0.0.1:{RPORT}", "--id", name, "--max-attempts", "10",
         "-X", "redis.timeout_ms=1000", "-X", "kafka.session.timeout.ms=6000",
         "-X", "kafka.heartbeat.interval.ms=500"], stdout=log, stderr=log)


def mat(rows):
    flat = [v for r in rows for v in r]
    return {"shape": [len(rows), len(rows[0])], "dtype": "float32",
            "data": struct.pack("<%df" % len(flat), *flat)}


X = [[rng.uniform(-1, 1) for _ in range(8)] for _ in range(256)]
Y = [[1.0 if r[0] + r[1] > 0 else 0.0] for r in X]
LAYERS = [{"units": 8, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}]


def train(jid, model, epochs=3):
    return {"v": 1, "id": jid, "type": "train", "model": model, "layers": LAYERS,
            "loss": "binary_crossentropy", "epochs": epochs, "batch_size": 32, "seed": 1,
            "data": {"x": mat(X), "y": mat(Y)}}


def final(r, jid):
    return job_state(r, jid) in (b"succeeded", b"failed", b"expired",
                                                       b"cancelled")


def pidof(name):
    try:
        with open(os.path.join(STATE, name, f"{name}.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


restarted = {}


def rconn():
    return redis.Redis(port=RPORT, socket_timeout=5)


t_start = time.time()
R = rconn()
try:
    service("redis", "start")
    service("kafka", "start")
    subprocess.run([ENV["MAAS_KAFKA_ADMIN"], "--brokers", BROKERS, "create-topics",
                    "--timeout", "60"], check=True, stdout=subprocess.DEVNULL)
    for i in range(3):
        start_worker(f"c{i}")
    P = Producer({"bootstrap.servers": BROKERS, "enable.idempotence": True, "linger.ms": 5,
                  "log_level": 2,  # the broker restart is on purpose: no connection-refused noise
                  "message.timeout.ms": 180000})
    base = f"chaos-base-{SEED}"
    P.produce("maas.jobs.work", key="base", value=msgpack.packb(train(f"base-{SEED}", base)))
    P.flush(60)
    end = time.time() + 90
    while not final(R, f"base-{SEED}") and time.time() < end:
        time.sleep(0.1)
    check(job_state(R, f"base-{SEED}") == b"succeeded", "the base model trains")

    # the stream: ~55 s of jobs; 2% train (each its own model), 8% evaluate, the rest infer
    jobs = []
    for i in range(N_JOBS):
        jid = f"x{i}-{SEED}"
        if i % 50 == 7:
            jobs.append((jid, "train", "maas.jobs.work", train(jid, f"chaos-t{i}-{SEED}", 2)))
        elif i % 12 == 3:
            jobs.append((jid, "evaluate", "maas.jobs.work",
                         {"v": 1, "id": jid, "type": "evaluate", "model": base,
                          "data": {"x": mat(X[:64]), "y": mat(Y[:64])}}))
        else:
            jobs.append((jid, "infer", "maas.jobs.infer",
                         {"v": 1, "id": jid, "type": "infer", "model": base,
                          "inputs": mat([X[i % 256]])}))

    def produce():
        for k, (jid, _, topic, job) in enumerate(jobs):
            P.produce(topic, key=jid, value=msgpack.packb(job))
            P.poll(0)
            time.sleep(0.055)
        P.flush(180)

    producer = threading.Thread(target=produce)
    producer.start()

    # the faults, at seeded moments within the stream
    plan = sorted([(rng.uniform(3, 50), "kill9") for _ in range(3)] +
                  [(rng.uniform(10, 40), "broker")] + [(rng.uniform(10, 45), "redis")])
    t0 = time.time()
    for at, kind in plan:
        time.sleep(max(0.0, t0 + at - time.time()))
        if kind == "kill9":
            name = rng.choice(sorted(n for n, p in workers.items() if p.poll() is None))
            workers[name].kill()
            workers[name].wait()
            faults.append(f"{time.time() - t0:5.1f}s kill -9 {name}")
            time.sleep(rng.uniform(0.5, 3))
            start_worker(name + "r")
            faults.append(f"{time.time() - t0:5.1f}s started {name}r")
        elif kind == "broker":
            a = time.time()
            kpid = pidof("kafka")
            service("kafka", "stop")
            service("kafka", "start")
            restarted["broker"] = kpid is not None and pidof("kafka") not in (None, kpid)
            faults.append(f"{a - t0:5.1f}s broker restarted ({time.time() - a:.1f} s down)")
        else:
            a = time.time()
            run_id = rconn().info("server")["run_id"]
            service("redis", "stop")
            time.sleep(rng.uniform(0.5, 6))
            service("redis", "start")
            restarted["redis"] = rconn().info("server")["run_id"] != run_id
            faults.append(f"{a - t0:5.1f}s redis restarted ({time.time() - a:.1f} s down, AOF)")
    producer.join(max(1.0, LIMIT_S - (time.time() - t_start)))
    check(not producer.is_alive(), "every job was produced (acknowledged by the broker)")

    # drain: every job final, within the limit
    R = rconn()
    pending = {jid for jid, *_ in jobs}
    while pending and time.time() - t_start < LIMIT_S:
        try:
            pending = {j for j in pending if not final(R, j)}
        except redis.exceptions.ConnectionError:
            R = rconn()
        time.sleep(0.5)
    states, lost = {}, []
    for jid, kind, _, _ in jobs:
        st = job_state(R, jid)
        states[(kind, st)] = states.get((kind, st), 0) + 1
        if st not in (b"succeeded", b"failed", b"expired", b"cancelled"):
            lost.append(jid)
    print("faults injected:\n     " + "\n     ".join(faults), flush=True)
    print("tally: " + ", ".join(f"{k} {s.decode() if s else 'no record'}: {n}"
                                for (k, s), n in sorted(states.items(), key=str)), flush=True)
    check(not lost, f"0 jobs lost of {N_JOBS} ({len(lost)}: {lost[:5]})")
    bad = {k: n for k, n in states.items() if k[1] != b"succeeded"}
    check(not bad, f"every job succeeded ({bad})")
    trains = [jid for jid, kind, *_ in jobs if kind == "train"]
    versions = {jid: R.hgetall(f"maas:model:{{chaos-t{jid[1:].split('-')[0]}-{SEED}}}:jobs")
                for jid in trains}
    check(all(len(v) == 1 and list(v)[0].decode() == jid for jid, v in versions.items()),
          f"each of {len(trains)} train jobs made exactly one version")
    killed = [n for n, p in workers.items() if p.returncode == -9]
    check(len(killed) == 3 and restarted == {"broker": True, "redis": True},
          f"the faults happened: {len(killed)} workers killed ({killed}), a new broker process, "
          f"a new Redis run id ({restarted})")
    check(time.time() - t_start < LIMIT_S + 30, f"done in {time.time() - t_start:.0f} s")
finally:
    for p in workers.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in workers.values():
        try:
            p.wait(40)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for name in ("kafka", "redis"):
        try:
            service(name, "stop")
        except Exception as e:  # noqa: BLE001 - report, then go on stopping the rest
            print(f"stopping {name}: {e}")

if failures:
    for name in workers:
        with open(os.path.join(WORK, f"{name}.log")) as f:
            tail = [ln for ln in f if "CONFWARN" not in ln][-15:]
        print(f"--- {name}.log (tail)\n" + "".join(tail))
print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failed checks")
sys.exit(1 if failures else 0)
