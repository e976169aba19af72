#!/usr/bin/python3
"""Sweeps against real Kafka, Redis, two workers and the coordinator (services fixture).

1. `maas sweep --wait`: 4 learning rates x 3 layer lists = 12 training jobs across two workers;
   every point is accounted for, both workers ran some, the table is ranked by val_loss, the
   best version gets the `production` alias; the same command again submits nothing.
2. The HTTP API: POST /v1/sweeps (6 points) while no worker runs; the coordinator is killed
   (-9) after acknowledging it and started again; a retry of the same request submits nothing;
   workers come up; every point succeeds and the restarted coordinator's housekeeping moves the
   promote alias to the best version. Bad sweep requests get a 400 that names the field.
usage: test_sweep.py BIN_DIR PIMA_CSV WORKDIR   (env MAAS_KAFKA_BROKERS, MAAS_REDIS_URL)
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

from itkeys import operator_key

BIN, PIMA, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
BROKERS = os.environ.get("MAAS_KAFKA_BROKERS", "127.0.0.1:29092")
REDIS_URL = os.environ.get("MAAS_REDIS_URL", "redis://127.0.0.1:26379")
PORT = 29181
API = f"http://127.0.0.1:{PORT}"
os.makedirs(WORK, exist_ok=True)
RUN = uuid.uuid4().hex[:8]
MAAS = os.path.join(BIN, "maas")
failures, procs = [], []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(API + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def spawn(name, *args, log=None):
    out = open(os.path.join(WORK, f"{log or name}.log"), "a")
    p = subprocess.Popen([os.path.join(BIN, name), *args], stdout=out, stderr=out)
    procs.append(p)
    return p


def maas(*args, check_rc=True):
    r = subprocess.run([MAAS, *args], capture_output=True, text=True, timeout=600)
    if check_rc and r.returncode != 0:
        print(r.stdout, r.stderr)
    return r


def worker(name, http_port):
    return spawn("maas-worker", "--id", name, "--brokers", BROKERS, "--redis", REDIS_URL,
                 "--http", f"127.0.0.1:{http_port}", "-X", "kafka.session.timeout.ms=6000", log=name)


def work_partitions(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return json.loads(r.read())["partitions"]["work"]
    except (OSError, ValueError, KeyError):
        return 0


def wait_shared(ports, seconds=90):
    """Until every worker holds some of the work topic's 6 partitions (the group settled)."""
    end = time.time() + seconds
    while time.time() < end:
        got = [work_partitions(p) for p in ports]
        if all(got) and sum(got) == 6:
            return True
        time.sleep(0.3)
    return False


def coordinator():
    p = spawn("maas-coordinator", "--http", f"127.0.0.1:{PORT}", "--brokers", BROKERS,
              "--redis", REDIS_URL, log="coordinator")
    for _ in range(100):
        try:
            if call("GET", "/healthz")[0] == 200:
                return p
        except OSError:
            pass
        time.sleep(0.1)
    return p


