#!/usr/bin/python3
"""The engines enforce the tenants (issue 18), on services of its own (ports 24292/24293,
24479, 24280): Kafka with SASL SCRAM-SHA-512 and the StandardAuthorizer, Redis with ACL users and the
default user off, both as deploy/local starts them (MAAS_KAFKA_AUTH=scram,
MAAS_REDIS_AUTH=acl); a worker and the coordinator with the service credentials from
maas.conf (MAAS_CONFIG, never argv). `maas tenant create` makes each tenant's Kafka principal
with prefixed ACLs and its read-only Redis user. Then, as tenant A's principal: producing to
A's topic is served (the worker takes the tenant from the topic); producing to B's topic or
to the single-tenant topic is refused by the broker; A's Redis user reads A's record but is
refused B's keys, every write, and SCAN; no credential, a wrong password and the default Redis
user get nothing. The Python and kcat examples run as tenant A from its client settings.
usage: test_secure.py BIN_DIR PIMA_CSV WORKDIR
"""
import csv
import json
import os
import shutil
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
from confluent_kafka import KafkaException, Producer

from itkeys import clean_exit, job_record, job_state

BIN, PIMA, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
HERE = os.path.dirname(os.path.abspath(__file__))
LOCAL = os.path.join(HERE, "../../deploy/local")
STATE = os.path.join(WORK, "state")
# below the kernel's ephemeral range (32768-60999): no client socket can hold them first (a
# coordinator once failed to bind 39280, "Address already in use", in a CI run)
KPORT, RPORT, HPORT = 24292, 24479, 24280
BROKERS, REDIS_URL, API = f"127.0.0.1:{KPORT}", f"redis://127.0.0.1:{RPORT}", f"http://127.0.0.1:{HPORT}"
CONF = os.path.join(STATE, "credentials", "maas.conf")
ENV = dict(os.environ, MAAS_STATE_DIR=STATE, MAAS_KAFKA_PORT=str(KPORT),
           MAAS_KAFKA_CONTROLLER_PORT=str(KPORT + 1), MAAS_REDIS_PORT=str(RPORT),
           MAAS_KAFKA_ADMIN=os.path.join(BIN, "maas-kafka-admin"), MAAS_KAFKA_AUTH="scram",
           MAAS_REDIS_AUTH="acl", MAAS_KAFKA_BROKERS=BROKERS, MAAS_REDIS_URL=REDIS_URL,
           MAAS_CONFIG=CONF, MAAS_KAFKA_SCRAM_CMD=f"{LOCAL}/kafka.sh scram-user")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
RUN = uuid.uuid4().hex[:6]
A, B = f"a{RUN}", f"b{RUN}"
failures, procs = [], []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def service(name, action):
    r = subprocess.run([os.path.join(LOCAL, f"{name}.sh"), action], env=ENV, capture_output=True,
                       text=True, timeout=180)
    if r.returncode:
        raise RuntimeError(f"{name}.sh {action}: {r.stderr[-2000:]}")


def spawn(name, *args):
    log = open(os.path.join(WORK, f"{name}-{len(procs)}.log"), "w")
    p = subprocess.Popen([os.path.join(BIN, name), *args], stdout=log, stderr=log, env=ENV)
    p.log_path = log.name
    procs.append(p)
    return p


def tenant_conf(t):
    conf = os.path.join(WORK, f"{t}.conf")
    r = subprocess.run([os.path.join(BIN, "maas"), "tenant", "create", t, "--key-file",
                        os.path.join(WORK, f"{t}.key"), "--client-conf", conf], env=ENV,
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0 and "Kafka ACLs: User:" in r.stderr and "Redis user tenant-" in r.stderr,
          f"maas tenant create {t}: principal, ACLs, Redis user ({r.stderr.strip()[-300:]})")
    return dict(line.split("=", 1) for line in open(conf).read().split("\n") if "=" in line)


def producer(conf, **extra):
    c = {"bootstrap.servers": BROKERS, "security.protocol": "SASL_PLAINTEXT",
         "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": conf["kafka.sasl.username"],
         "sasl.password": conf["kafka.sasl.password"], "message.timeout.ms": 8000}
    c.update(extra)
    return Producer(c)


def produce(p, topic, value, key):
    """The delivery error's text, or None when the broker took it."""
    out = []
    p.produce(topic, value, key=key, on_delivery=lambda err, msg: out.append(err))
    p.flush(15)
    return str(out[0]) if out and out[0] else (None if out else "no delivery report")


def infer_msg(jid, row):
    return msgpack.packb({"v": 1, "id": jid, "type": "infer", "model": "pima",
                          "inputs": {"shape": [1, 8], "dtype": "float32",
                                     "data": b"".join(struct.pack("<f", x) for x in row)}},
                         use_bin_type=True)


