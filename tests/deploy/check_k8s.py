#!/usr/bin/python3
"""What the Kubernetes manifests (deploy/k8s) must agree on with maas itself, beyond the API's
schemas: every kustomization's files exist; the settings in the ConfigMap and the Secret pass
the programs' own --check-config, as the pods pass them (two --config files); the worker's
grace period outlasts its grace-s, its memory request and limit cover its memory-mb; probes
and ports match MAAS_WORKER_HTTP and the coordinator's http; the pods run as the image's user
(deploy/container/Containerfile); KEDA scales the worker Deployment on maas's consumer groups
and topics, at most the partition count, with a TriggerAuthentication whose keys the Secret
has; the HPA has the same bounds.

usage: check_k8s.py K8S_DIR BIN_DIR CONTAINERFILE   (prints "ok: ..." / "FAIL: ..."; exit 1 on a FAIL)
"""
import os
import re
import subprocess
import sys
import tempfile

import yaml

PARTITIONS = 6  # the job topics' default partition count (maas-kafka-admin, MAAS_PARTITIONS)
fails = 0


def check(cond, what):
    global fails
    print(("ok: " if cond else "FAIL: ") + what)
    fails += 0 if cond else 1


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def mib(q):
    m = re.fullmatch(r"(\d+)(Mi|Gi)", q)
    return int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)


def conf_value(text, key):
    for line in text.splitlines():
        if line.strip().startswith(key + "="):
            return line.split("=", 1)[1].strip()
    return None


