#!/usr/bin/python3
"""The web console (issue 22) in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) against the coordinator, a worker, Kafka and Redis.

 - /ui/ asks for a key; typed into the form (keyboard: the Enter key submits it);
 - the jobs table shows what Redis holds (state per job);
 - a training job's page draws its loss curve, which gains points while the job runs (the
   count read from the SVG's data-points), then says cancelled with the job's cost;
 - a model's page shows its versions and the lineage of an optimized one, as Redis has them;
 - the workers page shows the live worker and the topic lag;
 - tenants: a tenant's key sees its own jobs only and no worker's models or jobs; an admin
   key acting for the tenant (the Tenant field) sees the tenant's;
 - accessibility basics: every form field labelled, tables with captions and column headers,
   the charts with a role and a name, the current section marked.
Screenshots of each page go to WORKDIR (console-*.png).
usage: test_console.py BIN_DIR PIMA_CSV WORKDIR   (env MAAS_KAFKA_BROKERS, MAAS_REDIS_URL)
"""
import csv
import os
import subprocess
import sys
import time
import uuid

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from itkeys import api_call, clean_exit, job_state, operator_key, redis_client, wait_healthz

BIN, PIMA, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
BROKERS = os.environ.get("MAAS_KAFKA_BROKERS", "127.0.0.1:29092")
REDIS_URL = os.environ.get("MAAS_REDIS_URL", "redis://127.0.0.1:26379")
PORT = 29186
API = f"http://127.0.0.1:{PORT}"
os.makedirs(WORK, exist_ok=True)
RUN = uuid.uuid4().hex[:8]
TENANT = f"con{RUN[:6]}"
R = redis_client(REDIS_URL)
failures, procs = [], []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def spawn(name, *args):
    log = open(os.path.join(WORK, f"{name}-{len(procs)}.log"), "w")
    p = subprocess.Popen([os.path.join(BIN, name), *args], stdout=log, stderr=log)
    p.log_path = log.name
    procs.append(p)
    return p


def call(method, path, body=None, key=None, headers=None):
    return api_call(API, method, path, body, key or ADMIN, headers)


def wait_for(fn, seconds, step=0.2):
    """fn() until it is truthy (exceptions of a page being redrawn count as not yet)."""
    end = time.time() + seconds
    while time.time() < end:
        try:
            v = fn()
            if v:
                return v
        except (StaleElementReferenceException, WebDriverException, KeyError, ValueError):
            pass
        time.sleep(step)
    return None


def wait_job(jid, states, seconds=120, key=None):
    end = time.time() + seconds
    while time.time() < end:
        st, j = call("GET", f"/v1/jobs/{jid}", key=key)
        if st == 200 and j["state"] in states:
            return j
        time.sleep(0.2)
    return call("GET", f"/v1/jobs/{jid}", key=key)[1]


def shot(name):
    path = os.path.join(WORK, f"console-{name}.png")
    B.save_screenshot(path)
    return path


def go(hash_):
    B.get(f"{API}/ui/#{hash_}")


def text(css):
    return B.find_element(By.CSS_SELECTOR, css).text


def use_key(key, tenant=""):
    for field, value in (("key", key), ("tenant", tenant)):
        e = B.find_element(By.ID, field)
        e.clear()
        e.send_keys(value)
    B.find_element(By.ID, "tenant").send_keys(Keys.ENTER)  # the keyboard submits the form


with open(PIMA) as f:
    rows = [[float(v) for v in r] for r in list(csv.reader(f))[1:]]
X, Y = [r[:8] for r in rows[:600]], [r[8:] for r in rows[:600]]

