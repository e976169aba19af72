#!/usr/bin/env bash
# ctest entry: builds/reuses the Keras venv, then runs keras_interop.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
maas_bin="$1" pima="$2" work="$3"
py="$("$here/keras_venv.sh")"
KERAS_BACKEND=jax JAX_PLATFORMS=cpu "$py" "$here/keras_interop.py" "$maas_bin" "$pima" "$work"
