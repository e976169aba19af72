#!/usr/bin/python3
"""maas-coordinator's HTTP API against real Kafka, Redis and workers (services fixture):
train -> wait -> version 1 -> alias -> predict by alias -> download the h5 -> the file
predicts the same locally; bad requests get a 4xx naming the problem; unknown, pending and
finished and expired jobs told apart; Idempotency-Key honoured; an optimize job makes an int8
version 2 naming version 1, downloaded as a float Keras file; /healthz and /metrics; the
server's bounds (issue 16): a body over --max-body-mb is refused from its Content-Length
before it is read (peak RSS flat), connections per client are capped, the requests share a
bounded pool of Redis connections.
usage: test_http_api.py BIN_DIR PIMA_CSV WORKDIR   (env MAAS_KAFKA_BROKERS, MAAS_REDIS_URL)
"""
import base64
import csv
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

from itkeys import clean_exit, wait_healthz, operator_key

BIN, PIMA, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
BROKERS = os.environ.get("MAAS_KAFKA_BROKERS", "127.0.0.1:29092")
REDIS_URL = os.environ.get("MAAS_REDIS_URL", "redis://127.0.0.1:26379")
PORT = 29180
API = f"http://127.0.0.1:{PORT}"
os.makedirs(WORK, exist_ok=True)
RUN = uuid.uuid4().hex[:8]
failures, procs = [], []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def call(method, path, body=None, headers=None, raw=False):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    h = {"Authorization": f"Bearer {KEY}", **(headers or {})}
    req = urllib.request.Request(API + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            out = r.read()
            return r.status, out if raw else json.loads(out)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def spawn(name, *args):
    log = open(os.path.join(WORK, f"{name}.log"), "w")
    p = subprocess.Popen([os.path.join(BIN, name), *args], stdout=log, stderr=log)
    p.log_path = log.name
    procs.append(p)
    return p


KEY = operator_key(BIN, WORK)
rows = [[float(v) for v in r] for r in list(csv.reader(open(PIMA)))[1:]]
train, test = rows[:614], rows[614:]
try:
    coord = spawn("maas-coordinator", "--http", f"127.0.0.1:{PORT}", "--brokers", BROKERS, "--redis", REDIS_URL,
                  "--max-body-mb", "4", "--max-connections-per-client", "8", "--redis-pool", "4")
    wait_healthz(API)
    st, h = call("GET", "/healthz")
    check(st == 200 and h["kafka"] and h["redis"], f"/healthz {st} {h}")

    # a pending job: no worker yet
    model = f"http{RUN}"
    st, sub = call("POST", "/v1/jobs", {
        "type": "train", "model": model,
        "layers": [{"units": 10, "activation": "relu"}, {"units": 1, "activation": "sigmoid"}],
        "loss": "binary_crossentropy", "epochs": 10, "batch_size": 32, "standardize": True, "seed": 7,
        "data": {"x": [r[:8] for r in train], "y": [r[8:] for r in train]}})
    check(st == 202 and sub["state"] == "queued", f"POST /v1/jobs -> 202 queued ({st} {sub})")
    jid = sub["id"]
    st, j = call("GET", f"/v1/jobs/{jid}")
    check(st == 200 and j["state"] == "queued", f"a pending job says queued ({j['state']})")
    st, j = call("GET", f"/v1/jobs/nope-{RUN}")
    check(st == 404 and j["error"]["code"] == "UNKNOWN_JOB", f"an unknown job is 404 ({j})")

    spawn("maas-worker", "--id", f"http-w{RUN}", "--brokers", BROKERS, "--redis", REDIS_URL,
          "-X", "kafka.session.timeout.ms=6000")
    end = time.time() + 60
    while time.time() < end and call("GET", f"/v1/jobs/{jid}")[1]["state"] != "succeeded":
        time.sleep(0.1)
    st, j = call("GET", f"/v1/jobs/{jid}")
    check(j["state"] == "succeeded" and j["result"]["version"] == 1 and len(j["result"]["history"]) == 10,
          f"the training job made version 1 ({j['state']}, {j.get('result', {}).get('version')})")
    # its cost: 10 epochs of the rows (8 -> 10 -> 1: 380 operations per training row)
    c = j.get("cost", {})
    check(c.get("flops") == 10 * len(train) * 380 and c.get("cpu_s", 0) > 0
          and c.get("energy_method") in ("model", "rapl") and c.get("peak_bytes", 0) > 0,
          f"the job's record says what it cost ({c})")

    st, a = call("PUT", f"/v1/models/{model}/aliases/production", {"version": 1})
    check(st == 200 and a["version"] == 1, "PUT alias")
    st, a = call("PUT", f"/v1/models/{model}/aliases/production", {"version": 1, "expect": 7})
    check(st == 409 and a["error"]["code"] == "CONFLICT", f"a stale compare-and-set is 409 ({st})")
    st, a = call("PUT", f"/v1/models/{model}/aliases/production", {"version": 9})
    check(st == 404, f"an alias to a missing version is 404 ({st} {a})")

    ten = [r[:8] for r in test[:10]]
    st, p = call("POST", f"/v1/models/{model}:predict", {"inputs": ten, "alias": "production", "output": "classes"})
    check(st == 200 and p["version"] == 1 and len(p["outputs"]) == 10 and len(p["classes"]) == 10,
          f"synchronous predict by alias ({st})")
    st, h5 = call("GET", f"/v1/models/{model}/versions/production/h5", raw=True)
    check(st == 200 and h5[:4] == b"\x89HDF", "GET .../h5 returns the model file")
    with open(os.path.join(WORK, "model.h5"), "wb") as f:
        f.write(h5)
    with open(os.path.join(WORK, "ten.csv"), "w") as f:
        f.write(",".join(f"f{i}" for i in range(8)) + "\n")
        for r in ten:
            f.write(",".join(repr(v) for v in r) + "\n")
    local = subprocess.run([os.path.join(BIN, "maas"), "predict", "-m", os.path.join(WORK, "model.h5"),
                            "--data", os.path.join(WORK, "ten.csv")], capture_output=True, text=True)
    lv = [float(x) for x in local.stdout.split()]
    check(len(lv) == 10 and all(abs(a[0] - b) <= 1e-6 * max(1, abs(b)) for a, b in zip(p["outputs"], lv)),
          "the downloaded file predicts what the API did")
    # explained: the attributions are the local command's (the same code and weights)
    st, x = call("POST", f"/v1/models/{model}:predict",
                 {"inputs": ten[:3], "alias": "production", "explain": "gradient_x_input"})
    check(st == 200 and len(x.get("attributions", [])) == 3 and len(x["attributions"][0]) == 1
          and len(x["attributions"][0][0]) == 8, f"predict with explain: attributions per row, output, feature ({st})")
    local = subprocess.run([os.path.join(BIN, "maas"), "predict", "-m", os.path.join(WORK, "model.h5"),
                            "--data", os.path.join(WORK, "ten.csv"), "--explain", "gradient_x_input",
                            "--format", "json"], capture_output=True, text=True)
    la = [row["attributions"] for row in json.loads(local.stdout)[:3]]
    check(st == 200 and all(abs(a - b) <= 1e-6 * max(1e-3, abs(b)) for r1, r2 in zip(x["attributions"], la)
                            for o1, o2 in zip(r1, r2) for a, b in zip(o1, o2)),
          "the API's attributions are the local command's")
    # over the worker's work limit (5 000 rows x 4 096 steps x 2 x 101 parameters > 4e9): refused alone
    st, e = call("POST", f"/v1/models/{model}:predict",
                 {"inputs": (ten * 500), "explain": "integrated_gradients", "steps": 4096,
                  "timeout_ms": 30000})
    check(st == 400 and e["error"]["code"] == "LIMIT_EXCEEDED" and "fewer rows or steps" in e["error"]["message"],
          f"an explanation over the work limit fails alone ({st} {e})")
    st, e = call("POST", f"/v1/models/{model}:predict", {"inputs": ten[:1], "explain": "shap"})
    check(st == 400 and "field explain: unknown explanation 'shap'" in e["error"]["message"],
          f"an unknown explanation is 400 ({e})")
    st, v = call("GET", f"/v1/models/{model}/versions")
    check(st == 200 and v["versions"][0]["version"] == 1 and v["versions"][0]["metrics"]["rows"] == 614,
          "GET versions with metrics")
    st, m = call("GET", "/v1/models")
    check(st == 200 and any(x["name"] == model and x["aliases"].get("production") == 1 for x in m["models"]),
          "GET models with aliases")

    # bad requests: a 4xx naming the problem
    st, e = call("POST", "/v1/jobs", b'{"type": "infer", "model": ')
    check(st == 400 and "not valid JSON" in e["error"]["message"], f"malformed JSON -> 400 ({e})")
    st, e = call("POST", "/v1/jobs", {"type": "infer", "model": model, "inputs": [[1, 2]], "epochs": 3})
    check(st == 400 and e["error"]["message"] == "field epochs: unknown field", f"an unknown field is named ({e})")
    st, e = call("POST", f"/v1/models/{model}:predict", {"inputs": [[1, 2, 3]]})
    check(st == 400 and "field inputs.shape[1]: expected 8, got 3" in e["error"]["message"],
          f"a wrong feature count is 400 naming the field ({e})")
    st, e = call("POST", f"/v1/models/nope{RUN}:predict", {"inputs": ten})
    check(st == 404 and e["error"]["code"] == "UNKNOWN_NAME", f"an unknown model is 404 ({e})")
    st, e = call("GET", "/v1/nothing")
    check(st == 404, "an unknown route is 404")

    # idempotency
    key = {"Idempotency-Key": f"idem-{RUN}"}
    st1, s1 = call("POST", "/v1/jobs", {"type": "infer", "model": model, "inputs": ten}, key)
    st2, s2 = call("POST", "/v1/jobs", {"type": "infer", "model": model, "inputs": ten}, key)
    check(st1 == 202 and st2 == 200 and s1["id"] == s2["id"] == f"idem-{RUN}" and s2["resubmitted"] is False,
          "Idempotency-Key: the second POST does not resubmit")
    # an expired job is told apart from a pending and an unknown one
    st, s3 = call("POST", "/v1/jobs", {"type": "infer", "model": model, "inputs": ten,
                                      "deadline_ms": int(time.time() * 1000) - 1000})
    end = time.time() + 30
    while time.time() < end and call("GET", f"/v1/jobs/{s3['id']}")[1]["state"] == "queued":
        time.sleep(0.1)
    st, j = call("GET", f"/v1/jobs/{s3['id']}")
    check(st == 200 and j["state"] == "expired" and not j.get("result"),
          f"a job past its deadline says expired, with no result ({j['state']})")

    # an optimize job through the API: version 2 names version 1; its download is a float file
    st, so = call("POST", "/v1/jobs", {"type": "optimize", "model": f"{model}:1", "quantize": "int8"})
    check(st == 202, f"POST an optimize job ({st} {so})")
    end = time.time() + 60
    while time.time() < end and call("GET", f"/v1/jobs/{so['id']}")[1]["state"] not in ("succeeded", "failed"):
        time.sleep(0.1)
    st, j = call("GET", f"/v1/jobs/{so['id']}")
    check(j["state"] == "succeeded" and j["result"]["version"] == 2, f"the optimize job made version 2 ({j})")
    st, v = call("GET", f"/v1/models/{model}/versions")
    v2 = [x for x in v["versions"] if x["version"] == 2]
    check(v2 and v2[0]["parent"] == 1 and v2[0]["metrics"]["size_ratio"] > 0,
          f"version 2's lineage and measured effects ({v2})")
    m2 = v2[0]["metrics"] if v2 else {}
    w = j.get("cost", {}).get("watts_per_core", 0)
    check(w > 0 and all(abs(m2.get(f"energy_per_1000_j_{k}", -1) - m2[f"predict_us_{k}"] * 1e-3 * w)
                        <= 1e-3 * m2[f"predict_us_{k}"] * 1e-3 * w for k in ("before", "after")),
          f"its report gives the energy per 1000 predictions before and after ({m2})")
    st, h5 = call("GET", f"/v1/models/{model}/versions/2/h5", raw=True)
    with open(os.path.join(WORK, "v2.h5"), "wb") as f:
        f.write(h5)
    chk = subprocess.run(["/usr/bin/python3", "-c",
                          "import h5py,sys; f=h5py.File(sys.argv[1]); "
                          "assert 'maas_quantization' not in f.attrs; "
                          "assert f['model_weights/dense/dense/kernel:0'].dtype.kind == 'f'",
                          os.path.join(WORK, "v2.h5")], capture_output=True, text=True)
    check(st == 200 and chk.returncode == 0, f"the int8 version downloads as a float Keras file {chk.stderr[-200:]}")
    st, p2 = call("POST", f"/v1/models/{model}:predict", {"inputs": ten, "version": 2})
    check(st == 200 and all(abs(a[0] - b[0]) < 0.02 for a, b in zip(p2["outputs"], p["outputs"])),
          "the int8 version serves predictions within 0.02 of the float one")
    # images keep their dimensions (issue 23): a CNN trained from x of shape [rows, 4, 4, 1],
    # served on inputs of that shape; rows of other dimensions fail naming both shapes
    def images(n, seed):
        vals = [((i * 7919 + seed * 104729) % 1000) / 1000.0 for i in range(n * 16)]
        return vals, {"shape": [n, 4, 4, 1], "dtype": "float32",
                      "data": base64.b64encode(struct.pack(f"<{n * 16}f", *vals)).decode()}
    xv, xm = images(48, 1)
    cnn = f"httpcnn{RUN}"
    st, sub = call("POST", "/v1/jobs", {
        "type": "train", "model": cnn, "layers": ["reshape:4x4x1", "conv2d:3:2x2:relu", "flatten", "1:sigmoid"],
        "loss": "binary_crossentropy", "epochs": 2, "seed": 3,
        "data": {"x": xm, "y": [[1.0 if sum(xv[r * 16:r * 16 + 8]) > sum(xv[r * 16 + 8:r * 16 + 16]) else 0.0]
                               for r in range(48)]}})
    end = time.time() + 60
    while st == 202 and time.time() < end and call("GET", f"/v1/jobs/{sub['id']}")[1]["state"] in ("queued", "running"):
        time.sleep(0.1)
    st, j = call("GET", f"/v1/jobs/{sub['id']}")
    check(j["state"] == "succeeded", f"a CNN trains from x of shape [48, 4, 4, 1] ({j['state']} {j.get('error_message')})")
    _, im = images(3, 2)
    st, pc = call("POST", f"/v1/models/{cnn}:predict", {"inputs": im})
    check(st == 200 and len(pc["outputs"]) == 3, f"inputs of shape [3, 4, 4, 1] serve ({st} {pc})")
    im["shape"] = [3, 4, 1, 4]
    st, e = call("POST", f"/v1/models/{cnn}:predict", {"inputs": im})
    check(st == 400 and "field inputs.shape: rows of (4, 1, 4); model " in e["error"]["message"]
          and "takes rows of (4, 4, 1)" in e["error"]["message"], f"rows of other dimensions are named ({st} {e})")
    # bounds: a declared body over --max-body-mb (4) is refused before it is read
    def hwm_kb(pid):
        with open(f"/proc/{pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    def raw(head, chunks=()):
        """Sends a request by hand (the server may answer and close before all is sent)
        and returns what it answers."""
        sk = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        reply = b""
        try:
            sk.sendall(head)
            for c in chunks:
                sk.sendall(c)
        except OSError:
            pass
        try:
            while b"}}" not in reply:
                chunk = sk.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except OSError:
            pass
        sk.close()
        return reply

    before = hwm_kb(coord.pid)
    reply = raw(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 62914560\r\n\r\n")  # no body: the answer must not wait for it
    check(reply.startswith(b"HTTP/1.1 413") and b"LIMIT_EXCEEDED" in reply,
          f"a 60 MiB Content-Length gets 413 before its body is sent ({reply[:60]!r})")
    # a chunked body (no Content-Length) is cut off once over the limit
    big = json.dumps({"type": "infer", "model": model, "inputs": [[0.5] * 8] * 160000}).encode()
    parts = [b"%x\r\n" % len(big[i:i + 65536]) + big[i:i + 65536] + b"\r\n"
             for i in range(0, len(big), 65536)] + [b"0\r\n\r\n"]
    reply = raw(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n", parts)
    check(reply.startswith(b"HTTP/1.1 413") and b"LIMIT_EXCEEDED" in reply,
          f"a chunked {len(big) / 2**20:.1f} MiB body gets 413 ({reply[:60]!r})")
    grew = (hwm_kb(coord.pid) - before) / 1024
    check(grew < 16, f"refusing them grew the coordinator's peak RSS by {grew:.1f} MB")
    # connections: 8 per client; the 9th is closed at once, the server keeps serving
    held = [socket.create_connection(("127.0.0.1", PORT), timeout=10) for _ in range(8)]
    time.sleep(0.3)
    extra = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    try:
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        refused = extra.recv(100) == b""
    except OSError:
        refused = True
    extra.close()
    check(refused, "a 9th connection from one client is refused (--max-connections-per-client 8)")
    for k in held:
        k.close()
    time.sleep(0.3)
    check(call("GET", "/healthz")[0] == 200, "and the server serves once they close")
    # 8 requests at once (the per-client cap) share the 4 pooled Redis connections
    import threading
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(call("GET", f"/v1/models/{model}/versions")[0]))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    metrics = urllib.request.urlopen(
        urllib.request.Request(API + "/metrics", headers={"Authorization": f"Bearer {KEY}"}), timeout=5).read().decode()
    opened = [float(l.split()[-1]) for l in metrics.splitlines()
              if l.startswith('maas_coordinator_redis_pool_connections{state="open"}')]
    check(codes == [200] * 8 and opened and 1 <= opened[0] <= 4,
          f"8 concurrent requests answered on at most 4 Redis connections ({opened})")
    metrics = urllib.request.urlopen(
        urllib.request.Request(API + "/metrics", headers={"Authorization": f"Bearer {KEY}"}), timeout=5).read().decode()
    check('maas_coordinator_submissions_total{type="infer"}' in metrics
          and "maas_coordinator_http_responses_total" in metrics, "/metrics")
finally:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
check(all(clean_exit(p) for p in procs), f"clean exits ({[p.returncode for p in procs]})")
print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failed checks")
sys.exit(1 if failures else 0)
