#!/usr/bin/python3
"""Hardening (issue 16): one bad job never stalls the cluster, no job is lost while Redis
is away, a bad message always reaches the dead-letter topic. Against the real broker and a
Redis of this test's own (it is stopped on purpose), with a topic prefix of its own.

 1. a wide model (65 536 softmax outputs) and an infer job of 200 000 rows x 1 column:
    the job fails alone (LIMIT_EXCEEDED, from the budget, before any buffer), ordinary
    jobs behind it finish, nothing is retried;
 2. a 150-byte train job describing 56 M parameters, and one within --max-params but
    over the worker's work budget: refused before the network exists (peak RSS flat);
 3. with Redis stopped: an expired work job, a malformed one and a good one are all
    final once Redis is back (they used to be skipped: no record, no dead letter);
 4. a 1.5 MB bad message (a compressed producer batch lets it past the 1 MB limit):
    dead-lettered as a cut copy with its size and SHA-256, the worker keeps serving;
 5. a work job over --max-job-seconds fails with TIMEOUT;
 6. messages forged with another job's id (produced straight to Kafka) never move its
    record: a queued training job submitted with `maas submit` still trains once, a
    final record keeps its result; the forgeries are dead-lettered as MISMATCH.
usage: test_hardening.py WORKER_BINARY WORKDIR   (env MAAS_KAFKA_BROKERS)
"""
import hashlib
import os
import re
import signal
import struct
import subprocess
import sys
import time
import uuid

import msgpack
import redis
from confluent_kafka import Consumer, Producer

from itkeys import job_fields, job_state, kafka_conf, kafka_only_conf

WORKER, WORK = sys.argv[1], sys.argv[2]
BROKERS = os.environ.get("MAAS_KAFKA_BROKERS", "127.0.0.1:29092")
os.makedirs(WORK, exist_ok=True)
RUN = uuid.uuid4().hex[:8]
PREFIX = f"hard{RUN}."
RPORT = 26579
P = Producer(kafka_conf(BROKERS, enable_idempotence=True, linger_ms=2, compression_type="gzip",
                        message_max_bytes=4000000))
# the programs it starts use the fixture's broker and a Redis of its own (no users): the
# broker's login only
if kafka_only_conf(WORK):
    os.environ["MAAS_CONFIG"] = kafka_only_conf(WORK)
else:
    os.environ.pop("MAAS_CONFIG", None)
failures, procs = [], {}
# a SIGTERM (ctest's timeout, a user) still runs the finally blocks: services stopped by pid
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def mat(rows, cols, fill=None):
    vals = fill if fill is not None else [0.25 * ((i * 7) % 11) for i in range(rows * cols)]
    return {"shape": [rows, cols], "dtype": "float32",
            "data": struct.pack("<%df" % (rows * cols), *vals)}


def send(topic, job=None, raw=None):
    P.produce(PREFIX + topic, key=(job or {}).get("id", "x"),
              value=raw if raw is not None else msgpack.packb(job))
    P.flush(30)


def rec(jid):
    return job_fields(R, jid)


def wait_final(ids, timeout):
    end, pending = time.time() + timeout, set(ids)
    while pending and time.time() < end:
        for jid in list(pending):
            if job_state(R, jid) in (b"succeeded", b"failed", b"expired",
                                                          b"cancelled"):
                pending.discard(jid)
        time.sleep(0.05)
    return pending


def log_text():
    with open(os.path.join(WORK, "hw.log")) as f:
        return f.read()


def wait_log(text, timeout, after=0):
    end = time.time() + timeout
    while time.time() < end:
        if text in log_text()[after:]:
            return True
        time.sleep(0.05)
    return False


def hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def train(jid, model, layers, x, y, loss="binary_crossentropy", epochs=2, **kw):
    j = {"v": 1, "id": jid, "type": "train", "model": model, "layers": layers, "loss": loss,
         "epochs": epochs, "batch_size": 32, "seed": 1, "data": {"x": x, "y": y}}
    j.update(kw)
    return j