def call(method, path, body, key):
    req = urllib.request.Request(API + path, data=json.dumps(body).encode() if body else None,
                                 method=method, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def redis_error(fn):
    try:
        fn()
        return None
    except redis.exceptions.RedisError as e:
        return f"{type(e).__name__}: {e}"  # NoPermissionError: Redis's NOPERM


rows = [[float(v) for v in r] for r in list(csv.reader(open(PIMA)))[1:]]
shutil.rmtree(STATE, ignore_errors=True)
os.makedirs(WORK, exist_ok=True)
try:
    service("redis", "start")
    service("kafka", "start")
    r = subprocess.run([os.path.join(BIN, "maas-kafka-admin"), "create-topics", "--timeout", "30"],
                       env=ENV, capture_output=True, text=True)
    check(r.returncode == 0, f"the service principal (maas.conf) creates the topics ({r.stderr[-200:]})")
    conf_text = open(CONF).read()
    check(oct(os.stat(CONF).st_mode & 0o777) == "0o600" and "kafka.sasl.password=" in conf_text
          and "redis.password=" in conf_text, "maas.conf holds the service credentials, mode 0600")
    # the worker with the workers' own login (worker.conf): enough to serve every tenant
    WCONF = os.path.join(STATE, "credentials", "worker.conf")
    wenv = dict(ENV, MAAS_CONFIG=WCONF)
    wlog = open(os.path.join(WORK, "maas-worker.log"), "w")
    wp = subprocess.Popen([os.path.join(BIN, "maas-worker"), "--id", f"sec-w{RUN}", "-X",
                           "kafka.session.timeout.ms=6000"], stdout=wlog, stderr=wlog, env=wenv)
    wp.log_path = wlog.name  # clean_exit reads it (as spawn's processes')
    procs.append(wp)
    wc = dict(ln.split("=", 1) for ln in open(WCONF).read().splitlines() if "=" in ln)
    rw = redis.Redis(host="127.0.0.1", port=RPORT, username=wc["redis.user"], password=wc["redis.password"])
    e = redis_error(lambda: rw.execute_command("ACL", "SETUSER", "intruder", "on", ">x", "~*", "+@all"))
    check(wc["redis.user"] == "worker" and e is not None and "no permissions" in e,
          f"the workers' Redis user cannot make users (the coordinator's can) ({e})")
    r = subprocess.run([os.path.join(BIN, "maas-kafka-admin"), "grant", "User:intruder", "maas.", "maas."],
                       env=wenv, capture_output=True, text=True, timeout=60)
    check(r.returncode != 0 and "AUTHORIZATION_FAILED" in r.stderr,
          f"the workers' Kafka principal cannot grant ACLs ({r.stderr.strip()[-160:]})")
    spawn("maas-coordinator", "--http", f"127.0.0.1:{HPORT}")
    ca, cb = tenant_conf(A), tenant_conf(B)

    # A trains pima over HTTP; its model is A's
    for _ in range(100):
        try:
            if urllib.request.urlopen(API + "/healthz", timeout=5).status == 200:
                break
        except OSError:
            time.sleep(0.2)
    st, sub = call("POST", "/v1/jobs", {
        "type": "train", "model": "pima", "epochs": 2, "batch_size": 32, "standardize": True, "seed": 1,
        "layers": [{"units": 10, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
        "loss": "binary_crossentropy",
        "data": {"x": [r[:8] for r in rows[:600]], "y": [r[8:] for r in rows[:600]]}}, ca["api_key"])
    end, j = time.time() + 120, {}
    while time.time() < end:
        st, j = call("GET", f"/v1/jobs/{sub.get('id')}", None, ca["api_key"])
        if j.get("state") in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    check(j.get("state") == "succeeded", f"A's training job through the secured services ({j.get('state')} {j.get('error_message')})")

    # Kafka: A's principal is confined to A's topics by the broker
    pa = producer(ca)
    jid = f"sec-{RUN}"
    err = produce(pa, f"maas.t.{A}.jobs.infer", infer_msg(jid, rows[700][:8]), jid)
    check(err is None, f"A's principal produces to A's topic ({err})")
    err = produce(pa, f"maas.t.{B}.jobs.infer", infer_msg(f"x-{RUN}", rows[700][:8]), f"x-{RUN}")
    check(err is not None and "authorization" in err.lower(), f"the broker refuses A's job on B's topic ({err})")
    err = produce(pa, "maas.jobs.infer", infer_msg(f"y-{RUN}", rows[700][:8]), f"y-{RUN}")
    check(err is not None and "authorization" in err.lower(), f"... and on the single-tenant topic ({err})")
    bad = producer(ca, **{"sasl.password": "wrong"})
    err = produce(bad, f"maas.t.{A}.jobs.infer", b"x", "x")
    check(err is not None, f"a wrong SCRAM password gets nothing in ({err[:120] if err else err})")
    plain = Producer({"bootstrap.servers": BROKERS, "message.timeout.ms": 5000})
    err = produce(plain, f"maas.t.{A}.jobs.infer", b"x", "x")
    check(err is not None, f"a client without SASL gets nothing in ({err[:120] if err else err})")

    # Redis: A's read-only user
    ra = redis.Redis(host="127.0.0.1", port=RPORT, username=ca["redis.user"], password=ca["redis.password"])
    key = f"maas:t:{A}:job:{{{jid}}}"
    end, state = time.time() + 60, None
    while time.time() < end and state not in (b"succeeded", b"failed"):
        state = job_state(ra, jid, f"maas:t:{A}:")
        time.sleep(0.2)
    check(state == b"succeeded" and job_record(ra, jid, f"maas:t:{A}:")["worker"] == f"sec-w{RUN}",
          f"A's Kafka job is served and A's Redis user reads its record ({state})")
    e = redis_error(lambda: ra.get(f"maas:t:{B}:job:{{{jid}}}"))
    check(e is not None and "no permissions" in e, f"A's Redis user cannot read B's keys ({e})")
    e = redis_error(lambda: ra.get(f"maas:job:{{{jid}}}"))
    check(e is not None and "no permissions" in e, f"... nor the single-tenant namespace ({e})")
    e = redis_error(lambda: ra.set(key, "{}"))
    check(e is not None and "no permissions" in e and job_state(ra, jid, f"maas:t:{A}:") == b"succeeded",
          f"... and cannot write its own ({e})")
    e = redis_error(lambda: ra.scan(0))
    check(e is not None and "no permissions" in e, f"... nor list key names with SCAN ({e})")
    e = redis_error(lambda: redis.Redis(host="127.0.0.1", port=RPORT).get("x"))
    check(e is not None and ("NOAUTH" in e or "Authentication" in e), f"the default Redis user is off ({e})")
    e = redis_error(lambda: redis.Redis(host="127.0.0.1", port=RPORT, username=ca["redis.user"],
                                        password="wrong").ping())
    check(e is not None and "WRONGPASS" in e.upper(), f"a wrong Redis password ({e})")
    rb = redis.Redis(host="127.0.0.1", port=RPORT, username=cb["redis.user"], password=cb["redis.password"])
    e = redis_error(lambda: rb.get(key))
    check(e is not None and "no permissions" in e, f"B's Redis user cannot read A's record ({e})")

    # the examples, as tenant A, with its client settings file (MAAS_CLIENT_CONF)
    cenv = dict(ENV, MAAS_CLIENT_CONF=os.path.join(WORK, f"{A}.conf"))
    del cenv["MAAS_CONFIG"]
    r = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "../../examples/python/client.py"), PIMA],
                       env=cenv, capture_output=True, text=True, timeout=180)
    check(r.returncode == 0 and "154 inference jobs: accuracy" in r.stdout,
          f"the Python example runs as tenant A ({(r.stdout + r.stderr).strip()[-300:]})")
    r = subprocess.run([os.path.join(HERE, "../../examples/kcat/infer.sh"), "pima", f"kc-{RUN}"],
                       env=cenv, capture_output=True, text=True, timeout=90)
    check(r.returncode == 0 and "state: succeeded" in r.stdout and f"maas.t.{A}.jobs.infer" in r.stdout,
          f"the kcat example runs as tenant A ({(r.stdout + r.stderr).strip()[-300:]})")

    # deleting B removes its Redis user
    r = subprocess.run([os.path.join(BIN, "maas"), "tenant", "delete", B], env=ENV, capture_output=True,
                       text=True, timeout=60)
    e = redis_error(lambda: redis.Redis(host="127.0.0.1", port=RPORT, username=cb["redis.user"],
                                        password=cb["redis.password"]).ping())
    check(r.returncode == 0 and e is not None, f"maas tenant delete removes the tenant's Redis user ({e})")
finally:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
    for name in ("kafka", "redis"):
        try:
            service(name, "stop")
        except Exception as e:  # noqa: BLE001 - report, then go on stopping the rest
            print(f"stopping {name}: {e}")
check(all(clean_exit(p) for p in procs), f"clean exits ({[p.returncode for p in procs]})")
if failures:
    for f in sorted(os.listdir(WORK)):
        if f.endswith(".log"):
            print(f"--- {f} (tail)\n" + "".join(open(os.path.join(WORK, f)).readlines()[-10:]))
print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failed checks")
sys.exit(1 if failures else 0)
