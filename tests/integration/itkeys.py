"""What the integration tests share about API keys (the coordinator runs with authentication
on, as everywhere)."""
import os
import subprocess


def operator_key(bin_dir, work_dir, name="admin.key"):
    """A new operator's API key (maas tenant admin-key: read, submit, admin), through a 0600
    file in work_dir, never argv; the CLI reaches Redis through MAAS_REDIS_URL."""
    path = os.path.join(work_dir, name)
    subprocess.run([os.path.join(bin_dir, "maas"), "tenant", "admin-key", "--key-file", path],
                   check=True, capture_output=True)
    with open(path) as f:
        return f.read().strip()


def service_conf(path=None):
    """The services' login the fixture made (MAAS_CONFIG: kafka.* and redis.* lines), as a
    dict; empty when the services run without authentication."""
    path = path or os.environ.get("MAAS_CONFIG")
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        return dict(ln.split("=", 1) for ln in f.read().splitlines() if "=" in ln and not ln.startswith("#"))


def kafka_conf(brokers, **extra):
    """A confluent-kafka configuration for the fixture's broker, with its SASL login if any."""
    conf = {"bootstrap.servers": brokers}
    conf.update({k[6:]: v for k, v in service_conf().items() if k.startswith("kafka.")})
    conf.update({k.replace("_", "."): v for k, v in extra.items()})
    return conf


def redis_login():
    """redis-py keyword arguments for the fixture's Redis login (none without ACLs)."""
    c = service_conf()
    return {"username": c["redis.user"], "password": c["redis.password"]} if "redis.user" in c else {}