def stop(p, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
        p.wait(30)


train = os.path.join(WORK, "train.csv")
with open(PIMA) as f, open(train, "w") as out:
    out.writelines(f.readlines()[:615])
KEY = operator_key(BIN, WORK)
try:
    # 1. the CLI
    w1, w2 = worker(f"sw1-{RUN}", 29191), worker(f"sw2-{RUN}", 29192)
    check(wait_shared([29191, 29192]), "the two workers share the work topic's partitions")
    model = f"swc{RUN}"
    args = ["sweep", "--name", model, "--data", train, "--label", "diabetes",
            "--layers", "8:relu,1:sigmoid", "--layers", "16:relu,1:sigmoid",
            "--layers", "4:relu,1:sigmoid", "--lr", "0.001,0.003,0.01,0.03", "--epochs", "20", "--standardize", "--seed", "3",
            "--promote", "production", "--id", f"swc-{RUN}", "--wait"]
    r = maas(*args)
    check(r.returncode == 0, f"maas sweep --wait exits 0 ({r.returncode})")
    lines = r.stdout.splitlines()
    table = [l for l in lines if l.split() and l.split()[0].isdigit()]
    check(len(table) == 12 and [int(l.split()[0]) for l in table] == list(range(1, 13)),
          f"12 points, all ranked ({len(table)})")
    vl = [float(l.split()[3]) for l in table]
    check(vl == sorted(vl), f"ranked by val_loss: {vl}")
    check(r.stderr.count("succeeded: version") == 12, "each point reported as it ended")
    best = int(table[0].split()[1])
    check(f"best: {model} version {best}" in r.stdout and "production moved to it" in r.stdout,
          "the best version is named and promoted")
    m = maas("models").stdout
    check(any(l.startswith(model + " ") and f"production={best}" in l.replace(" ", "")
              for l in m.splitlines()),
          f"production -> {best} in the registry: {m.strip()}")
    ran_on = set()
    for k in range(1, 13):
        rec = maas("job", f"swc-{RUN}-{k:03d}").stdout
        ran_on |= {l.split()[1] for l in rec.splitlines() if l.startswith("worker:")}
    check(len(ran_on) == 2, f"both workers trained points: {sorted(ran_on)}")
    again = maas(*args)
    check(again.returncode == 0 and "exists; submitting what is missing" in again.stderr
          and "(0 submitted now)" in again.stderr, "the same sweep again submits nothing")
    shown = maas("sweep", "show", f"swc-{RUN}").stdout
    check(f"done: best {model} version {best}, promoted to production" in shown, "sweep show")
    bad = maas("sweep", "--name", model, "--data", train, "--label", "diabetes", "--layers",
               "8:relu,1:sigmoid", "--lr", "0.01,abc", check_rc=False)
    check(bad.returncode == 2 and "--lr must be a number" in bad.stderr, "a bad --lr list is named")

    # 2. the HTTP API, with a coordinator restart while the sweep is pending
    stop(w1)
    stop(w2)
    maas("dataset", "put", f"swd-{RUN}", "--data", train, "--label", "diabetes")
    coord = coordinator()
    api_model = f"swa{RUN}"
    body = {"id": f"swa-{RUN}",
            "job": {"model": api_model, "data": {"dataset": f"swd-{RUN}"},
                    "layers": [{"units": 8, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
                    "loss": "binary_crossentropy", "epochs": 15, "standardize": True,
                    "validation_split": 0.2, "seed": 5},
            "grid": {"learning_rate": [0.003, 0.03], "batch_size": [16, 32, 64]},
            "metric": "val_loss", "promote": "production"}
    st, sub = call("POST", "/v1/sweeps", body)
    check(st == 202 and sub.get("points") == 6 and sub.get("submitted") == 6,
          f"POST /v1/sweeps: 202, 6 jobs ({st} {sub})")
    stop(coord, signal.SIGKILL)
    coord = coordinator()
    st, sub = call("POST", "/v1/sweeps", body)
    check(st == 202 and sub.get("resumed") is True and sub.get("submitted") == 0
          and sub.get("republished") == 6,
          f"a retry after the restart records nothing new; the still-queued points are published "
          f"again (a duplicate is acknowledged without recomputing) ({st} {sub})")
    st, g = call("GET", f"/v1/sweeps/swa-{RUN}")
    check(st == 200 and g["finished"] == 0 and all(p["state"] == "queued" for p in g["ranking"]),
          f"the acknowledged sweep survived the restart: 6 queued points ({st})")
    w1, w2 = worker(f"sw3-{RUN}", 29193), worker(f"sw4-{RUN}", 29194)
    end = time.time() + 180
    while time.time() < end:
        st, g = call("GET", f"/v1/sweeps/swa-{RUN}")
        if st == 200 and g.get("done"):
            break
        time.sleep(0.5)
    check(g.get("done") and g["finished"] == 6 and all(p["state"] == "succeeded" for p in g["ranking"]),
          f"every point succeeded and the sweep is done ({g.get('finished')} finished)")
    vers = [l for l in maas("versions", api_model).stdout.splitlines()[1:] if l.strip()]
    check(len(vers) == 6, f"exactly one version per point despite the duplicates ({len(vers)})")
    ranked = [p["val_loss"] for p in g["ranking"]]
    check(ranked == sorted(ranked) and g["ranking"][0]["rank"] == 1, "the API ranks by val_loss")
    m = maas("models").stdout
    check(any(l.startswith(api_model + " ") and f"production={g.get('best_version')}" in l.replace(" ", "")
              for l in m.splitlines())
          and g.get("best_version") == g["ranking"][0]["version"],
          f"the restarted coordinator promoted version {g.get('best_version')}")
    st, err = call("POST", "/v1/sweeps", {"job": {"model": api_model, "data": {"dataset": "x"},
                                                  "layers": [{"units": 1}], "loss": "mse"},
                                          "grid": {"learning_rate": "fast"}})
    check(st == 400 and "learning_rate" in err["error"]["message"], f"a bad grid is named ({st} {err})")
    st, err = call("POST", "/v1/sweeps", {"job": {"model": api_model, "layers": [{"units": 1}],
                                                  "loss": "mse", "data": {"x": [[1.0]], "y": [[1.0]]}}})
    check(st == 400 and "dataset" in err["error"]["message"], f"inline sweep data is refused ({st})")
    st, err = call("GET", "/v1/sweeps/nope-" + RUN)
    check(st == 404 and err["error"]["code"] == "UNKNOWN_SWEEP", "an unknown sweep is 404")
finally:
    for p in procs:
        stop(p)
if failures:
    print(f"FAILED: {len(failures)}: {failures}")
    sys.exit(1)
print("sweeps: all checks passed")
