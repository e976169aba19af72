#!/usr/bin/env bash
# Makes (or reuses) a Python environment from PyPI, cached outside the clone: Debian's
# /usr/bin/python3 + a venv with the pinned packages, made again when the pins change or the
# check no longer imports. Prints the venv's python; fails loudly when it cannot be built.
# usage: deploy/pypi_venv.sh NAME 'import a, b' PIN...   (the venv: ~/.cache/maas/NAME-venv)
# Used by the Keras interop test, bench/run.py --anchors and the Kubernetes manifests' test.
set -euo pipefail
name="$1" imports="$2"
shift 2
pins=("$@")
cache="${XDG_CACHE_HOME:-$HOME/.cache}/maas"
venv="$cache/$name-venv"
stamp="$venv/.maas-pins"
check() { "$venv/bin/python" -c "$imports" > /dev/null 2>&1; }
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "${pins[*]}" ]] && check; then
  echo "$venv/bin/python"
  exit 0
fi
echo "pypi_venv: building $venv (${pins[*]})" >&2
mkdir -p "$cache"
rm -rf "$venv"
/usr/bin/python3 -m venv "$venv" >&2
"$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}" >&2
check || { echo "pypi_venv: '$imports' fails in $venv" >&2; exit 1; }
echo "${pins[*]}" > "$stamp"
echo "$venv/bin/python"