def infer(jid, model, inputs):
    return {"v": 1, "id": jid, "type": "infer", "model": model, "inputs": inputs}


subprocess.run([os.path.join(os.path.dirname(WORKER), "maas-kafka-admin"), "--brokers", BROKERS,
                "create-topics", "--prefix", PREFIX], check=True, stdout=subprocess.DEVNULL)
rdir = os.path.join(WORK, "redis")
os.makedirs(rdir, exist_ok=True)
procs["redis"] = subprocess.Popen(["redis-server", "--port", str(RPORT), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", rdir],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
R = redis.Redis(port=RPORT, socket_timeout=10)
for _ in range(200):
    try:
        R.ping()
        break
    except redis.exceptions.ConnectionError:
        time.sleep(0.05)
small, wide = f"small-{RUN}", f"wide-{RUN}"
DENSE = [{"units": 8, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}]
X8 = mat(64, 8)
Y8 = mat(64, 1, [float(i % 2) for i in range(64)])
MAAS = os.path.join(os.path.dirname(WORKER), "maas")
CONN = ["--brokers", BROKERS, "--redis", f"redis://127.0.0.1:{RPORT}", "--topic-prefix", PREFIX]
csv = os.path.join(WORK, "data.csv")
with open(csv, "w") as f:
    f.write("a,b,c,d,label\n")
    for i in range(64):
        f.write(f"{i % 5},{i % 3},{i % 7},{i % 2},{i % 2}\n")
try:
    # 6a. before any worker runs: a training job queued through the real client, then two
    # messages forged with its id: an infer job, and a train job with other content
    sub = subprocess.run([MAAS, "submit", "train", "--name", f"real-{RUN}", "--data", csv,
                          "--label", "label", "--layers", "4:relu,1:sigmoid", "--epochs", "2",
                          *CONN], capture_output=True, text=True, timeout=60)
    real = sub.stdout.strip()
    check(sub.returncode == 0 and job_state(R, real) == b"queued"
          and len(job_fields(R, real).get("digest", b"")) == 64,
          f"maas submit queued {real!r} with its message's digest ({sub.stderr.strip()[-200:]})")
    send("jobs.infer", infer(real, f"real-{RUN}", mat(1, 4)))
    send("jobs.work", train(real, f"real-{RUN}", DENSE, mat(64, 4), mat(64, 1), epochs=1))
    def start_hw():
        log = open(os.path.join(WORK, "hw.log"), "a")
        procs["hw"] = subprocess.Popen(
            [WORKER, "--brokers", BROKERS, "--redis", f"redis://127.0.0.1:{RPORT}", "--id", "hw",
             "--topic-prefix", PREFIX, "--memory-mb", "1024", "--cache-mb", "256",
             "--max-job-seconds", "6", "-X", "redis.timeout_ms=300",
             "-X", "kafka.session.timeout.ms=6000", "-X", "kafka.heartbeat.interval.ms=500"],
            stderr=log, stdout=log)
        return procs["hw"].pid
    open(os.path.join(WORK, "hw.log"), "w").close()
    pid = start_hw()
    # Two models: an ordinary one and a wide one (1 input -> 65 536 softmax units).
    send("jobs.work", train(f"t-small-{RUN}", small, DENSE, X8, Y8))
    send("jobs.work", train(f"t-wide-{RUN}", wide, [{"units": 65536, "activation": "softmax"}],
                            mat(4, 1), mat(4, 1, [0.0, 1.0, 2.0, 3.0]),
                            loss="sparse_categorical_crossentropy", epochs=1))
    check(wait_final([f"t-small-{RUN}", f"t-wide-{RUN}"], 120) == set()
          and rec(f"t-wide-{RUN}").get("state") == b"succeeded"
          and rec(f"t-small-{RUN}").get("state") == b"succeeded", "the two models are trained")

    # 6b. the forgeries did not move the real job; a forged infer message naming a final
    # job leaves its record as it was
    check(wait_final([real], 60) == set(), "the real training job ends")
    r = rec(real)
    check(r.get("state") == b"succeeded" and r.get("attempts") == b"1"
          and msgpack.unpackb(r["result"]).get("version") == 1
          and len(R.hgetall(f"maas:model:{{real-{RUN}}}:jobs")) == 1,
          f"it trained once, into version 1 ({r.get('state')}, attempts {r.get('attempts')})")
    before_rec = rec(f"t-small-{RUN}")
    send("jobs.infer", infer(f"t-small-{RUN}", small, mat(1, 8)))
    probe = f"i-probe-{RUN}"
    send("jobs.infer", infer(probe, small, mat(1, 8)))
    wait_final([probe], 30)
    check(rec(f"t-small-{RUN}") == before_rec, "a forged infer naming a final job leaves it as it was")
    mism = Consumer(kafka_conf(BROKERS) | {"group.id": f"dlqm-{RUN}",
                     "auto.offset.reset": "earliest"})
    mism.subscribe([PREFIX + "jobs.dlq"])
    codes, end = {}, time.time() + 30
    while len(codes) < 3 and time.time() < end:
        m = mism.poll(0.5)
        if m is not None and not m.error():
            h = {k: v.decode() for k, v in (m.headers() or [])}
            if h.get("maas-error-code") == "MISMATCH":
                codes[(h.get("maas-job-id"), h.get("maas-source-topic"))] = True
    mism.close()
    want = {(real, PREFIX + "jobs.infer"), (real, PREFIX + "jobs.work"),
            (f"t-small-{RUN}", PREFIX + "jobs.infer")}
    check(set(codes) == want, f"the three forgeries are dead-lettered as MISMATCH ({sorted(codes)})")

    # 2. networks refused from their shapes, before they exist
    before = hwm_kb(pid)
    big = [{"units": 7500, "activation": "relu"}, {"units": 7500, "activation": "relu"},
           {"units": 1, "activation": "sigmoid"}]
    b1 = f"b-params-{RUN}"
    job = train(b1, f"huge-{RUN}", big, mat(1, 1), mat(1, 1))
    send("jobs.work", job)
    b2 = f"b-budget-{RUN}"
    send("jobs.work", train(b2, f"huge-{RUN}", [{"units": 5000, "activation": "relu"},
                                               {"units": 5000, "activation": "relu"},
                                               {"units": 1, "activation": "sigmoid"}],
                            mat(1, 1), mat(1, 1)))
    wait_final([b1, b2], 60)
    r1, r2 = rec(b1), rec(b2)
    check(r1.get("state") == b"failed" and r1.get("error_code") == b"LIMIT_EXCEEDED"
          and b"--max-params" in r1.get("error_message", b""),
          f"{len(msgpack.packb(job))}-byte job of 56 M parameters: {r1.get('error_message')}")
    check(r2.get("state") == b"failed" and r2.get("error_code") == b"LIMIT_EXCEEDED"
          and b"--memory-mb" in r2.get("error_message", b""),
          f"25 M parameters over the work budget: {r2.get('error_message')}")
    grew = (hwm_kb(pid) - before) / 1024
    check(grew < 64, f"the worker's peak RSS grew {grew:.1f} MB refusing them (a 56 M network "
          "would be 225 MB)")

    # 1. one wide infer job among ordinary ones
    at = len(log_text())
    wj = f"i-wide-{RUN}"
    send("jobs.infer", infer(wj, wide, mat(200000, 1, [0.5] * 200000)))
    ordinary = [f"i-{i}-{RUN}" for i in range(40)]
    for jid in ordinary:
        P.produce(PREFIX + "jobs.infer", key=jid,
                  value=msgpack.packb(infer(jid, small, mat(1, 8))))
    P.flush(30)
    left = wait_final([wj] + ordinary, 90)
    check(not left, f"the wide job and 40 ordinary ones are all final ({len(left)} left)")
    r = rec(wj)
    check(r.get("state") == b"failed" and r.get("error_code") == b"LIMIT_EXCEEDED"
          and b"inference budget" in r.get("error_message", b""),
          f"200 000 rows x 65 536 outputs fail alone: {r.get('error_message')}")
    check(all(rec(j).get("state") == b"succeeded" for j in ordinary),
          "every ordinary job behind it succeeded")
    check("retrying" not in log_text()[at:], "nothing was retried")

    # 4. a 1.5 MB bad message: dead-lettered, cut to fit
    dlq = Consumer(kafka_conf(BROKERS) | {"group.id": f"dlq-{RUN}",
                    "auto.offset.reset": "earliest", "fetch.message.max.bytes": 4000000})
    dlq.subscribe([PREFIX + "jobs.dlq"])
    bj = f"i-big-{RUN}"
    big_raw = msgpack.packb(infer(bj, small, mat(42000, 9, [1.0] * 378000)))
    send("jobs.infer", raw=big_raw)
    after = f"i-after-{RUN}"
    send("jobs.infer", infer(after, small, mat(1, 8)))
    wait_final([bj, after], 60)
    check(rec(bj).get("error_code") == b"SHAPE_MISMATCH", f"the {len(big_raw) / 1e6:.2f} MB "
          f"message failed ({rec(bj).get('error_code')})")
    check(rec(after).get("state") == b"succeeded", "the worker keeps serving after it")
    letter, end = None, time.time() + 30
    while letter is None and time.time() < end:
        m = dlq.poll(0.5)
        if m is not None and not m.error():
            h = {k: v.decode() for k, v in (m.headers() or [])}
            if h.get("maas-job-id") == bj:
                letter = (h, m.value())
    dlq.close()
    check(letter is not None, "its dead letter was written")
    if letter:
        h, value = letter
        check("maas-truncated" in h and len(value) < len(big_raw)
              and big_raw.startswith(value), f"cut to {len(value)} bytes ({h.get('maas-truncated')})")
        check(h.get("maas-source-size") == str(len(big_raw))
              and h.get("maas-source-sha256") == hashlib.sha256(big_raw).hexdigest(),
              "with the original size and SHA-256")

    # 5. a work job over --max-job-seconds (6 s)
    lj = f"t-long-{RUN}"
    send("jobs.work", train(lj, f"long-{RUN}", [{"units": 256, "activation": "relu"},
                                                 {"units": 1, "activation": "sigmoid"}],
                            mat(2000, 8), mat(2000, 1, [float(i % 2) for i in range(2000)]),
                            epochs=10000, batch_size=1))
    wait_final([lj], 60)
    r = rec(lj)
    check(r.get("state") == b"failed" and r.get("error_code") == b"TIMEOUT",
          f"a job over --max-job-seconds fails with TIMEOUT ({r.get('error_message')})")

    # 3. Redis stopped: an expired job, a malformed one and a good one all end final
    at = len(log_text())
    procs["redis"].send_signal(signal.SIGSTOP)
    e1, e2, e3 = f"w-late-{RUN}", f"w-bad-{RUN}", f"w-good-{RUN}"
    send("jobs.work", train(e1, small, DENSE, X8, Y8, deadline_ms=int(time.time() * 1000) - 1000))
    send("jobs.work", dict(train(e2, small, DENSE, X8, Y8), epochs="many"))
    send("jobs.work", train(e3, small, DENSE, X8, Y8))
    held = wait_log("will be redelivered", 60, at)
    time.sleep(1)  # a few retries more while it is away
    procs["redis"].send_signal(signal.SIGCONT)
    check(held, "the worker saw Redis go and kept the job for redelivery")
    wait_final([e1, e2, e3], 90)
    states = [rec(j).get("state") for j in (e1, e2, e3)]
    check(states == [b"expired", b"failed", b"succeeded"],
          f"after the outage: expired, failed, succeeded ({states})")
    check(rec(e2).get("error_code") == b"BAD_FORMAT", "the malformed one names its field")
    check(procs["hw"].poll() is None, "the worker is still running")

    # 7. an infer job that takes its worker down (killed while computing it, as the OOM killer
    # would): after --max-attempts (3) workers stopped on it, it is dead-lettered; the jobs
    # batched with it are computed one by one and succeed
    slow = f"slow-{RUN}"
    send("jobs.work", train(f"t-slow-{RUN}", slow, [{"units": 1024, "activation": "relu"},
                                                    {"units": 1024, "activation": "relu"},
                                                    {"units": 1, "activation": "sigmoid"}],
                            X8, Y8, epochs=1))
    check(wait_final([f"t-slow-{RUN}"], 60) == set(), "a model that takes seconds on 120 000 rows")
    kj = f"i-killer-{RUN}"
    at = len(log_text())
    # so far no worker stopped: the partitions it was given had no start mark (nobody had
    # started a message there), so none of their messages was counted as a redelivery
    check("may be redeliveries" not in log_text(),
          "a first owner counts nothing (no start mark: no previous owner started a message)")
    P.produce(PREFIX + "jobs.infer", key=kj,
              value=msgpack.packb(infer(kj, slow, mat(120000, 8, [0.5] * 960000))))
    innocent = [f"i-inn{i}-{RUN}" for i in range(5)]
    for jid in innocent:
        P.produce(PREFIX + "jobs.infer", key=jid, value=msgpack.packb(infer(jid, small, mat(1, 8))))
    P.flush(30)
    kills = 0
    while kills < 6:
        end = time.time() + 90  # its worker computing it, or its record final
        while ("computing 120000 rows" not in log_text()[at:] and wait_final([kj], 0.05)
               and time.time() < end):
            pass
        if "computing 120000 rows" not in log_text()[at:]:
            break
        procs["hw"].kill()
        procs["hw"].wait()
        kills += 1
        at = len(log_text())
        start_hw()
    wait_final([kj] + innocent, 90)
    r = rec(kj)
    check(r.get("state") == b"failed" and r.get("error_code") == b"LIMIT_EXCEEDED"
          and b"taken by" in r.get("error_message", b""),
          f"after {kills} workers were killed computing it, it is dead-lettered "
          f"({r.get('state')}: {r.get('error_message')})")
    check(2 <= kills <= 4, f"it took {kills} kills (--max-attempts 3)")
    check(all(rec(j).get("state") == b"succeeded" for j in innocent),
          "the jobs produced with it succeeded")
    check("running them one by one" in log_text(), "the jobs of the killed batches ran one by one")
    # what each new owner counted ends below the start mark its predecessors left: the
    # messages they may have started, no further
    ranges = re.findall(r"([\w.-]+)\[(\d+)\]: offsets (\d+)\.\.(\d+) may be redeliveries",
                        log_text())
    marks = {(t, p): int(R.get(f"maas:started:{{{t}/{p}}}") or -1) for t, p, _, _ in ranges}
    check(ranges and all(int(b) < marks[(t, p)] for t, p, _, b in ranges),
          f"counted ranges end below the partitions' start marks ({ranges}, {marks})")
finally:
    procs["redis"].send_signal(signal.SIGCONT)
    if "hw" in procs and procs["hw"].poll() is None:
        procs["hw"].send_signal(signal.SIGTERM)
        try:
            procs["hw"].wait(30)
        except subprocess.TimeoutExpired:
            procs["hw"].kill()
            procs["hw"].wait()
    procs["redis"].terminate()
    procs["redis"].wait(10)

if failures:
    print("--- hw.log (tail)")
    print("".join([ln for ln in log_text().splitlines(True) if "CONFWARN" not in ln][-40:]))
print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failed checks")
sys.exit(1 if failures else 0)