B = None
try:
    ADMIN = operator_key(BIN, WORK)
    kt_path = os.path.join(WORK, "tenant.key")
    r = subprocess.run([os.path.join(BIN, "maas"), "tenant", "create", TENANT, "--key-file", kt_path],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"a tenant for the isolation checks ({r.stderr.strip()[-200:]})")
    KT = open(kt_path).read().strip()
    spawn("maas-coordinator", "--http", f"127.0.0.1:{PORT}", "--brokers", BROKERS, "--redis", REDIS_URL)
    spawn("maas-worker", "--id", f"con-w{RUN}", "--brokers", BROKERS, "--redis", REDIS_URL,
          "-X", "kafka.session.timeout.ms=6000")
    wait_healthz(API)

    # a model with an optimized child (lineage), then a long training job to watch
    model = f"con{RUN}"
    st, t1 = call("POST", "/v1/jobs", {
        "type": "train", "model": model, "layers": [{"units": 10, "activation": "relu"},
                                                    {"units": 1, "activation": "sigmoid"}],
        "loss": "binary_crossentropy", "epochs": 10, "standardize": True, "seed": 1,
        "validation_split": 0.2, "data": {"x": X, "y": Y}})
    check(st == 202 and wait_job(t1["id"], {"succeeded", "failed"})["state"] == "succeeded",
          "a quick training job made version 1")
    st, o = call("POST", "/v1/jobs", {"type": "optimize", "model": f"{model}:1", "quantize": "int8"})
    check(st == 202 and wait_job(o["id"], {"succeeded", "failed"})["state"] == "succeeded",
          "an optimize job made version 2 from version 1")
    # long enough to be watched on any machine (here ~3 min of 10 000 epochs): cancelled once
    # the check is made
    st, lj = call("POST", "/v1/jobs", {
        "type": "train", "model": f"{model}-long",
        "layers": [{"units": 512, "activation": "relu"}, {"units": 512, "activation": "relu"},
                   {"units": 1, "activation": "sigmoid"}],
        "loss": "binary_crossentropy", "epochs": 10000, "standardize": True, "seed": 2,
        "validation_split": 0.2, "data": {"x": X, "y": Y}})
    long_id = lj["id"]
    # a job of the tenant's (its record exists once submitted, whatever the worker does)
    st, tj = call("POST", "/v1/jobs", {"type": "infer", "model": "nomodel", "inputs": [X[0]]}, key=KT)
    check(st == 202, f"the tenant submits a job ({st} {tj})")

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900", "--lang=en-US",
              # a headless window counts as hidden: keep its timers at the page's own pace
              "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
              "--disable-backgrounding-occluded-windows"):
        opts.add_argument(a)
    B = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    B.set_page_load_timeout(60)

    # 1. no key yet: the console says how to get one
    go("/jobs")
    check(wait_for(lambda: "API key" in text("#status"), 20) is not None,
          f"without a key the console asks for one ({text('#status')!r})")
    shot("login")
    labels = {e.get_attribute("for") for e in B.find_elements(By.CSS_SELECTOR, "label[for]")}
    check({"key", "tenant"} <= labels, f"the key and tenant fields are labelled ({labels})")

    # 2. the jobs table, as Redis holds it
    use_key(ADMIN)
    check(wait_for(lambda: B.find_elements(By.LINK_TEXT, long_id), 30) is not None,
          "with the admin key the jobs table lists the jobs")
    def table_matches_redis():
        # read in one call: the table is redrawn every 2 s
        cells = B.execute_script("return [...document.querySelectorAll('#jobs tbody tr')].map("
                                 "r => [r.cells[0].textContent, r.cells[3].textContent])")
        ours = [(j, s) for j, s in cells if j in (t1["id"], o["id"])]
        return len(ours) == 2 and all(job_state(R, j).decode() == s for j, s in ours) and ours
    check(wait_for(table_matches_redis, 20) is not None, "the jobs table's states are Redis's")
    check(B.find_element(By.CSS_SELECTOR, 'nav a[data-nav="jobs"]').get_attribute("aria-current") == "page",
          "the current section is marked (aria-current)")
    check(len(B.find_elements(By.CSS_SELECTOR, "#jobs caption")) == 1
          and len(B.find_elements(By.CSS_SELECTOR, "#jobs th[scope=col]")) >= 8,
          "the table has a caption and column headers")
    check(not B.find_elements(By.LINK_TEXT, tj["id"]), "the admin's own namespace does not list the tenant's job")
    shot("jobs")

    # 3. the live curve of the running job
    check(wait_job(long_id, {"running"}, 60)["state"] == "running", "the long training job runs")
    B.find_element(By.LINK_TEXT, long_id).click()
    points = lambda: int(B.find_element(By.ID, "chart-loss").get_attribute("data-points"))
    first = wait_for(lambda: points() >= 2 and points(), 120)
    check(first is not None, f"the job's page draws the loss curve ({first} points)")
    later = wait_for(lambda: points() > (first or 0) and points(), 120)
    st_now = call("GET", f"/v1/jobs/{long_id}")[1]["state"]
    check(later is not None and st_now == "running",
          f"the curve gains points while the job runs ({first} -> {later}, {st_now})")
    svg = B.find_element(By.ID, "chart-loss")
    check(svg.get_attribute("role") == "img" and "epochs" in (svg.get_attribute("aria-label") or ""),
          f"the chart has a role and a name ({svg.get_attribute('aria-label')})")
    wait_for(lambda: points() > (later or 0) + 2, 30)  # a few more points for the picture
    shot("training")
    st, cj = call("POST", f"/v1/jobs/{long_id}/cancel")
    followed = wait_for(lambda: text("#job-state") == "cancelled", 60) is not None
    check(followed, f"the page follows the job to cancelled (the API: {st} {cj.get('state')}, "
          f"{wait_job(long_id, {'cancelled'}, 30)['state']}; the page: {text('#job-state')!r}, "
          f"status {text('#status')!r})")
    if not followed:
        shot("not-followed")
        print("browser log:", B.get_log("browser")[-10:], flush=True)
    check(wait_for(lambda: "J" in text("#job-cost") and "FLOPs" in text("#job-cost"), 20) is not None,
          f"and shows what it cost ({wait_for(lambda: text('#job-cost'), 5)})")
    n_epochs = len(R.lrange(f"maas:job:{{{long_id}}}:epochs", 0, -1))
    check(wait_for(lambda: points() == 2 * n_epochs, 10) is not None,
          f"every stored epoch is drawn, loss and val_loss ({points()} points, {n_epochs} epochs in Redis)")

    # 4. a model's versions and lineage
    go(f"/model/{model}")
    check(wait_for(lambda: len(B.find_elements(By.CSS_SELECTOR, "#versions tbody tr"))
                   == int(R.hget(f"maas:model:{{{model}}}", "next_version")), 20) is not None,
          "the model's page lists its versions, as many as Redis has")
    check(wait_for(lambda: "from v1 (int8)" in text("#versions"), 10) is not None,
          f"version 2's lineage names version 1 and int8 ({text('#versions')[:300]!r})")
    shot("model")

    # 5. workers and lag
    go("/workers")
    check(wait_for(lambda: f"con-w{RUN}" in text("#workers") and "Topic lag" in text("#lag"), 20) is not None,
          "the workers page shows the live worker and the topic lag")
    check("(hidden)" not in text("#workers"), "an admin sees what workers hold")
    shot("workers")

    # 6. tenants: a tenant's key sees its own; an admin acting for the tenant sees the tenant's
    use_key(KT)
    go("/jobs")
    check(wait_for(lambda: B.find_elements(By.LINK_TEXT, tj["id"]) and not B.find_elements(By.LINK_TEXT, long_id),
                   30) is not None,
          f"a tenant's key lists its own job and not the operator's (status {text('#status')!r}, "
          f"{text('#view')[:300]!r})")
    go("/workers")
    check(wait_for(lambda: "(hidden)" in text("#workers"), 20) is not None
          and model not in text("#workers"), "a tenant is not shown what the workers hold or run")
    use_key(ADMIN, TENANT)
    go("/jobs")
    check(wait_for(lambda: B.find_elements(By.LINK_TEXT, tj["id"]), 30) is not None,
          "an admin key acting for the tenant sees the tenant's jobs")
    use_key("maas_" + "0" * 16 + "_" + "0" * 64)
    go("/models")
    check(wait_for(lambda: "UNAUTHENTICATED" in text("#status"), 20) is not None,
          f"a wrong key is told so ({text('#status')!r})")
finally:
    if B is not None:
        B.quit()
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    subprocess.run([os.path.join(BIN, "maas"), "tenant", "delete", TENANT], capture_output=True)
check(all(clean_exit(p) for p in procs), f"clean exits ({[p.returncode for p in procs]})")

print(f"screenshots: {WORK}/console-*.png")
if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("console: all checks passed")
