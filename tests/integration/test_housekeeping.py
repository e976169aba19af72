#!/usr/bin/python3
"""The coordinator's housekeeping against real Kafka, Redis and workers (services fixture).

1. Stale jobs: a long training job's worker is killed with -9 while no other worker runs; the
   coordinator (--stale-s 3) sees the heartbeat go stale once the worker stops announcing itself,
   moves the record back to queued and publishes the stored message again; a new worker trains
   it, and the model ends with exactly one version (Kafka's own redelivery is the duplicate).
2. Retention: with --retain-versions 1, a model with 3 versions and `production` on version 1
   keeps versions 1 (aliased) and 3 (newest, latest); version 2 goes. `maas gc --keep 1`
   (with --dry-run first) does the same for one model.
3. /metrics reports recent jobs by state, stale jobs republished, versions deleted.
usage: test_housekeeping.py BIN_DIR PIMA_CSV WORKDIR   (env MAAS_KAFKA_BROKERS, MAAS_REDIS_URL)
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

from itkeys import operator_key, redis_login

import redis

BIN, PIMA, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
BROKERS = os.environ.get("MAAS_KAFKA_BROKERS", "127.0.0.1:29092")
REDIS_URL = os.environ.get("MAAS_REDIS_URL", "redis://127.0.0.1:26379")
PORT = 29182
os.makedirs(WORK, exist_ok=True)
RUN = uuid.uuid4().hex[:8]
MAAS = os.path.join(BIN, "maas")
failures, procs = [], []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def spawn(name, *args, log=None):
    out = open(os.path.join(WORK, f"{log or name}.log"), "a")
    p = subprocess.Popen([os.path.join(BIN, name), *args], stdout=out, stderr=out)
    procs.append(p)
    return p


def maas(*args):
    return subprocess.run([MAAS, *args], capture_output=True, text=True, timeout=600)


def worker(name):
    return spawn("maas-worker", "--id", name, "--brokers", BROKERS, "--redis", REDIS_URL,
                 "-X", "kafka.session.timeout.ms=6000", log=name)


def record(job_id):
    out = maas("job", job_id).stdout
    return dict((l.split(":", 1)[0].strip(), l.split(":", 1)[1].strip()) for l in out.splitlines()
                if ":" in l)


def metrics():
    with urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{PORT}/metrics", headers={"Authorization": f"Bearer {KEY}"}), timeout=10) as r:
        return r.read().decode()


def metric(name):
    for line in metrics().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return -1


def wait_for(pred, seconds):
    end = time.time() + seconds
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.5)
    return False


# a training set for a long job: Pima, 20 copies
KEY = operator_key(BIN, WORK)
rows = open(PIMA).read().splitlines()
big = os.path.join(WORK, "big.csv")
with open(big, "w") as f:
    f.write(rows[0] + "\n")
    for _ in range(20):
        f.write("\n".join(rows[1:]) + "\n")
small = os.path.join(WORK, "small.csv")
with open(small, "w") as f:
    f.write("\n".join(rows[:200]) + "\n")
try:
    coord = spawn("maas-coordinator", "--http", f"127.0.0.1:{PORT}", "--brokers", BROKERS,
                  "--redis", REDIS_URL, "--stale-s", "3", "--retain-versions", "1")
    # 1. a stale job
    w = worker(f"hk1-{RUN}")
    model = f"hks{RUN}"
    # Size the long job from a short one as the worker measured it (started -> finished in its
    # record: no submit or queue overhead; a sanitizer build is many times slower), aiming at
    # ~15 s. The test then stops the worker (SIGSTOP) as soon as the job reports progress and
    # checks it is still running before killing it: if the premise broke, it says so.
    cal = f"hkcal-{RUN}"
    maas("submit", "train", "--name", f"hkcal{RUN}", "--data", big, "--label", "diabetes",
         "--layers", "64:relu,64:relu,1:sigmoid", "--epochs", "20", "--standardize", "--id", cal,
         "--wait")
    rc = record(cal)
    ms = lambda v: int(v.strip("+ ms")) if v else 0
    took = (ms(rc.get("finished")) - ms(rc.get("started"))) / 1000
    check(rc.get("state") == "succeeded" and took > 0, f"the calibration job ran ({rc})")
    epochs = max(60, min(10000, int(20 * 15 / max(took, 0.01))))
    print(f"     the worker trained 20 epochs in {took:.2f} s; the long job gets {epochs} (~15 s)")
    sub = maas("submit", "train", "--name", model, "--data", big, "--label", "diabetes",
               "--layers", "64:relu,64:relu,1:sigmoid", "--epochs", str(epochs), "--standardize",
               "--seed", "1", "--id", f"hk-long-{RUN}")
    check(sub.returncode == 0, f"submitted the long job ({sub.stderr.strip()})")
    jid = f"hk-long-{RUN}"
    check(wait_for(lambda: record(jid).get("state") == "running" and "progress" in record(jid),
                   120), "the job is running and reports progress")
    w.send_signal(signal.SIGSTOP)  # it cannot finish now; the record says whether it had
    rec = record(jid)
    if rec.get("state") != "running":
        print(f"FAIL premise broken: the long job ({epochs} epochs) was already {rec.get('state')} "
              f"when its worker was stopped; the calibration ({took:.2f} s for 20 epochs) was off")
    check(rec.get("state") == "running", f"still running when its worker is killed ({rec.get('progress')})")
    w.send_signal(signal.SIGKILL)
    w.wait()
    # 600 newer records (others' finished jobs): the stale job is no longer among the newest
    # 500, which housekeeping used to scan; it walks the index of work jobs now
    R = redis.Redis.from_url(REDIS_URL, **redis_login())
    pipe = R.pipeline()
    now_ms = int(time.time() * 1000)
    for i in range(600):
        fid = f"hkfill{i}-{RUN}"
        pipe.set(f"maas:job:{{{fid}}}", json.dumps({"id": fid, "type": "infer", "model": "x",
                                                    "state": "succeeded", "attempts": 1,
                                                    "created_ms": now_ms + i, "ttl_s": 600}),
                 ex=600)
        pipe.zadd("maas:jobs", {fid: now_ms + i})
    pipe.execute()
    # the worker's announcement expires after 15 s; then the heartbeat is older than 3 s
    check(wait_for(lambda: record(jid).get("state") == "queued", 60),
          "the coordinator put the stale job back to queued (600 newer records in the index)")
    rec = record(jid)
    check(rec.get("attempts") == "1", f"attempts kept ({rec.get('attempts')})")
    check(wait_for(lambda: metric('maas_coordinator_stale_jobs_total{action="republished"}') == 1, 20),
          "metrics count the republished job")
    check('maas_coordinator_recent_jobs{state="queued"}' in metrics(), "metrics: recent jobs by state")
    w2 = worker(f"hk2-{RUN}")
    check(wait_for(lambda: record(jid).get("state") == "succeeded", 240),
          f"a new worker finished it ({record(jid).get('state')})")
    vers = [l for l in maas("versions", model).stdout.splitlines()[1:] if l.strip()]
    check(len(vers) == 1, f"exactly one version ({len(vers)})")

    # 2. retention by the coordinator, and maas gc
    rm = f"hkr{RUN}"
    for k in range(3):
        r = maas("submit", "train", "--name", rm, "--data", small, "--label", "diabetes",
                 "--layers", "4:relu,1:sigmoid", "--epochs", "1", "--wait")
        if k == 0:
            maas("alias", rm, "production", "1")
    check(wait_for(lambda: [l.split()[0] for l in maas("versions", rm).stdout.splitlines()[1:]
                            if l.strip()] == ["1", "3"], 30),
          f"retention kept the aliased and the newest: "
          f"{[l.split()[0] for l in maas('versions', rm).stdout.splitlines()[1:] if l.strip()]}")
    # (other tests' models on the same Redis may lose old versions too: at least one)
    check(wait_for(lambda: metric("maas_coordinator_versions_deleted_total") >= 1, 10),
          "metrics count the deleted version")
    stop_coord = coord
    stop_coord.send_signal(signal.SIGTERM)
    stop_coord.wait(30)
    gm = f"hkg{RUN}"
    for k in range(3):
        maas("submit", "train", "--name", gm, "--data", small, "--label", "diabetes",
             "--layers", "4:relu,1:sigmoid", "--epochs", "1", "--wait")
    maas("alias", gm, "production", "1")
    dry = maas("gc", gm, "--keep", "1", "--dry-run")
    check(dry.returncode == 0 and dry.stdout.strip() == f"would delete {gm} version 2",
          f"gc --dry-run names what would go ({dry.stdout.strip()})")
    check(len(maas("versions", gm).stdout.splitlines()) == 4, "dry run deleted nothing")
    gc = maas("gc", gm, "--keep", "1")
    check(gc.returncode == 0 and f"deleted {gm} version 2" in gc.stdout
          and "1 kept for an alias" in gc.stderr, f"gc deletes version 2 only ({gc.stderr.strip()})")
    left = [l.split()[0] for l in maas("versions", gm).stdout.splitlines()[1:] if l.strip()]
    check(left == ["1", "3"], f"versions 1 and 3 remain ({left})")
    ex = maas("export", f"{gm}:2", "-o", os.path.join(WORK, "gone.h5"))
    check(ex.returncode == 1 and "version 2" in ex.stderr, f"a deleted version is unknown ({ex.stderr.strip()})")
    bad = maas("gc", gm)
    check(bad.returncode == 2 and "--keep N is required" in bad.stderr, "gc needs --keep")
finally:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(30)
if failures:
    print(f"FAILED: {len(failures)}: {failures}")
    sys.exit(1)
print("housekeeping: all checks passed")
