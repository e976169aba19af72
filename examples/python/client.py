#!/usr/bin/python3
"""A maas client in plain Python: no maas code, just the protocol (schemas/protocol.md).

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
import csv
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


def matrix(rows):
    """A float32 matrix as the protocol sends it: shape + little-endian bytes."""
    flat = [v for row in rows for v in row]
    return {"shape": [len(rows), len(rows[0])], "dtype": "float32",
            "data": struct.pack(f"<{len(flat)}f", *flat)}


def submit(topic, job):
    # notify: the final state also goes onto the job's done-list, which wait() blocks on
    job = {"v": 1, "id": uuid.uuid4().hex, "created_ms": int(time.time() * 1000), "notify": True, **job}
    producer.produce(prefix + topic, key=job["id"], value=msgpack.packb(job))
    return job["id"]


def wait(job_id, timeout=60):
    """Blocks on the job's done-list (no polling), then reads its record."""
    done = f"{keys}job:{{{job_id}}}:done"
    state = r.blmove(done, done, timeout, "RIGHT", "LEFT")
    record = r.hgetall(f"{keys}job:{{{job_id}}}")
    if state != b"succeeded":
        raise SystemExit(f"job {job_id}: {state} {record.get(b'error_code')} {record.get(b'error_message')}")
    return msgpack.unpackb(record[b"result"])


path = sys.argv[1] if len(sys.argv) > 1 else "examples/data/pima-indians-diabetes.csv"
rows = [[float(v) for v in row] for row in list(csv.reader(open(path)))[1:]]
train, test = rows[:614], rows[614:]
model = f"pima-py-{uuid.uuid4().hex[:6]}"

job = submit("jobs.work", {
    "type": "train", "model": model,
    "layers": [{"units": 10, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
    "loss": "binary_crossentropy", "optimizer": {"name": "adam", "learning_rate": 0.001},
    "epochs": 10, "batch_size": 32, "standardize": True, "seed": 7,
    "data": {"x": matrix([row[:8] for row in train]), "y": matrix([row[8:] for row in train])}})
producer.flush()
result = wait(job)
print(f"trained {model} version {result['version']}: loss {result['loss']:.4f}, "
      f"accuracy {result['accuracy']:.4f}")

# One inference job per held-out row, all in flight at once; the workers batch them.
jobs = [submit("jobs.infer", {"type": "infer", "model": f"{model}:{result['version']}",
                              "inputs": [row[:8]], "output": "classes"}) for row in test]
producer.flush()
answers = [wait(j)["classes"][0] for j in jobs]
hits = sum(a == int(row[8]) for a, row in zip(answers, test))
print(f"{len(jobs)} inference jobs: accuracy {hits / len(jobs):.4f}; first five classes {answers[:5]}")
