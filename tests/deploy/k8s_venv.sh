#!/usr/bin/env bash
# The tools the Kubernetes manifests are checked with: kubernetes-validate (the API's schemas,
# offline) and yamllint from PyPI (deploy/pypi_venv.sh: cached outside the clone). Prints the
# venv's bin directory.
set -euo pipefail
py="$("$(dirname "$0")/../../deploy/pypi_venv.sh" k8s 'import kubernetes_validate, yamllint' \
  kubernetes-validate==1.37.0 yamllint==1.38.0)"
dirname "$py"
