#!/usr/bin/env bash
# Makes (or reuses) the Python environment with real Keras 3 used by the interop
# tests: Debian's /usr/bin/python3 + a venv with keras, jax[cpu] (Keras's CPU
# backend) and h5py from PyPI, cached outside the clone. Prints the venv's python.
# Fails loudly when it cannot be built: the interop tests never skip.
set -euo pipefail
PINS=(keras==3.15.1 "jax[cpu]==0.10.2" h5py==3.16.0)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/maas"
venv="$cache/keras-venv"
stamp="$venv/.maas-pins"
check() { KERAS_BACKEND=jax "$venv/bin/python" -c 'import keras, jax, h5py' >/dev/null 2>&1; }
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "${PINS[*]}" ]] && check; then
  echo "$venv/bin/python"
  exit 0
fi
echo "keras_venv: building $venv (${PINS[*]})" >&2
mkdir -p "$cache"
rm -rf "$venv"
/usr/bin/python3 -m venv "$venv" >&2
"$venv/bin/pip" install -q --disable-pip-version-check "${PINS[@]}" >&2
check || { echo "keras_venv: keras does not import in $venv" >&2; exit 1; }
echo "${PINS[*]}" > "$stamp"
echo "$venv/bin/python"
