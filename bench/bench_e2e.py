#!/usr/bin/python3
"""End-to-end inference through real Kafka and Redis: produce -> worker -> result
readable in Redis, with 1 and 2 maas workers and the plain Python worker
(bench/py_worker.py) on the same jobs; prints throughput, p50/p99 latency and
the ratios against the Python worker, plus idle RSS and start-to-ready.

It starts its own Redis and Kafka (deploy/local, ports 27092/27379, state in
.local/bench, wiped first: every run starts from empty services) and stops them
at the end.
usage: /usr/bin/python3 bench/bench_e2e.py [--jobs N] [--build build]
Latency = a job's finished_ms (set in the same Redis script that stores the
result) minus its created_ms (set by the producer), after one warm-up job has
gone through (the first produce to a topic waits for its metadata, and a
worker's first job loads the model), over 5 s of jobs at the rate that follow
a first, uncounted second at it.
"""
import argparse
import csv
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time

import msgpack
import redis
from confluent_kafka import Producer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, MAAS_KAFKA_PORT="27092", MAAS_KAFKA_CONTROLLER_PORT="27093",
           MAAS_REDIS_PORT="27379", MAAS_STATE_DIR=os.path.join(ROOT, ".local/bench"))
BROKERS, REDIS_URL = "127.0.0.1:27092", "redis://127.0.0.1:27379"
# --redis-cluster: 3 masters + 3 replicas on 27379..27384, their bus at +2000 (29379..29384:
# the default +1000 would take the quickstart's 28xxx ports); then 3 masters alone (27379..27381)
CLUSTER_URL = "redis+cluster://127.0.0.1:27379,127.0.0.1:27380,127.0.0.1:27381"


class Store:
    """The Redis (or the Redis Cluster) under test: a client for the benchmark's own reads,
    and a plain connection to each master for its CPU, key count and command statistics."""

    def __init__(self, cluster, replicas=1):
        self.cluster = cluster
        self.url = CLUSTER_URL if cluster else REDIS_URL
        if cluster:
            from redis.cluster import RedisCluster
            self.r = RedisCluster(host="127.0.0.1", port=27379)
            nodes = [redis.Redis(port=p) for p in range(27379, 27382 + 3 * replicas)]
            self.masters = [n for n in nodes if n.info("replication")["role"] == "master"]
            self.replicas = [n for n in nodes if n not in self.masters]
        else:
            self.r = redis.Redis.from_url(REDIS_URL)
            self.masters, self.replicas = [self.r], []

    @staticmethod
    def cpu_of(n):
        i = n.info("cpu")
        return float(i["used_cpu_user"]) + float(i["used_cpu_sys"])

    def cpu_each(self):
        return [self.cpu_of(n) for n in self.masters]

    def replicas_cpu(self):
        return sum(self.cpu_of(n) for n in self.replicas)

    def dbsize(self):
        return sum(n.dbsize() for n in self.masters)

    def commandstats(self):
        out = {}
        for n in self.masters:
            for k, v in n.info("commandstats").items():
                out[k[len("cmdstat_"):]] = out.get(k[len("cmdstat_"):], 0) + v["usec"]
                c = "calls:" + k[len("cmdstat_"):]  # how many: a batch's script is one call
                out[c] = out.get(c, 0) + v["calls"]
        return out

    def aof_rewrites(self):
        return sum(n.info("persistence").get("aof_rewrites", 0) for n in self.masters)


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, env=ENV, **kw)


