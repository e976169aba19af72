#!/usr/bin/python3
"""What writing one job's record costs Redis, against the floor (issue 19's per-job target).

Starts a private redis-server (127.0.0.1:27479, AOF everysec and hash-max-listpack-value 256
as deploy/local runs it, state in .local/bench-record, wiped first) and writes N one-row
inference records in pipelines of 64, as a worker's result batch does, in several ways; for
each, Redis's own CPU per record (INFO cpu) and the time inside each command (INFO
commandstats), medians over --rounds rounds (the variants alternate within a round):

  batch      the transition script maas runs (common/src/kv/lua/job_transition.lua, its hot
             path: the worker's whole JSON record stored with SET NX EX, its event published),
             with the worker's arguments, one call for the 64 jobs of a pipeline (as a worker
             sends a result batch to one Redis)
  script     the same script called once per job (how workers sent batches until 2026-12-03)
  set+pub    the same record with a plain SET NX EX and a PUBLISH, pipelined, no script: the
             floor for this record, made only if absent, with its TTL and its event
  hset       the same 14 fields as a hash (how records were kept until 2026-12-04) with a
             plain HSET and an EXPIRE: no state check, no binding, no event
  hset+pub   the same and a PUBLISH on the job's events channel
  evalsha0   EVALSHA of a script that only returns 1, with the hot path's arguments: what
             calling a script costs before it does anything

--batch N sets the pipeline (and the batch call) to N jobs instead of 64: a call's own cost is
shared by its jobs (a worker's batch is one call per Redis master, so on 3 masters each call
has a third of the batch). --cluster runs the private Redis as a one-node Redis Cluster holding
every slot, and sends what the adapter sends to a cluster: the batch's keys undeclared (each
after its form), events with SPUBLISH: what cluster mode itself costs Redis per job, apart from
several processes sharing the cores.

usage: /usr/bin/python3 bench/bench_redis_record.py [--records N] [--rounds R] [--batch N]
       [--cluster]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import time

import base64
import json

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 27479
RESULT = (b"\x81\xa7outputs\x83\xa5shape\x92\x01\x01\xa5dtype\xa7float32\xa4data\xc4\x04"
          b"\x00\x00\x80?" + b"\x00" * 30)  # ~80 bytes, as a one-row result
# a one-row inference job's cost field, as a worker writes it (README, "What each job cost")
COST = ('{"cpu_s": 3.0786e-05, "queue_s": 5.068, "compute_s": 3.3359e-05, "flops": 180, '
        '"peak_bytes": 40, "energy_j": 0.000184716, "watts_per_core": 6, "energy_method": "model"}')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=40000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="jobs per pipeline and per batch call")
    ap.add_argument("--cluster", action="store_true",
                    help="a one-node Redis Cluster (every slot), sent to as the adapter does")
    a = ap.parse_args()
    B = a.batch
    pub = "SPUBLISH" if a.cluster else "PUBLISH"
    state = os.path.join(ROOT, ".local/bench-record")
    shutil.rmtree(state, ignore_errors=True)
    os.makedirs(state)
    srv = subprocess.Popen(["redis-server", "--port", str(PORT), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                            "--hash-max-listpack-value", "256", "--dir", state,
                            *(["--cluster-enabled", "yes", "--cluster-config-file",
                               os.path.join(state, "nodes.conf")] if a.cluster else [])],
                           stdout=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=PORT)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        if a.cluster:  # one node with every slot
            r.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            for _ in range(100):
                if b"cluster_state:ok" in r.execute_command("CLUSTER", "INFO"):
                    break
                time.sleep(0.05)
        with open(os.path.join(ROOT, "common/src/kv/lua/job_transition.lua")) as f:
            text = f.read()  # on a cluster the adapter loads it with SPUBLISH (cmake/embed_lua.cmake)
            script = r.script_load(text.replace("'PUBLISH'", "'SPUBLISH'") if a.cluster else text)
        ret1 = r.script_load("return 1")
        version = r.info("server")["redis_version"]

        def cpu():
            i = r.info("cpu")
            return float(i["used_cpu_user"]) + float(i["used_cpu_sys"])

        def fields(jid, now):
            return {"id": jid, "type": "infer", "model": "pima", "created_ms": now - 5,
                    "deadline_ms": 0, "ttl_s": 604800, "state": "succeeded", "attempts": 1,
                    "worker": "w1", "started_ms": now - 1, "finished_ms": now,
                    "result": RESULT, "digest": "d" * 64, "cost": COST}

        def record(jid, now):  # the record as a worker writes it (common/src/kv/record.c)
            f = fields(jid, now)
            f["result"], f["cost"] = base64.b64encode(RESULT).decode(), json.loads(COST)
            return json.dumps(f, separators=(",", ":"))

        def script_args(jid, now):  # lua/job_transition.lua's hot form, a worker's result
            return ["h", 6, 604800, "0", record(jid, now)]

        def run(kind, tag):
            r.flushall()
            r.config_resetstat()
            time.sleep(0.2)
            now = int(time.time() * 1000)
            c0 = cpu()
            for b in range(0, a.records, B):
                p = r.pipeline(transaction=False)
                if kind == "batch":
                    ids = [f"{tag}-{j}" for j in range(b, min(b + B, a.records))]
                    keys = [f"maas:job:{{{jid}}}" for jid in ids]
                    if a.cluster:  # undeclared: each job's key after its form
                        p.evalsha(script, 0, *[x for jid, k in zip(ids, keys)
                                               for x in [script_args(jid, now)[0], k,
                                                         *script_args(jid, now)[1:]]])
                    else:
                        p.evalsha(script, len(keys), *keys,
                                  *[x for jid in ids for x in script_args(jid, now)])
                    p.execute()
                    continue
                for j in range(b, min(b + B, a.records)):
                    jid = f"{tag}-{j}"
                    k = f"maas:job:{{{jid}}}"
                    if kind in ("script", "evalsha0"):
                        p.evalsha(script if kind == "script" else ret1, 1, k, *script_args(jid, now))
                    elif kind == "set+pub":
                        p.set(k, record(jid, now), nx=True, ex=604800)
                        p.execute_command(pub, k + ":events", "succeeded")
                    else:
                        p.hset(k, mapping=fields(jid, now))
                        p.expire(k, 604800)
                        if kind == "hset+pub":
                            p.execute_command(pub, k + ":events", "succeeded")
                p.execute()
            us = (cpu() - c0) / a.records * 1e6
            if kind in ("batch", "script", "set+pub"):
                last = json.loads(r.get(f"maas:job:{{{tag}-{a.records - 1}}}"))
                assert last["state"] == "succeeded" and r.ttl(f"maas:job:{{{tag}-0}}") > 0
            elif kind != "evalsha0":
                assert r.hget(f"maas:job:{{{tag}-{a.records - 1}}}", "state") == b"succeeded"
            cmds = {k[len("cmdstat_"):]: v["usec"] / a.records
                    for k, v in r.info("commandstats").items()
                    if k not in ("cmdstat_flushall", "cmdstat_config|resetstat")}
            return us, cmds

        kinds = ["batch", "script", "set+pub", "hset", "hset+pub", "evalsha0"]
        got = {k: [] for k in kinds}
        for i in range(a.rounds):
            for k in kinds:
                got[k].append(run(k, f"{k}{i}"))
        print(f"Redis CPU per one-row inference record, pipelines of {B}, {a.records} records, "
              f"median of {a.rounds} rounds (redis-server {version}, AOF everysec"
              f"{', a one-node cluster' if a.cluster else ''})")
        for k in kinds:
            us = statistics.median(x[0] for x in got[k])
            names = sorted({c for x in got[k] for c in x[1]})
            inside = ", ".join(f"{c} {statistics.median(x[1].get(c, 0) for x in got[k]):.1f}"
                               for c in names if statistics.median(x[1].get(c, 0) for x in got[k]) >= 0.05)
            print(f"  {k:9} {us:6.1f} us  ({', '.join(f'{x[0]:.1f}' for x in got[k])}; inside "
                  f"commands: {inside})")
        h = statistics.median(x[0] for x in got["set+pub"])
        for k in ("batch", "script"):
            s = statistics.median(x[0] for x in got[k])
            print(f"{k}: {s / h:.2f}x the floor (plain SET NX EX + PUBLISH of the same record)")
    finally:
        srv.terminate()
        srv.wait(10)


if __name__ == "__main__":
    main()