def main():
    k8s, bindir, containerfile = sys.argv[1:4]
    docs = {}
    for overlay in ("base", "keda", "hpa"):
        kz = load(os.path.join(k8s, overlay, "kustomization.yaml"))[0]
        for r in kz["resources"]:
            p = os.path.normpath(os.path.join(k8s, overlay, r))
            check(os.path.exists(p), f"{overlay}/kustomization.yaml: {r} exists")
            if p.endswith(".yaml"):
                for d in load(p):
                    docs[(d["kind"], d["metadata"]["name"])] = d
    cm = docs[("ConfigMap", "maas-settings")]["data"]
    secret = docs[("Secret", "maas-credentials")]["stringData"]
    worker = docs[("Deployment", "maas-worker")]["spec"]["template"]["spec"]
    coord = docs[("Deployment", "maas-coordinator")]["spec"]["template"]["spec"]

    # the settings as the pods get them, through the programs' own check
    with tempfile.TemporaryDirectory() as tmp:
        for prog, spec in (("worker", worker), ("coordinator", coord)):
            paths = []
            for part, src in (("settings", cm), ("credentials", secret)):
                p = os.path.join(tmp, f"{prog}-{part}.conf")
                with open(p, "w") as f:
                    f.write(src[f"{prog}.conf"])
                paths.append(p)
            args = spec["containers"][0]["args"]
            check(args == ["--config", f"/etc/maas/settings/{prog}.conf", "--config",
                           f"/etc/maas/credentials/{prog}.conf"],
                  f"{prog}: settings then credentials, as files (no secret in args or env)")
            env = {e["name"]: e.get("value", "") for e in spec["containers"][0].get("env", [])}
            r = subprocess.run([os.path.join(bindir, f"maas-{prog}"), "--config", paths[0],
                                "--config", paths[1], "--check-config"],
                               capture_output=True, text=True,
                               env={"PATH": os.environ.get("PATH", ""), **env,
                                    **({"MAAS_WORKER_ID": "pod-1"} if prog == "worker" else {})})
            check(r.returncode == 0 and "configuration is valid" in r.stdout,
                  f"{prog}: the ConfigMap and Secret pass maas-{prog} --check-config "
                  f"({(r.stderr or r.stdout).strip()[-160:]})")
            check("CHANGE-ME" not in r.stdout, f"{prog}: --check-config masks the secrets")

    wc = worker["containers"][0]
    grace = int(conf_value(cm["worker.conf"], "grace-s"))
    check(worker["terminationGracePeriodSeconds"] > grace + 5,
          f"worker: terminationGracePeriodSeconds {worker['terminationGracePeriodSeconds']} "
          f"outlasts grace-s {grace}")
    budget = int(conf_value(cm["worker.conf"], "memory-mb"))
    req, lim = mib(wc["resources"]["requests"]["memory"]), mib(wc["resources"]["limits"]["memory"])
    check(req >= budget and lim >= budget + 128,
          f"worker: memory request {req} Mi and limit {lim} Mi cover memory-mb {budget} (+128 Mi "
          "for the process)")
    http = next(e["value"] for e in wc["env"] if e["name"] == "MAAS_WORKER_HTTP")
    port = int(http.rsplit(":", 1)[1])
    check(wc["ports"][0]["containerPort"] == port, f"worker: the container port is {http}'s")
    check(wc["readinessProbe"]["httpGet"]["path"] == "/readyz" and
          wc["livenessProbe"]["httpGet"]["path"] == "/healthz",
          "worker: readiness on /readyz, liveness on /healthz")
    cport = int(conf_value(cm["coordinator.conf"], "http").rsplit(":", 1)[1])
    cc = coord["containers"][0]
    check(cc["ports"][0]["containerPort"] == cport and
          cc["readinessProbe"]["httpGet"]["path"] == "/healthz",
          f"coordinator: its port is http's ({cport}), ready on /healthz (no API key needed)")
    svc = docs[("Service", "maas-coordinator")]["spec"]
    check(svc["selector"] == docs[("Deployment", "maas-coordinator")]["spec"]["selector"][
        "matchLabels"], "the coordinator's Service selects its pods")
    with open(containerfile) as f:
        user = re.search(r"^USER (\d+)", f.read(), re.M).group(1)
    for name, spec in (("worker", worker), ("coordinator", coord)):
        sc = spec["securityContext"]
        check(str(sc["runAsUser"]) == user and sc["runAsNonRoot"] and sc["fsGroup"] == int(user),
              f"{name}: runs as the image's user {user}, its mounted credentials readable")
        csc = spec["containers"][0]["securityContext"]
        check(csc["readOnlyRootFilesystem"] and not csc["allowPrivilegeEscalation"] and
              csc["capabilities"]["drop"] == ["ALL"], f"{name}: read-only root, no privileges")
    for name in ("maas-worker", "maas-coordinator"):
        pdb = docs[("PodDisruptionBudget", name)]["spec"]
        check(pdb["selector"]["matchLabels"] == docs[("Deployment", name)]["spec"]["selector"][
            "matchLabels"], f"{name}: a PodDisruptionBudget over its pods")

    prefix = conf_value(cm["worker.conf"], "topic-prefix")
    so = docs[("ScaledObject", "maas-worker")]["spec"]
    check(so["scaleTargetRef"]["name"] == "maas-worker", "KEDA scales the worker Deployment")
    check(so["maxReplicaCount"] == PARTITIONS,
          f"KEDA: at most {PARTITIONS} workers, the topics' partitions")
    want = {(f"{prefix}workers.infer", f"{prefix}jobs.infer"),
            (f"{prefix}workers.work", f"{prefix}jobs.work")}
    got = {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in so["triggers"]}
    check(got == want, f"KEDA: the lag of maas's groups on their topics ({sorted(got)})")
    brokers = conf_value(cm["worker.conf"], "brokers")
    check(all(t["metadata"]["bootstrapServers"] == brokers and t["type"] == "kafka"
              for t in so["triggers"]), "KEDA: the workers' brokers")
    ta = docs[("TriggerAuthentication", so["triggers"][0]["authenticationRef"]["name"])]["spec"]
    check(all(r["name"] == "maas-credentials" and r["key"] in secret
              for r in ta["secretTargetRef"]), "KEDA's TriggerAuthentication: keys the Secret has")
    check({r["parameter"] for r in ta["secretTargetRef"]} >= {"sasl", "username", "password"},
          "KEDA's TriggerAuthentication: SASL mechanism, user and password")
    check(secret["kafka-sasl"] == "scram_sha512" and
          conf_value(cm["worker.conf"], "kafka.sasl.mechanisms") == "SCRAM-SHA-512",
          "KEDA logs in with the workers' SASL mechanism")
    hpa = docs[("HorizontalPodAutoscaler", "maas-worker")]["spec"]
    check(hpa["scaleTargetRef"]["name"] == "maas-worker" and hpa["maxReplicas"] == PARTITIONS,
          f"HPA: the worker Deployment, at most {PARTITIONS}")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