def proc_cpu(pid):
    """A process's CPU time so far (s): user + system, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def kafka_pid():
    with open(os.path.join(ENV["MAAS_STATE_DIR"], "kafka", "kafka.pid")) as f:
        return int(f.read().strip())


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100 * len(v)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=60000,
                    help="jobs of each maas drain (the Python one gets a tenth): 60000 is ~3 s")
    ap.add_argument("--build", default="build")
    ap.add_argument("--redis-cluster", action="store_true",
                    help="then the same maas drains (and live peak, and --latency-rate) on a local "
                         "Redis Cluster of 3 masters + 3 replicas: ratios against single Redis, "
                         "Redis CPU per job on each master; then the drains (and live peak) on 3 "
                         "masters without replicas: what routing alone costs")
    ap.add_argument("--drain-only", action="store_true",
                    help="the drain rounds only (throughput and Redis CPU per job), no live peak or latency")
    ap.add_argument("--rounds", type=int, default=3, help="drain rounds (maas x1, x2, python)")
    ap.add_argument("--warm-rounds", type=int, default=3,
                    help="drains of --jobs jobs before anything is measured (the broker's JIT)")
    ap.add_argument("--warm-s", type=int, default=60,
                    help="then seconds of jobs at 5000/s, not measured either")
    ap.add_argument("--latency-rate", type=float, default=0,
                    help="also measure latency at this fixed rate (jobs/s, 10 s), beside half of peak")
    ap.add_argument("--wait-sweep", default="",
                    help="comma-separated --batch-wait-ms values to measure latency at half of "
                         "peak with (e.g. 0,1,2,5); how the worker's default was picked")
    ap.add_argument("--worker-arg", action="append", default=[],
                    help="an argument for every maas worker (repeat: --worker-arg=--batch-max "
                         "--worker-arg=256)")
    a = ap.parse_args()
    worker_bin = os.path.join(ROOT, a.build, "bin", "maas-worker")
    admin = os.path.join(ROOT, a.build, "bin", "maas-kafka-admin")
    ENV["MAAS_KAFKA_ADMIN"] = admin
    # a clean slate: job ids and topics repeat from run to run, and records left in Redis
    # by an earlier run would be read back as this run's results
    for svc in ("kafka", "redis"):
        sh(os.path.join(ROOT, f"deploy/local/{svc}.sh"), "stop", stderr=subprocess.DEVNULL)
        shutil.rmtree(os.path.join(ENV["MAAS_STATE_DIR"], svc), ignore_errors=True)
    sh(os.path.join(ROOT, "deploy/local/redis.sh"), "start", stderr=subprocess.DEVNULL)
    sh(os.path.join(ROOT, "deploy/local/kafka.sh"), "start", stderr=subprocess.DEVNULL)
    S = Store(cluster=False)
    # linger.ms 1, as maas's own producers (CLI, coordinator) use
    p = Producer({"bootstrap.servers": BROKERS, "enable.idempotence": True, "linger.ms": 1})
    procs = []
    logdir = os.path.join(ROOT, ".local/bench")
    try:
        rows = list(csv.reader(open(os.path.join(ROOT, "examples/data/pima-indians-diabetes.csv"))))[1:]
        X = [[float(v) for v in row[:8]] for row in rows]
        Y = [[float(row[8])] for row in rows]

        def start_worker(prefix, name, *extra):
            log = open(os.path.join(logdir, f"{name}.log"), "w")
            w = subprocess.Popen([worker_bin, "--brokers", BROKERS, "--redis", S.url, "--id", name,
                                  "--topic-prefix", prefix, *a.worker_arg, *extra], stderr=log,
                                 stdout=log, env=ENV)
            procs.append(w)
            return w

        def topics(prefix):
            sh(admin, "--brokers", BROKERS, "create-topics", "--prefix", prefix, stdout=subprocess.DEVNULL)

        # idle RSS: a fresh worker that has taken no job yet
        topics("idle.")
        wi = start_worker("idle.", "idle")
        time.sleep(3)
        rss_idle = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{wi.pid}/status").read()).group(1))
        wi.terminate()
        wi.wait()

        # a model: the seed network trained through a worker
        topics("setup.")
        w0 = start_worker("setup.", "setup")
        def mat(m):
            return {"shape": [len(m), len(m[0])], "dtype": "float32",
                    "data": struct.pack("<%df" % (len(m) * len(m[0])), *[v for row in m for v in row])}
        tid = f"bench-train-{time.time_ns()}"
        p.produce("setup.jobs.work", key=tid, value=msgpack.packb({
            "v": 1, "id": tid, "type": "train", "model": "pima",
            "layers": [{"units": 10, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
            "loss": "binary_crossentropy", "epochs": 10, "standardize": True, "seed": 7,
            "data": {"x": mat(X[:614]), "y": mat(Y[:614])}}))
        p.flush()
        end = time.time() + 60
        while (json.loads(S.r.get(f"maas:job:{{{tid}}}") or "{}").get("state") != "succeeded"
               and time.time() < end):
            time.sleep(0.05)
        time.sleep(2)
        model_keys = {k: S.r.dump(k) for k in S.r.keys("maas:model:{pima}*")}
        redis_version = S.r.info("server")["redis_version"]
        rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{w0.pid}/status").read()).group(1))
        ready = re.search(r"ready in (\d+) ms", open(os.path.join(logdir, "setup.log")).read()).group(1)
        w0.terminate()
        w0.wait()

        def produce(prefix, n, tag, rate=None):
            ids = []
            t0 = time.time()
            for i in range(n):
                jid = f"{tag}-{i}"
                ids.append(jid)
                job = msgpack.packb({"v": 1, "id": jid, "type": "infer", "model": "pima",
                                     "created_ms": int(time.time() * 1000), "inputs": [X[i % len(X)]]})
                while True:
                    try:
                        p.produce(f"{prefix}jobs.infer", key=jid, value=job)
                        break
                    except BufferError:  # over the producer's 100 000 queued messages
                        p.poll(0.05)
                if rate and i % 50 == 0:
                    p.poll(0)  # serve delivery reports as a paced client would
                    ahead = i / rate - (time.time() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                elif i % 1000 == 0:
                    p.poll(0)
            p.flush()
            return ids

        def wait_all(ids, timeout=300):
            """Waits until every job has its result, then reads their times. While jobs are
            pending it asks only for the newest one (every 50 ms), and sweeps the rest once
            that one is done: the benchmark's own reads stay off Redis while it is measured
            (polling 200 pending ids per pass had cost Redis ~7 us per job)."""
            end = time.time() + timeout
            pend = list(ids)
            while pend and time.time() < end:
                if not S.r.exists(f"maas:job:{{{pend[-1]}}}"):  # made final at once
                    time.sleep(0.05)
                    continue
                pipe = S.r.pipeline(transaction=False)
                for j in pend:
                    pipe.exists(f"maas:job:{{{j}}}")
                got = pipe.execute()
                pend = [j for j, v in zip(pend, got) if not v]
                if pend:
                    time.sleep(0.05)
            pipe = S.r.pipeline(transaction=False)
            for j in ids:
                pipe.get(f"maas:job:{{{j}}}")
            recs = [json.loads(v) for v in pipe.execute() if v]
            times = [(int(r["created_ms"]), int(r["finished_ms"])) for r in recs
                     if r.get("created_ms") and r.get("finished_ms")]
            # Then the records go: Redis rewrites its AOF whenever it has doubled, and the
            # rewrite (a child process that takes a core) lasts as long as the dataset is big.
            # Kept, the records of the earlier phases made each rewrite 3-6 s of a full core
            # in the middle of later phases (seconds of 100+ ms latencies), an artifact of
            # one benchmark process filling one Redis with a million records in minutes.
            pipe = S.r.pipeline(transaction=False)
            if S.cluster:  # one slot per job: one key per DEL
                for j in ids:
                    pipe.delete(f"maas:job:{{{j}}}")
            else:
                for k in range(0, len(ids), 1000):
                    pipe.delete(*[f"maas:job:{{{j}}}" for j in ids[k:k + 1000]])
            pipe.execute()
            return times

        def aof_rewrites():
            return S.aof_rewrites()

        def redis_cpu():
            return sum(S.cpu_each())

        def commandstats():
            return S.commandstats()

        def drain(prefix, n, starter):
            """n jobs queued first, then the workers start: throughput = n / (last - first finish)."""
            topics(prefix)
            ids = produce(prefix, n, f"{prefix}drain")
            keys0 = S.dbsize()
            each0, rep0, cs0 = S.cpu_each(), S.replicas_cpu(), commandstats()
            k0 = proc_cpu(kafka_pid())
            ws = starter()
            # Redis's own CPU per job: what the workers made it do, up to the moment every
            # job's record exists (DBSIZE, O(1), polled: the records are new keys), before
            # this script reads anything back
            end = time.time() + 300
            w_first = None  # the workers' CPU when the first records appear, and how many
            while (have := S.dbsize()) < keys0 + n and time.time() < end:
                if w_first is None and have > keys0:
                    w_first = (sum(proc_cpu(w.pid) for w in ws), have - keys0)
                time.sleep(0.02)
            each1, rep1, cs1 = S.cpu_each(), S.replicas_cpu(), commandstats()
            # the workers' CPU per job from the first records on: before them a worker starts,
            # joins the group and loads the model (~0.1 s of CPU, 1 us per job of a 100 000-job
            # drain if counted); and the broker's
            w_end = sum(proc_cpu(w.pid) for w in ws)
            if w_first is None or w_first[1] >= n:
                w_first = (0.0, 0)
            worker_us = (w_end - w_first[0]) / (n - w_first[1]) * 1e6
            broker_us = (proc_cpu(kafka_pid()) - k0) / n * 1e6
            each = [(b - a) / n * 1e6 for a, b in zip(each0, each1)]  # per master
            redis_us = sum(each)
            per_cmd = {c: (v - cs0.get(c, 0)) / n for c, v in cs1.items()}
            per_cmd = {c: u for c, u in per_cmd.items() if u >= 0.05 or c.startswith("calls:")}
            times = wait_all(ids)
            fin = sorted(f for _, f in times)
            span = (fin[-1] - fin[0]) / 1000 if len(fin) > 1 else float("nan")
            for w in ws:
                w.terminate()
                w.wait()
            return (len(times) / span if span > 0 else float("nan"), len(times), redis_us, per_cmd,
                    each, (rep1 - rep0) / n * 1e6, worker_us, broker_us)

        def warm_up(prefix):
            """One job through before the clock starts: the producer's first metadata
            request for a new topic and the worker's first model load (from Redis) are
            one-time costs, not the steady state the latency target is about."""
            ids = produce(prefix, 1, f"{prefix}warm")
            wait_all(ids, timeout=60)

        def latency(prefix, rate, seconds, starter):
            """The jobs of `seconds` at `rate`, after one more second at that rate that is
            not counted: the steady state, not the ramp (the broker's first appends to a
            new partition, the consumer's first fetches)."""
            topics(prefix)
            ws = starter()
            time.sleep(3)  # group join
            warm_up(prefix)
            rw0 = aof_rewrites()
            ids = produce(prefix, int(rate * (seconds + 1)), f"{prefix}lat", rate=rate)
            times = wait_all(ids[int(rate):])
            rewrites = aof_rewrites() - rw0
            for w in ws:
                w.terminate()
                w.wait()
            lat = [f - c for c, f in times]
            return pct(lat, 50), pct(lat, 99), len(lat), rewrites

        def live(prefix, n, starter):
            """Peak while serving: the workers run while n jobs are produced as fast as the
            producer goes, so the machine also carries the load generator and the broker's
            produce side, as it does in the latency runs. Rate = jobs / (last finished -
            first created)."""
            topics(prefix)
            ws = starter()
            time.sleep(3)  # group join
            warm_up(prefix)
            keys0 = S.dbsize()
            cpu0, cs0 = redis_cpu(), commandstats()
            k0, w0 = proc_cpu(kafka_pid()), sum(proc_cpu(w.pid) for w in ws)
            ids = produce(prefix, n, f"{prefix}live")
            end = time.time() + 300
            while S.dbsize() < keys0 + n and time.time() < end:
                time.sleep(0.02)
            cpu1, cs1 = redis_cpu(), commandstats()
            live_cmd[prefix] = ((cpu1 - cpu0) / n * 1e6,
                                {c: (v - cs0.get(c, 0)) / n for c, v in cs1.items()},
                                (sum(proc_cpu(w.pid) for w in ws) - w0) / n * 1e6,
                                (proc_cpu(kafka_pid()) - k0) / n * 1e6)
            times = wait_all(ids)
            for w in ws:
                w.terminate()
                w.wait()
            span = (max(f for _, f in times) - min(c for c, _ in times)) / 1000
            return len(times) / span if span > 0 else float("nan")

        results = {}
        live_cmd = {}
        n = a.jobs
        py = os.path.join(ROOT, "bench/py_worker.py")
        def start_py(prefix, name):
            log = open(os.path.join(logdir, f"{name}.log"), "w")
            w = subprocess.Popen([sys.executable, py, BROKERS, REDIS_URL, f"{prefix}jobs.infer", f"{prefix}py"],
                                 stderr=log, stdout=log)
            procs.append(w)
            return w
        # A fresh broker's JVM spends its first minutes compiling its hot paths: paced at
        # 6-8 k jobs/s it used 100-130% CPU for the first ~500 k messages and 65% after
        # (measured), so the first phases measured the JIT. Jobs through throwaway topics
        # first, not counted: drains, then a paced stream (the latency runs' pattern).
        for i in range(a.warm_rounds):
            drain(f"warm{i}.", n, lambda i=i: [start_worker(f"warm{i}.", f"warm{i}")])
        if a.warm_s > 0:
            latency("warmp.", 5000, a.warm_s, lambda: [start_worker("warmp.", "warmp")])
        # Rounds of maas x1, maas x2, python, one after the other: the machine's speed drifts
        # within minutes (the Python reference alone has ranged 0.8-3.1 k jobs/s in a day), so
        # each round's ratio compares neighbours, and the medians are what is reported.
        rounds = {"maas1": [], "maas2": [], "py1": []}
        for i in range(a.rounds):
            rounds["maas1"].append(drain(f"m1r{i}.", n, lambda i=i: [start_worker(f"m1r{i}.", "m1a")]))
            rounds["maas2"].append(drain(f"m2r{i}.", n, lambda i=i: [start_worker(f"m2r{i}.", "m2a"),
                                                                    start_worker(f"m2r{i}.", "m2b")]))
            rounds["py1"].append(drain(f"p1r{i}.", max(2000, n // 10), lambda i=i: [start_py(f"p1r{i}.", "py1")]))
        for k, v in rounds.items():
            med = statistics.median(x[0] for x in v)
            results[k] = (med, v[0][1], statistics.median(x[2] for x in v))
        ratios = [m[0] / p_[0] for m, p_ in zip(rounds["maas1"], rounds["py1"])]
        def print_drains():
            print(f"end-to-end inference, 1-row jobs of the seed model; Kafka {ENV.get('MAAS_KAFKA_VERSION', '3.9.1')}, "
                  f"Redis on loopback, {os.cpu_count()} cores")
            print(f"{'':34} {'jobs/s':>10} {'vs python':>10}")
            print(f"drain of queued jobs, median of {a.rounds} rounds (each: jobs/s)")
            for k, label in (("maas1", "maas-worker x1"), ("maas2", "maas-worker x2"), ("py1", "python worker x1")):
                print(f"{label:34} {results[k][0]:>10.0f} {results[k][0] / results['py1'][0]:>9.1f}x   "
                      f"({results[k][1]} jobs; CPU per job: Redis {results[k][2]:.1f} us, workers "
                      f"{statistics.median(x[6] for x in rounds[k]):.1f}, broker "
                      f"{statistics.median(x[7] for x in rounds[k]):.1f}; "
                      f"{', '.join(f'{x[0]:.0f}' for x in rounds[k])})")
            cmds = sorted({c for x in rounds["maas1"] for c in x[3] if not c.startswith("calls:")},
                          key=lambda c: -statistics.median(x[3].get(c, 0) for x in rounds["maas1"]))
            print("  Redis CPU per job of maas x1, inside commands (INFO commandstats, medians; the rest "
                  "is reading, replying, the AOF): " +
                  ", ".join(f"{c} {statistics.median(x[3].get(c, 0) for x in rounds['maas1']):.1f} us"
                            for c in cmds))
            print("  calls per job (a batch's records are one script call per node): " +
                  ", ".join(f"{c} {statistics.median(x[3].get('calls:' + c, 0) for x in rounds['maas1']):.3f}"
                            for c in cmds))
            print(f"maas x1 / python within each round: {', '.join(f'{x:.1f}x' for x in ratios)}; "
                  f"median {statistics.median(ratios):.1f}x")
        def cluster_phase(replicas=1):
            """The maas drains again, on a Redis Cluster (the Redis before it stopped first).
            Without replicas the workers wait for none (redis.wait_replicas=0): what is left
            against single Redis is the routing - a batch split per master, a connection each."""
            nonlocal S
            sh(os.path.join(ROOT, "deploy/local/redis.sh"), "stop", stderr=subprocess.DEVNULL)
            ENV.update(MAAS_REDIS_CLUSTER="1", MAAS_REDIS_BUS_OFFSET="2000",
                       MAAS_REDIS_REPLICAS=str(replicas))
            shutil.rmtree(os.path.join(ENV["MAAS_STATE_DIR"], "redis"), ignore_errors=True)
            sh(os.path.join(ROOT, "deploy/local/redis.sh"), "start", stderr=subprocess.DEVNULL)
            S = Store(cluster=True, replicas=replicas)
            wx = () if replicas else ("-X", "redis.wait_replicas=0")
            layout = f"3 masters + {3 * replicas} replicas" if replicas else "3 masters, no replicas"
            tag = "c" if replicas else "n"
            # a model for the workers: the single Redis's copy is gone with it
            for k, v in model_keys.items():
                S.r.restore(k, 0, v, replace=True)
            cr = {"maas1": [], "maas2": []}
            for i in range(a.rounds):
                cr["maas1"].append(drain(f"{tag}1r{i}.", n, lambda i=i: [start_worker(f"{tag}1r{i}.", f"{tag}1a", *wx)]))
                cr["maas2"].append(drain(f"{tag}2r{i}.", n, lambda i=i: [start_worker(f"{tag}2r{i}.", f"{tag}2a", *wx),
                                                                       start_worker(f"{tag}2r{i}.", f"{tag}2b", *wx)]))
            clive = float("nan") if a.drain_only else live(f"{tag}v1.", n, lambda: [start_worker(f"{tag}v1.", f"{tag}v1a", *wx)])
            clat = latency(f"{tag}lf.", a.latency_rate, 10, lambda: [start_worker(f"{tag}lf.", f"{tag}lfa", *wx)]) \
                if a.latency_rate > 0 and not a.drain_only and replicas else None
            print(f"Redis Cluster, {layout} (redis-server {redis_version}, the same machine), "
                  f"median of {a.rounds} rounds:")
            for k, label in (("maas1", "maas-worker x1"), ("maas2", "maas-worker x2")):
                v = cr[k]
                med = statistics.median(x[0] for x in v)
                us = statistics.median(x[2] for x in v)
                shares = [statistics.median(x[4][m] / x[2] for x in v) for m in range(len(v[0][4]))]
                print(f"{label:34} {med:>10.0f} {med / results[k][0]:>9.2f}x of single Redis   "
                      f"(Redis CPU {us:.1f} us/job over the masters, single Redis {results[k][2]:.1f}; "
                      f"workers {statistics.median(x[6] for x in v):.1f}, broker {statistics.median(x[7] for x in v):.1f}; "
                      f"shares per master {', '.join(f'{x:.0%}' for x in shares)}; replicas "
                      f"{statistics.median(x[5] for x in v):.1f} us/job; {', '.join(f'{x[0]:.0f}' for x in v)})")
            v = cr["maas1"]
            print("  inside commands, maas x1, over the masters: " +
                  ", ".join(f"{c} {statistics.median(x[3].get(c, 0) for x in v):.1f} us"
                            for c in sorted({c for x in v for c in x[3] if not c.startswith("calls:")},
                                            key=lambda c: -statistics.median(x[3].get(c, 0) for x in v))))
            if not a.drain_only:
                print(f"live peak on the cluster, maas x1: {clive:.0f} jobs/s ({clive / live1:.2f}x of single Redis)")
                us, _, wus, kus = live_cmd[f"{tag}v1."]
                print(f"  CPU per job while serving on the cluster: worker {wus:.1f} us, broker {kus:.1f} us, "
                      f"Redis {us:.1f} us over the masters")
            if clat:
                print(f"latency at a fixed rate on the cluster, maas x1: p50 {clat[0]} ms, p99 {clat[1]} ms "
                      f"({clat[2]} jobs at {a.latency_rate:.0f}/s)")

        if a.drain_only:
            print_drains()
            if a.redis_cluster:
                cluster_phase()
                cluster_phase(replicas=0)
            return
        # "half of peak" = half of the live peak: the drain peak is measured with the machine
        # to the workers alone, and half of it can be most of what is left to them while a
        # load generator runs (it was, on 2 cores)
        live1 = live("v1.", n, lambda: [start_worker("v1.", "v1a")])
        live_py = live("vp.", max(2000, n // 10), lambda: [start_py("vp.", "vpy")])
        peak1 = live1
        lat1 = latency("l1.", peak1 / 2, 5, lambda: [start_worker("l1.", "l1a")])
        lat_fixed = latency("lf.", a.latency_rate, 10, lambda: [start_worker("lf.", "lfa")]) \
            if a.latency_rate > 0 else None
        sweep = []
        for i, t in enumerate(v for v in a.wait_sweep.split(",") if v.strip()):
            pre = f"ws{i}."
            sweep.append((int(t), latency(pre, peak1 / 2, 5,
                                          lambda pre=pre, t=t: [start_worker(pre, f"ws{i}", "--batch-wait-ms", t.strip())])))
        lat_py = latency("lp.", live_py / 2, 5, lambda: [start_py("lp.", "lpy")])

        print_drains()
        print(f"live peak (produced while served):  maas x1 {live1:.0f} jobs/s, python {live_py:.0f} jobs/s "
              f"({live1 / live_py:.1f}x)")
        us, cmd, wus, kus = live_cmd["v1."]
        print(f"  CPU per job while serving, maas x1: worker {wus:.1f} us, broker (produce and fetch) "
              f"{kus:.1f} us, Redis {us:.1f} us, inside Redis's commands: " +
              ", ".join(f"{c} {u:.1f} us" for c, u in sorted(cmd.items(), key=lambda x: -x[1])
                        if u >= 0.05 and not c.startswith("calls:")) +
              "; calls per job: " +
              ", ".join(f"{c[6:]} {u:.3f}" for c, u in sorted(cmd.items())
                        if c.startswith("calls:") and cmd.get(c[6:], 0) >= 0.05))
        def overlap(l):
            return f"; {l[3]} AOF rewrite(s) during it" if l[3] else ""
        print(f"latency at half of live peak, maas x1:  p50 {lat1[0]} ms, p99 {lat1[1]} ms ({lat1[2]} jobs at {peak1 / 2:.0f}/s{overlap(lat1)})")
        if lat_fixed:
            print(f"latency at a fixed rate, maas x1: p50 {lat_fixed[0]} ms, p99 {lat_fixed[1]} ms "
                  f"({lat_fixed[2]} jobs at {a.latency_rate:.0f}/s{overlap(lat_fixed)})")
        for t, (p50, p99, n_, _) in sweep:
            print(f"  --batch-wait-ms {t}: p50 {p50} ms, p99 {p99} ms ({n_} jobs at {peak1 / 2:.0f}/s)")
        print(f"latency at half of live peak, python:   p50 {lat_py[0]} ms, p99 {lat_py[1]} ms ({lat_py[2]} jobs at {live_py / 2:.0f}/s{overlap(lat_py)})")
        print(f"maas-worker RSS: {rss_idle / 1024:.1f} MB idle (fresh), {rss / 1024:.1f} MB idle after a "
              f"training job; start to ready (before the group join): {ready} ms")
        if a.redis_cluster:
            cluster_phase()
            cluster_phase(replicas=0)
    finally:
        for w in procs:
            if w.poll() is None:
                w.terminate()
                try:
                    w.wait(10)
                except subprocess.TimeoutExpired:
                    w.kill()
        sh(os.path.join(ROOT, "deploy/local/kafka.sh"), "stop", stderr=subprocess.DEVNULL)
        sh(os.path.join(ROOT, "deploy/local/redis.sh"), "stop", stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
