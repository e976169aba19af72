#!/usr/bin/python3
"""The client contract (issue 17): what a client written from schemas/ and the README relies
on, checked against the real services with a plain Python client.

 1. datasets over HTTP: PUT as JSON and as msgpack, GET its shape, the documented Redis
    layout (maas:dataset:{NAME}, msgpack {"x", "y"} with float32 bin matrices), errors
    naming the field, DELETE; a job names the dataset;
 2. jobs produced straight to Kafka while no worker runs have no record ("not taken yet");
    once a worker takes them: an inference record appears final with started_ms and
    attempts 1, a work job's at running with heartbeat_ms; created_ms is the message's Kafka
    timestamp when the job sent none; a job past its deadline_ms ends expired, never computed;
 3. events: "progress {JSON}" (the record's progress JSON after one space) while a job
    trains, then the final state as a bare word;
 4. /readyz: 503 with a reason while a worker joins and the group settles, 200 once it has;
    a training job produced as soon as both workers say ready runs once (attempts 1).
usage: test_contract.py BIN_DIR PIMA_CSV WORKDIR   (env MAAS_KAFKA_BROKERS, MAAS_REDIS_URL)
"""
import csv
import json
import os
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import msgpack
import redis
from confluent_kafka import Producer

from itkeys import (EventsSubscriber, api_call, job_fields, job_state, kafka_conf, operator_key,
                    redis_client, wait_healthz)

BIN, PIMA, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
BROKERS = os.environ.get("MAAS_KAFKA_BROKERS", "127.0.0.1:29092")
REDIS_URL = os.environ.get("MAAS_REDIS_URL", "redis://127.0.0.1:26379")
PORT, W1, W2 = 29183, 29111, 29112
API = f"http://127.0.0.1:{PORT}"
os.makedirs(WORK, exist_ok=True)
RUN = uuid.uuid4().hex[:8]
R = redis_client(REDIS_URL)
P = Producer(kafka_conf(BROKERS, enable_idempotence=True, linger_ms=0))
failures, procs = [], []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def call(method, path, body=None, headers=None):
    return api_call(API, method, path, body, KEY, headers)


def readyz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return 0, {}


def spawn(name, *args):
    log = open(os.path.join(WORK, f"{name}-{len(procs)}.log"), "w")
    p = subprocess.Popen([os.path.join(BIN, name), *args], stdout=log, stderr=log)
    procs.append(p)
    return p


def mat(rows):
    flat = [v for r in rows for v in r]
    return {"shape": [len(rows), len(rows[0])], "dtype": "float32",
            "data": struct.pack(f"<{len(flat)}f", *flat)}


def produce(topic, job):
    """A job as a Kafka client sends it (no created_ms unless given); returns the wall-clock
    window (ms) around its send."""
    before = int(time.time() * 1000)
    P.produce(topic, key=job["id"], value=msgpack.packb({"v": 1, **job}))
    P.flush(30)
    return before, int(time.time() * 1000)


def record(jid):
    return job_fields(R, jid)


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
from protocol_corpus import validators  # noqa: E402  (the schemas' validators, refs resolved)