def kafka_only_conf(work_dir):
    """A MAAS_CONFIG file with only the Kafka login, for programs the test points at a Redis of
    its own (open): written to work_dir, 0600; None when there is no Kafka login."""
    lines = [f"{k}={v}" for k, v in service_conf().items() if k.startswith("kafka.")]
    if not lines:
        return None
    path = os.path.join(work_dir, "kafka-only.conf")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def api_call(api, method, path, body=None, key=None, headers=None, raw=False, timeout=30):
    """One HTTP API request: body a dict (sent as JSON) or bytes; with key, its Bearer header.
    Returns (status, JSON reply) - or the raw bytes with raw - for 2xx and 4xx/5xx alike."""
    import json
    import urllib.error
    import urllib.request
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    h = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    req = urllib.request.Request(api + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            out = r.read()
            return r.status, out if raw else json.loads(out)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_healthz(api, seconds=10):
    """Until the coordinator at api answers /healthz 200 (it is starting); True if it did."""
    import time
    end = time.time() + seconds
    while time.time() < end:
        try:
            if api_call(api, "GET", "/healthz")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def redis_client(url=None, **extra):
    """A redis-py client for MAAS_REDIS_URL: redis:// as the services' user; for a Redis
    Cluster (redis+cluster://host:port,...) redis-py's cluster client, as the fixture's admin
    (it runs INFO, beyond the services' user; the password sits beside the login file)."""
    import redis
    url = url or os.environ.get("MAAS_REDIS_URL", "redis://127.0.0.1:26379")
    if not url.startswith("redis+cluster://"):
        return redis.Redis.from_url(url, **redis_login(), **extra)
    from redis.cluster import ClusterNode, RedisCluster
    login = redis_login()
    conf = os.environ.get("MAAS_CONFIG")
    if login and conf:
        with open(os.path.join(os.path.dirname(conf), "redis-admin.pass")) as f:
            login = {"username": "admin", "password": f.read().strip()}
    seeds = [h.rsplit(":", 1) for h in url.split("://", 1)[1].split("@")[-1].split(",")]
    return RedisCluster(startup_nodes=[ClusterNode(h, int(p)) for h, p in seeds], **login, **extra)


class EventsSubscriber:
    """A job's events channel as a client subscribes to it (schemas/redis-keys.md): SUBSCRIBE
    on one Redis; on a Redis Cluster the events are sharded pub/sub, so SSUBSCRIBE on the
    node serving the channel's slot (redis-py 4.3 has no sharded pub/sub: a connection of
    its own, read raw). get_message(timeout) -> the payload (bytes) of the next message,
    or None."""

    def __init__(self, client, channel):
        import redis
        self.sharded = not isinstance(client, redis.Redis)
        if not self.sharded:
            self.ps = client.pubsub()
            self.ps.subscribe(channel)
            return
        node = client.get_node_from_key(channel)
        kw = node.redis_connection.connection_pool.connection_kwargs
        self.conn = redis.Redis(host=node.host, port=node.port, username=kw.get("username"),
                                password=kw.get("password")).connection_pool.get_connection("_")
        self.conn.send_command("SSUBSCRIBE", channel)
        kind = self.conn.read_response()[0]
        assert kind == b"ssubscribe", kind

    def get_message(self, timeout=1.0):
        if not self.sharded:
            m = self.ps.get_message(timeout=timeout)
            return m["data"] if m and m["type"] == "message" else None
        if not self.conn.can_read(timeout=timeout):
            return None
        r = self.conn.read_response()
        return r[2] if r and r[0] == b"smessage" else None


def clean_exit(p, allowed=(0,)):
    """Whether process p (a subprocess.Popen given .log_path by its test) ended as allowed - or
    with 1 from a sanitizer build whose LeakSanitizer crashed itself while stopping the
    process's threads at exit ("Tracer caught signal", seen once in CI with oneDNN loaded),
    with no leak and no ASan error in the log: a failure of the sanitizer's runtime, said in
    the output, not of the program."""
    if p.returncode in allowed:
        return True
    log = getattr(p, "log_path", None)
    if p.returncode != 1 or not log:
        return False
    with open(log, errors="replace") as f:
        text = f.read()
    if ("LeakSanitizer has encountered a fatal error" in text and "Tracer caught signal" in text
            and "detected memory leaks" not in text and "ERROR: AddressSanitizer" not in text):
        print(f"NOTE {os.path.basename(log)}: exit 1 from LeakSanitizer's own crash at exit "
              "(its tracer, stopping the threads); no leak reported", flush=True)
        return True
    return False


def job_record(r, jid, keys="maas:"):
    """Job jid's record as Redis holds it (one JSON object; schemas/redis-keys.md), as a dict
    with its result base64-decoded to bytes; {} when there is none. r: a redis-py client
    (or pipeline reply: pass the GET's bytes as r and jid=None)."""
    import base64
    import json
    raw = r if jid is None else r.get(f"{keys}job:{{{jid}}}")
    if raw is None:
        return {}
    rec = json.loads(raw)
    if "result" in rec:
        rec["result"] = base64.b64decode(rec["result"])
    return rec


def job_state(r, jid, keys="maas:"):
    """Job jid's state as bytes, as redis-py answers (b'queued', ...; None: no record)."""
    st = job_record(r, jid, keys).get("state")
    return st.encode() if st is not None else None


def job_fields(r, jid, keys="maas:"):
    """Job jid's record with each field as bytes, as the tests compare them (b'succeeded',
    b'1'; result: its msgpack bytes; progress and cost: their JSON); {} when none."""
    import json
    out = {}
    for k, v in job_record(r, jid, keys).items():
        if isinstance(v, (dict, list)):
            v = json.dumps(v)
        out[k] = v if isinstance(v, bytes) else str(v).encode()
    return out


def job_patch(r, jid, keys="maas:", **fields):
    """Sets fields of job jid's record (made when there is none), keeping its TTL - what a
    test does to stage a record by hand."""
    import json
    key = f"{keys}job:{{{jid}}}"
    raw = r.get(key)
    rec = json.loads(raw) if raw else {}
    rec.update(fields)
    r.set(key, json.dumps(rec), keepttl=True)
