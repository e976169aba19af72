#!/usr/bin/env bash
# Makes (or reuses) the Python environment of bench/anchors.py: Debian's /usr/bin/python3 + a
# venv with ONNX Runtime, onnx, Keras 3 and jax[cpu] from PyPI, cached outside the clone (like
# the Keras interop venv, tests/interop/keras_venv.sh). Prints the venv's python.
set -euo pipefail
PINS=(onnxruntime==1.32.0 onnx==1.23.2 keras==3.15.1 "jax[cpu]==0.10.2")
cache="${XDG_CACHE_HOME:-$HOME/.cache}/maas"
venv="$cache/anchors-venv"
stamp="$venv/.maas-pins"
check() { KERAS_BACKEND=jax "$venv/bin/python" -c 'import onnxruntime, onnx, keras, jax' >/dev/null 2>&1; }
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "${PINS[*]}" ]] && check; then
  echo "$venv/bin/python"
  exit 0
fi
echo "anchors_venv: building $venv (${PINS[*]})" >&2
mkdir -p "$cache"
rm -rf "$venv"
/usr/bin/python3 -m venv "$venv" >&2
"$venv/bin/pip" install -q --disable-pip-version-check "${PINS[@]}" >&2
check || { echo "anchors_venv: the anchors do not import in $venv" >&2; exit 1; }
echo "${PINS[*]}" > "$stamp"
echo "$venv/bin/python"