RECORD_V = validators(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas"))[2]


def schema_problems(r):
    """What job-record.schema.json says of job r's record as Redis holds it (the JSON object
    GET answers; a final record's is final)."""
    raw = R.get(f"maas:job:{{{r['id'].decode()}}}")
    return [e.message for e in RECORD_V.iter_errors(json.loads(raw))] if raw else ["no record"]


def wait_state(jid, states, seconds=90):
    end = time.time() + seconds
    while time.time() < end:
        st = job_state(R, jid)
        if st and st.decode() in states:
            return record(jid)
        time.sleep(0.05)
    return record(jid)


KEY = operator_key(BIN, WORK)
rows = [[float(v) for v in r] for r in list(csv.reader(open(PIMA)))[1:]]
train = rows[:614]
try:
    spawn("maas-coordinator", "--http", f"127.0.0.1:{PORT}", "--brokers", BROKERS, "--redis", REDIS_URL)
    check(wait_healthz(API), "the coordinator answers /healthz")

    # 1. datasets over HTTP
    ds = f"contract-{RUN}"
    st, out = call("PUT", f"/v1/datasets/{ds}", {"x": [r[:8] for r in train], "y": [r[8:] for r in train]})
    check(st == 201 and out == {"name": ds, "rows": 614, "features": 8, "outputs": 1,
                                "bytes": out.get("bytes")}, f"PUT a dataset as JSON rows: {st} {out}")
    blob = R.get(f"maas:dataset:{{{ds}}}")
    doc = msgpack.unpackb(blob) if blob else {}
    check(set(doc) == {"x", "y"} and doc["x"]["shape"] == [614, 8] and doc["x"]["dtype"] == "float32"
          and len(doc["x"]["data"]) == 614 * 8 * 4 and doc["y"]["shape"] == [614, 1]
          and struct.unpack("<f", doc["x"]["data"][:4])[0] == struct.unpack("<f", struct.pack("<f", train[0][0]))[0],
          "stored as redis-keys.md says: maas:dataset:{NAME} = msgpack {x, y}, float32 bin matrices")
    packed = msgpack.packb({"x": mat([r[:8] for r in train[:100]]), "y": mat([r[8:] for r in train[:100]])})
    st, out = call("PUT", f"/v1/datasets/{ds}-mp", packed, {"Content-Type": "application/msgpack"})
    check(st == 201 and out["rows"] == 100 and R.get(f"maas:dataset:{{{ds}-mp}}") == packed,
          f"PUT a dataset as msgpack: stored as sent ({st} {out})")
    st, out = call("GET", f"/v1/datasets/{ds}")
    check(st == 200 and out["rows"] == 614 and out["features"] == 8 and out["bytes"] == len(blob),
          f"GET a dataset's shape: {st} {out}")
    st, out = call("PUT", f"/v1/datasets/{ds}-bad", {"x": [[1, 2], [3]], "y": [[1], [0]]})
    check(st == 400 and "field dataset.x[1]" in out["error"]["message"], f"ragged rows refused naming the field: {st} {out}")
    st, out = call("PUT", f"/v1/datasets/{ds}-bad", {"x": [[1, 2]], "y": [[1], [0]]})
    check(st == 400 and R.get(f"maas:dataset:{{{ds}-bad}}") is None,
          f"x and y of different row counts refused, nothing stored: {st} {out}")
    st, out = call("PUT", "/v1/datasets/no%20spaces", {"x": [[1]], "y": [[1]]})
    check(st == 400, f"a bad dataset name refused: {st} {out}")
    st, out = call("DELETE", f"/v1/datasets/{ds}-mp")
    check(st == 200 and call("GET", f"/v1/datasets/{ds}-mp")[0] == 404
          and call("DELETE", f"/v1/datasets/{ds}-mp")[1]["error"]["code"] == "UNKNOWN_DATASET",
          "DELETE, then 404 UNKNOWN_DATASET")

    # a model to serve (imported, so no worker is needed yet)
    model = f"contract{RUN}"
    h5 = os.path.join(WORK, "m.h5")
    subprocess.run([os.path.join(BIN, "maas"), "fit", "--data", PIMA, "--label", "-1", "--layers",
                    "10:relu,1:sigmoid", "--epochs", "2", "-o", h5], check=True, capture_output=True)
    subprocess.run([os.path.join(BIN, "maas"), "import", h5, "--name", model], check=True,
                   capture_output=True)

    # 2. no worker: jobs produced to Kafka have no record
    ia, idl, tb = f"ia-{RUN}", f"idl-{RUN}", f"tb-{RUN}"
    win_ia = produce("maas.jobs.infer", {"id": ia, "type": "infer", "model": model, "inputs": [train[0][:8]]})
    produce("maas.jobs.infer", {"id": idl, "type": "infer", "model": model, "inputs": [train[0][:8]],
                                "deadline_ms": int(time.time() * 1000) + 1000})
    sub = EventsSubscriber(R, f"maas:job:{{{tb}}}:events")
    win_tb = produce("maas.jobs.work", {
        "id": tb, "type": "train", "model": f"{model}-long",
        # minutes of work on any machine (614 steps of 256 units per epoch): it is cancelled
        "layers": [{"units": 256, "activation": "relu"}, {"units": 256, "activation": "relu"},
                   {"units": 1, "activation": "sigmoid"}],
        "loss": "binary_crossentropy", "epochs": 10000, "batch_size": 1, "data": {"dataset": ds}})
    time.sleep(1.5)
    check(not R.exists(f"maas:job:{{{ia}}}", f"maas:job:{{{idl}}}", f"maas:job:{{{tb}}}"),
          "no worker: a job produced straight to Kafka has no record yet (missing = not taken yet)")

    # 4. (first half) workers start: not ready until the group has settled
    t_start = time.time()
    for name, port in (("w1", W1), ("w2", W2)):
        spawn("maas-worker", "--id", f"c{name}-{RUN}", "--brokers", BROKERS, "--redis", REDIS_URL,
              "--http", f"127.0.0.1:{port}")
    seen_not_ready = set()
    ready_at = None
    while time.time() - t_start < 90:
        got = [readyz(W1), readyz(W2)]
        for st, body in got:
            if st == 503 and body.get("reason"):
                seen_not_ready.add(body["reason"])
        if all(st == 200 and body.get("ready") for st, body in got):
            ready_at = time.time()
            break
        time.sleep(0.1)
    check(ready_at is not None, f"both workers say ready ({ready_at and ready_at - t_start:.1f} s after start)")
    check(bool(seen_not_ready), f"/readyz said 503 with a reason before: {sorted(seen_not_ready)}")
    tc, first = f"tc-{RUN}", f"first-{RUN}"
    produce("maas.jobs.infer", {"id": first, "type": "infer", "model": model, "inputs": [train[1][:8]]})
    produce("maas.jobs.work", {"id": tc, "type": "train", "model": f"{model}-ready",
                               "layers": [{"units": 4, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
                               "loss": "binary_crossentropy", "epochs": 3, "data": {"dataset": ds}})

    # 2. (second half) the records once workers took the jobs
    r = wait_state(ia, {"succeeded", "failed"})
    check(r.get("state") == b"succeeded" and r.get("attempts") == b"1" and "heartbeat_ms" not in r,
          f"an inference record appears final: {r.get('state')}, attempts {r.get('attempts')}")
    created, started, finished = (int(r.get(k, b"0")) for k in ("created_ms", "started_ms", "finished_ms"))
    check(win_ia[0] <= created <= win_ia[1], f"created_ms = the Kafka timestamp of a job sent without one "
          f"({created} within {win_ia})")
    check(created <= started <= finished and started >= int(t_start * 1000) - 1000,
          f"started_ms: when a worker took it (queue {started - created} ms, compute {finished - started} ms)")
    cost = json.loads(r.get("cost", b"{}"))
    check(not schema_problems(r) and abs(cost.get("queue_s", -1) - (started - created) / 1e3) <= 0.0015
          and cost.get("flops", 0) > 0,
          f"the record and its cost follow job-record.schema.json; queue_s = started - created "
          f"({schema_problems(r)}, {cost})")
    r = wait_state(idl, {"succeeded", "failed", "expired"})
    check(r.get("state") == b"expired" and "result" not in r and r.get("error_code") == b"EXPIRED",
          f"a job taken after its deadline_ms ends expired, not computed: {r.get('state')} {r.get('error_code')}")
    cost = json.loads(r.get("cost", b"{}"))
    check(not schema_problems(r) and cost.get("flops") == 0 and cost.get("energy_method") == ""
          and cost.get("queue_s", -1) >= 0, f"its cost is the time it queued ({schema_problems(r)}, {cost})")

    # 3. events: progress with its JSON, then a bare final word
    # tb was produced before the group formed: the first worker may take it and lose its
    # partition when the second one joins, so the new owner's attempt can be the second.
    r = wait_state(tb, {"running", "succeeded", "failed", "cancelled"})
    check(r.get("state") == b"running" and int(r.get("attempts", b"0")) >= 1 and "heartbeat_ms" in r
          and win_tb[0] <= int(r.get("created_ms", b"0")) <= win_tb[1]
          and int(r.get("started_ms", b"0")) >= int(r.get("created_ms", b"0")),
          f"a work job's record appears at running with created_ms, started_ms, heartbeat_ms ({r})")
    progress = None
    end = time.time() + 60
    while time.time() < end and progress is None:
        m = sub.get_message(timeout=1)
        if m and m.startswith(b"progress "):
            progress = json.loads(m[len(b"progress "):])
    # (before the first epoch ends - a slow machine, a sanitizer build - it is {epoch: 0, epochs})
    check(isinstance(progress, dict) and progress.get("epochs") == 10000 and "epoch" in progress
          and (progress["epoch"] == 0 or "loss" in progress),
          f"a progress event carries the progress JSON: {progress}")
    st, _ = call("POST", f"/v1/jobs/{tb}/cancel")
    final = None
    end = time.time() + 60
    while time.time() < end and final is None:
        m = sub.get_message(timeout=1)
        if m and not m.startswith(b"progress"):
            final = m
    check(st == 200 and final == b"cancelled", f"the final state as a bare word: {final}")
    check(job_state(R, tb) == b"cancelled", "the record says so too")
    r = record(tb)
    cost = json.loads(r.get("cost", b"{}"))
    check(not schema_problems(r) and cost.get("cpu_s", 0) > 0 and cost.get("flops", 0) >= 0,
          f"a cancelled job's record says what it cost until then ({schema_problems(r)}, {cost})")

    # 4. (second half) a job produced as soon as both workers said ready ran once
    r = wait_state(tc, {"succeeded", "failed"})
    check(r.get("state") == b"succeeded" and r.get("attempts") == b"1",
          f"a training job produced at readiness runs once: {r.get('state')}, attempts {r.get('attempts')}")
    r1 = wait_state(first, {"succeeded", "failed"})
    check(r1.get("state") == b"succeeded", "the first inference job at readiness succeeded")
    # (the training job may wait for the long one if its partition is that worker's)
    print(f"     the first inference job on the fresh fleet waited "
          f"{int(r1.get('started_ms', 0)) - int(r1.get('created_ms', 0))} ms (started_ms - created_ms)",
          flush=True)
    res = msgpack.unpackb(r.get("result", msgpack.packb({})))
    check(res.get("rows") == 614, f"it trained on the dataset uploaded over HTTP ({res.get('rows')} rows)")
    st, body = readyz(W1)
    check(st == 200 and body["partitions"]["work"] + body["partitions"]["infer"] > 0
          and body["settled_s"] >= 3, f"/readyz body: {body}")
finally:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(40)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

print(f"{len(failures)} failure(s)" if failures else "contract: all checks passed")
sys.exit(1 if failures else 0)
