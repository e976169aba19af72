#!/usr/bin/python3
"""Tenants and API keys (issue 18) against real Kafka, Redis, a coordinator with
authentication on and a worker (services fixture). The scenario of the issue, replayed:
tenant B, using tenant A's model name, job id and alias, cannot train into A's model, move
A's alias, download A's file, read or cancel A's job; each tenant trains, aliases and serves
its own "pima". Credentials: missing, malformed, wrong and revoked keys get 401 in the
protocol's error shape, a key without the scope 403; a revoked key stops at once; a rotated
key keeps working through its grace period next to the new one. A job produced straight to
a tenant's topic lands in that tenant's namespace (the worker takes the tenant from the
topic), under maas:t:TENANT: in Redis; the single-tenant namespace is untouched. The
coordinator refuses --auth off on a non-loopback address.
usage: test_tenants.py BIN_DIR PIMA_CSV WORKDIR   (env MAAS_KAFKA_BROKERS, MAAS_REDIS_URL)
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import msgpack
import redis
from confluent_kafka import Producer

from itkeys import wait_healthz, kafka_conf, redis_login

BIN, PIMA, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
BROKERS = os.environ.get("MAAS_KAFKA_BROKERS", "127.0.0.1:29092")
REDIS_URL = os.environ.get("MAAS_REDIS_URL", "redis://127.0.0.1:26379")
PORT = 29181
API = f"http://127.0.0.1:{PORT}"
os.makedirs(WORK, exist_ok=True)
RUN = uuid.uuid4().hex[:8]
A, B = f"a{RUN}", f"b{RUN}"
failures, procs = [], []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def call(method, path, body=None, key=None, headers=None, raw=False):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    h = dict(headers or {})
    if key:
        h["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(API + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            out = r.read()
            return r.status, out if raw else json.loads(out)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def spawn(name, *args):
    log = open(os.path.join(WORK, f"{name}-{len(procs)}.log"), "w")
    p = subprocess.Popen([os.path.join(BIN, name), *args], stdout=log, stderr=log)
    procs.append(p)
    return p


def maas(*args):
    return subprocess.run([os.path.join(BIN, "maas"), *args], capture_output=True, text=True)


def key_of(*args):
    path = os.path.join(WORK, f"key-{uuid.uuid4().hex[:6]}")
    r = maas("tenant", *args, "--key-file", path)
    check(r.returncode == 0 and oct(os.stat(path).st_mode & 0o777) == "0o600",
          f"maas tenant {' '.join(args)} writes its key to a 0600 file ({r.stderr.strip()[-200:]})")
    return open(path).read().strip()


def wait_job(jid, key, timeout=90):
    end = time.time() + timeout
    while time.time() < end:
        st, j = call("GET", f"/v1/jobs/{jid}", key=key)
        if st == 200 and j["state"] in ("succeeded", "failed", "expired", "cancelled"):
            return j
        time.sleep(0.1)
    return call("GET", f"/v1/jobs/{jid}", key=key)[1]


def train_body(rows, seed):
    return {"type": "train", "model": "pima",
            "layers": [{"units": 10, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
            "loss": "binary_crossentropy", "epochs": 2, "batch_size": 32, "standardize": True,
            "seed": seed, "data": {"x": [r[:8] for r in rows], "y": [r[8:] for r in rows]}}


rows = [[float(v) for v in r] for r in list(csv.reader(open(PIMA)))[1:]]
train, test = rows[:614], rows[614:]
ten = [r[:8] for r in test[:10]]
# (predicts wait up to 30 s: creating a tenant rebalances the worker groups once the workers
# see its topics, which pauses inference for a few seconds)
try:
    r = subprocess.run([os.path.join(BIN, "maas-coordinator"), "--http", "0.0.0.0:29182", "--auth", "off"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and "loopback only" in r.stderr,
          f"--auth off on a non-loopback address is refused ({r.returncode} {r.stderr.strip()[-120:]})")

    admin = key_of("admin-key")
    ka, kb = key_of("create", A), key_of("create", B)
    kb_read = key_of("key-rotate", B, "--scopes", "read", "--grace-s", "600")  # kb keeps working
    r = maas("tenant", "create", A)
    check(r.returncode == 1 and "exists" in r.stderr, f"a tenant is created once ({r.stderr.strip()})")
    r = maas("tenant", "create", "Bad.Name")
    check(r.returncode == 2 and "a-z 0-9" in r.stderr, f"a bad tenant name is a usage error ({r.stderr.strip()})")
    listed = maas("tenant", "list").stdout
    check(A in listed and B in listed and ka.split("_")[2] not in listed,
          "maas tenant list shows the tenants and key ids, never a secret")

    spawn("maas-coordinator", "--http", f"127.0.0.1:{PORT}", "--brokers", BROKERS, "--redis", REDIS_URL)
    spawn("maas-worker", "--id", f"ten-w{RUN}", "--brokers", BROKERS, "--redis", REDIS_URL,
          "-X", "kafka.session.timeout.ms=6000")
    wait_healthz(API)

    # credentials
    st, e = call("GET", "/v1/models")
    check(st == 401 and e["error"]["code"] == "UNAUTHENTICATED" and "Bearer" in e["error"]["message"],
          f"no credential: 401 saying how to send one ({st} {e})")
    st, e = call("GET", "/v1/models", key="maas_123")
    check(st == 401 and "malformed" in e["error"]["message"], f"a malformed key: 401 ({e})")
    wrong = ka[:-4] + ("0000" if not ka.endswith("0000") else "1111")
    st, e = call("GET", "/v1/models", key=wrong)
    st2, e2 = call("GET", "/v1/models", key="maas_" + "0" * 16 + "_" + "0" * 64)
    check(st == st2 == 401 and e["error"]["message"] == e2["error"]["message"],
          f"a wrong secret and an unknown key get the same 401 ({e} / {e2})")
    st, e = call("POST", "/v1/jobs", train_body(train, 1), key=kb_read)
    check(st == 403 and e["error"]["code"] == "FORBIDDEN" and "submit" in e["error"]["message"],
          f"a read-only key cannot submit: 403 ({st} {e})")
    st, e = call("GET", "/metrics", key=ka)
    check(st == 403, f"/metrics needs the admin scope ({st})")

    # A trains pima -> A's version 1, aliased production
    st, sa = call("POST", "/v1/jobs", train_body(train, 1), key=ka)
    check(st == 202, f"A submits a training job ({st} {sa})")
    ja = wait_job(sa["id"], ka)
    check(ja["state"] == "succeeded" and ja["result"]["version"] == 1, f"A's pima version 1 ({ja['state']})")
    st, _ = call("PUT", "/v1/models/pima/aliases/production", {"version": 1}, key=ka)
    check(st == 200, "A aliases production -> 1")
    st, pa = call("POST", "/v1/models/pima:predict", {"inputs": ten, "alias": "production", "timeout_ms": 30000}, key=ka)
    check(st == 200 and pa["version"] == 1, f"A predicts with its production ({st})")
    st, h5a = call("GET", "/v1/models/pima/versions/production/h5", key=ka, raw=True)

    # The scenario, as B: every step fails or touches only B's own namespace
    st, e = call("GET", "/v1/models/pima/versions/production/h5", key=kb, raw=False)
    check(st == 404, f"B cannot download A's model file: 404 ({st})")
    st, e = call("PUT", "/v1/models/pima/aliases/production", {"version": 1}, key=kb)
    check(st == 404, f"B cannot move A's production alias: 404 ({st} {e})")
    st, e = call("GET", f"/v1/jobs/{sa['id']}", key=kb)
    check(st == 404 and e["error"]["code"] == "UNKNOWN_JOB", f"B cannot read A's job: 404 ({st})")
    st, e = call("POST", f"/v1/jobs/{sa['id']}/cancel", key=kb)
    check(st == 404, f"B cannot cancel A's job: 404 ({st} {e})")
    st, m = call("GET", "/v1/models", key=kb)
    check(st == 200 and m["models"] == [], f"B sees no models ({m})")
    st, e = call("GET", "/v1/models/pima/versions", key=kb)
    st2, e2 = call("POST", "/v1/models/pima:predict", {"inputs": ten, "timeout_ms": 30000}, key=kb)
    check(st == 404 and st2 == 404, f"B cannot list A's versions nor predict with A's model: 404 ({st} {st2})")
    st, sb = call("POST", "/v1/jobs", train_body(train[:300], 2), key=kb)
    jb = wait_job(sb["id"], kb)
    check(jb["state"] == "succeeded" and jb["result"]["version"] == 1,
          f"B's training on the name pima makes B's version 1, not A's version 2 ({jb['state']})")
    st, v = call("GET", "/v1/models/pima/versions", key=ka)
    check(st == 200 and [x["version"] for x in v["versions"]] == [1], f"A still has one version ({v})")
    st, m = call("GET", "/v1/models", key=ka)
    al = m["models"][0]["aliases"] if m.get("models") else {}
    check(al.get("production") == 1 and al.get("latest") == 1, f"A's aliases did not move ({al})")
    st, pa2 = call("POST", "/v1/models/pima:predict", {"inputs": ten, "alias": "latest", "timeout_ms": 30000}, key=ka)
    st, pb = call("POST", "/v1/models/pima:predict", {"inputs": ten, "timeout_ms": 30000}, key=kb)
    check(pa2.get("outputs") == pa["outputs"] and pb.get("outputs") not in (None, pa["outputs"]),
          f"A's predict is served by A's weights, B's by B's ({pa2} {pb})")
    st, h5a2 = call("GET", "/v1/models/pima/versions/1/h5", key=ka, raw=True)
    check(h5a2 == h5a, "A's model file is unchanged")

    # an operator's admin key may act for a tenant; a tenant key may not switch
    st, j = call("GET", f"/v1/jobs/{sa['id']}", key=admin, headers={"X-Maas-Tenant": A})
    check(st == 200 and j["id"] == sa["id"], f"the admin key reads A's job with X-Maas-Tenant ({st})")
    st, e = call("GET", f"/v1/jobs/{sa['id']}", key=kb, headers={"X-Maas-Tenant": A})
    check(st == 403, f"B's key cannot name another tenant ({st} {e})")
    st, e = call("GET", "/v1/models", key=admin, headers={"X-Maas-Tenant": f"nope{RUN}"})
    check(st == 404, f"an unknown tenant is 404 ({st})")

    # Kafka: a job produced to A's topic is A's (the tenant comes from the topic)
    jid = f"direct-{RUN}"
    msg = msgpack.packb({"v": 1, "id": jid, "type": "infer", "model": "pima",
                         "inputs": {"shape": [1, 8], "dtype": "float32",
                                    "data": b"".join(__import__("struct").pack("<f", x) for x in ten[0])}},
                        use_bin_type=True)
    p = Producer(kafka_conf(BROKERS))
    p.produce(f"maas.t.{A}.jobs.infer", msg, key=jid)
    p.flush(15)
    j = wait_job(jid, ka, 30)
    check(j.get("state") == "succeeded" and j["result"]["version"] == 1
          and abs(j["result"]["outputs"][0][0] - pa["outputs"][0][0]) < 1e-6,
          f"a job produced to A's topic is served by A's model, recorded in A's namespace ({j.get('state')})")
    rd = redis.Redis.from_url(REDIS_URL, **redis_login())
    check(rd.exists(f"maas:t:{A}:job:{{{jid}}}") == 1 and rd.exists(f"maas:job:{{{jid}}}") == 0
          and call("GET", f"/v1/jobs/{jid}", key=kb)[0] == 404,
          "its record is maas:t:A:job:{id}, not in the single-tenant namespace nor B's")
    check(rd.exists(f"maas:t:{A}:model:{{pima}}:versions") == 1 and rd.exists(f"maas:t:{B}:model:{{pima}}:versions") == 1,
          "each tenant's model lives under its own prefix")

    # revocation and rotation
    kb_id = kb.split("_")[1]
    st_before = call("GET", "/v1/models", key=kb_read)[0]
    r = maas("tenant", "key-revoke", kb_read.split("_")[1])
    t0 = time.time()
    st_after = call("GET", "/v1/models", key=kb_read)[0]
    check(r.returncode == 0 and st_before == 200 and st_after == 401 and time.time() - t0 < 1,
          f"a revoked key stops working at once ({st_before} -> {st_after})")
    kb2 = key_of("key-rotate", B, "--grace-s", "600")
    check(call("GET", "/v1/models", key=kb)[0] == 200 and call("GET", "/v1/models", key=kb2)[0] == 200,
          "after a rotation the old key works through its grace period, and the new one")
    ttl = rd.pttl(f"maas:apikey:{{{kb_id}}}")
    check(0 < ttl <= 600_000, f"the old key expires with its grace period (pttl {ttl})")

    # deleting a tenant revokes its keys and empties its namespace
    r = maas("tenant", "delete", B)
    check(r.returncode == 0 and call("GET", "/v1/models", key=kb2)[0] == 401
          and not list(rd.scan_iter(f"maas:t:{B}:*", count=1000)),
          f"maas tenant delete: keys revoked, namespace gone ({r.stderr.strip()[-160:]})")
    topics = set(Producer(kafka_conf(BROKERS)).list_topics(timeout=10).topics)
    check(f"maas.t.{B}.jobs.infer" not in topics and f"maas.t.{A}.jobs.infer" in topics,
          "B's topics are deleted with it, A's stay")
    check(call("GET", "/v1/models/pima/versions", key=ka)[0] == 200, "A is untouched by B's deletion")
finally:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
    maas("tenant", "delete", A)
    maas("tenant", "delete", B)
check(all(p.returncode == 0 for p in procs), f"clean exits ({[p.returncode for p in procs]})")
print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failed checks")
sys.exit(1 if failures else 0)
