#!/usr/bin/env bash
# deploy/k8s checked offline: yamllint (strict), every object of the core API against its
# schema with kubernetes-validate --strict (a venv from PyPI, tests/deploy/k8s_venv.sh), and
# what the manifests must agree on with maas itself (check_k8s.py: the settings through the
# programs' --check-config, grace, memory, probes, users, KEDA's groups and bounds).
# usage: test_k8s.sh BUILD_DIR
set -uo pipefail
build="$(realpath "$1")"
root="$(cd "$(dirname "$0")/../.." && pwd)"
k8s="$root/deploy/k8s"
bin="$("$root/tests/deploy/k8s_venv.sh")" || { echo "FAIL: the checkers' venv"; exit 1; }
fail=0
if "$bin/yamllint" -s -c "$k8s/.yamllint" "$k8s"; then echo "ok: yamllint"; else echo "FAIL: yamllint"; fail=1; fi
# the Compose file too (the same rules)
if "$bin/yamllint" -s -c "$k8s/.yamllint" "$root/deploy/compose"; then echo "ok: yamllint deploy/compose"
else echo "FAIL: yamllint deploy/compose"; fail=1; fi
mapfile -t files < <(find "$k8s" -name '*.yaml' ! -name kustomization.yaml | sort)
out="$("$bin/kubernetes-validate" --strict "${files[@]}" 2>&1)"
echo "$out"
# only Kustomize's and KEDA's own kinds may lack a schema (KEDA's are CRDs: check_k8s.py)
bad="$(grep -v '^INFO .* passed for resource' <<< "$out" |
  grep -v "Couldn't find schema for kind \(ScaledObject\|TriggerAuthentication\) with api version keda.sh/v1alpha1")"
if [[ -z "$bad" && -n "$out" ]]; then echo "ok: kubernetes-validate --strict"; else echo "FAIL: kubernetes-validate: $bad"; fail=1; fi
/usr/bin/python3 "$root/tests/deploy/check_k8s.py" "$k8s" "$build/bin" "$root/deploy/container/Containerfile" || fail=1
exit $fail
