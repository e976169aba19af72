#!/usr/bin/env bash
# The Python environment of bench/anchors.py: ONNX Runtime, onnx, Keras 3 and jax[cpu] from
# PyPI (deploy/pypi_venv.sh: cached outside the clone, like the Keras interop venv). Prints
# the venv's python.
set -euo pipefail
export KERAS_BACKEND=jax
exec "$(dirname "$0")/../deploy/pypi_venv.sh" anchors 'import onnxruntime, onnx, keras, jax' \
  onnxruntime==1.32.0 onnx==1.23.2 keras==3.15.1 "jax[cpu]==0.10.2"
