#!/usr/bin/python3
"""A maas client in plain Python: no maas code, just the protocol (schemas/protocol.md),
following its "Writing a client" steps in order (the step numbers below are its).

It trains the seed model (Pima diabetes, Dense(10, relu) -> Dense(1, sigmoid)) by putting a
train job on Kafka, waits for the version in Redis, then sends the held-out rows as inference
jobs and scores the answers. Libraries: confluent-kafka, redis-py and msgpack, all Debian
packages (run it with /usr/bin/python3).

  /usr/bin/python3 examples/python/client.py [PIMA_CSV]
Environment: MAAS_KAFKA_BROKERS (127.0.0.1:19092), MAAS_REDIS_URL (redis://127.0.0.1:16379),
MAAS_TOPIC_PREFIX (maas.), and MAAS_CLIENT_CONF: a tenant's client settings as
`maas tenant create T --client-conf FILE` writes them (the local stack's:
.local/state/credentials/demo.conf) - its Kafka login (SASL SCRAM), its topics, its Redis
user and key prefix. Without it: the single-tenant namespace, no credentials.
"""
import base64
import csv
import json
import os
import struct
import sys
import time
import uuid

import msgpack
import redis
from confluent_kafka import Producer

brokers = os.environ.get("MAAS_KAFKA_BROKERS", "127.0.0.1:19092")
prefix = os.environ.get("MAAS_TOPIC_PREFIX", "maas.")  # topics
keys = "maas:"  # Redis keys
kafka_conf = {"bootstrap.servers": brokers, "enable.idempotence": True}
login = {}
# 1. Log in
if os.environ.get("MAAS_CLIENT_CONF"):  # a tenant: its credentials, topics and key prefix
    conf = dict(line.split("=", 1) for line in open(os.environ["MAAS_CLIENT_CONF"]).read().splitlines()
                if "=" in line and not line.startswith("#"))
    kafka_conf.update({k[6:]: v for k, v in conf.items() if k.startswith("kafka.") and k != "kafka.topics"})
    # (an operator's settings, e.g. the local stack's maas.conf, name no topics or prefix)
    if "kafka.topics" in conf:
        prefix = conf["kafka.topics"].split(",")[0].removesuffix("jobs.infer")  # maas.t.T.
    keys = conf.get("redis.prefix", keys)  # maas:t:T:
    if "redis.user" in conf:
        login = {"username": conf["redis.user"], "password": conf["redis.password"]}
r = redis.Redis.from_url(os.environ.get("MAAS_REDIS_URL", "redis://127.0.0.1:16379"), **login)
producer = Producer(kafka_conf)
for topic in ("jobs.work", "jobs.infer"):  # librdkafka 2.0: look each topic up once, or its
    producer.list_topics(prefix + topic, timeout=10)  # first message waits ~1 s (step 3)


def matrix(rows):
    """A float32 matrix as the protocol sends it: shape + little-endian bytes."""
    flat = [v for row in rows for v in row]
    return {"shape": [len(rows), len(rows[0])], "dtype": "float32",
            "data": struct.pack(f"<{len(flat)}f", *flat)}


def submit(topic, job, wait_s=60):
    """3. Produce: a fresh id (the key too), created_ms for queue time, a deadline so that a job
    still waiting in Kafka then is never computed, notify for the done-list wait() blocks on."""
    now = int(time.time() * 1000)
    job = {"v": 1, "id": uuid.uuid4().hex, "created_ms": now, "deadline_ms": now + wait_s * 1000,
           "notify": True, **job}
    producer.produce(prefix + topic, key=job["id"], value=msgpack.packb(job))
    return job["id"]


def wait(job_id, timeout=70):
    """4. Wait on the job's done-list (no polling), 5. read its record: one JSON object, its
    result the base64 of msgpack bytes."""
    done = f"{keys}job:{{{job_id}}}:done"
    state = r.blmove(done, done, timeout, "RIGHT", "LEFT")
    raw = r.get(f"{keys}job:{{{job_id}}}")
    if not raw:  # missing: no worker took it (past its deadline it never will), or unknown
        raise SystemExit(f"job {job_id}: no record after {timeout} s: no worker took it")
    record = json.loads(raw)
    if state != b"succeeded":
        raise SystemExit(f"job {job_id}: {record['state']} {record.get('error_code')} "
                         f"{record.get('error_message')}")
    record["result"] = msgpack.unpackb(base64.b64decode(record["result"]))
    return record


path = sys.argv[1] if len(sys.argv) > 1 else "examples/data/pima-indians-diabetes.csv"
rows = [[float(v) for v in row] for row in list(csv.reader(open(path)))[1:]]
train, test = rows[:614], rows[614:]
model = f"pima-py-{uuid.uuid4().hex[:6]}"

# 2. Big data first: 614 rows are ~20 KB, inline is fine (PUT /v1/datasets/NAME for more)
job = submit("jobs.work", {
    "type": "train", "model": model,
    "layers": [{"units": 10, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
    "loss": "binary_crossentropy", "optimizer": {"name": "adam", "learning_rate": 0.001},
    "epochs": 10, "batch_size": 32, "standardize": True, "seed": 7,
    "data": {"x": matrix([row[:8] for row in train]), "y": matrix([row[8:] for row in train])}})
producer.flush()  # the delivery reports: every job is on the broker
record = wait(job)
result = record["result"]
print(f"trained {model} version {result['version']}: loss {result['loss']:.4f}, "
      f"accuracy {result['accuracy']:.4f}")

# One inference job per held-out row, all in flight at once; the workers batch them.
jobs = [submit("jobs.infer", {"type": "infer", "model": f"{model}:{result['version']}",
                              "inputs": [row[:8]], "output": "classes"}) for row in test]
producer.flush()
records = [wait(j) for j in jobs]
answers = [rec["result"]["classes"][0] for rec in records]
hits = sum(a == int(row[8]) for a, row in zip(answers, test))
print(f"{len(jobs)} inference jobs: accuracy {hits / len(jobs):.4f}; first five classes {answers[:5]}")
# 6. Time it: queue = started_ms - created_ms, compute and write = finished_ms - started_ms
queue = sorted(rec["started_ms"] - rec["created_ms"] for rec in records)
print(f"queue time: median {queue[len(queue) // 2]} ms, max {queue[-1]} ms")
