#!/usr/bin/env bash
# The Python environment with real Keras 3 used by the interop tests: keras, jax[cpu] (Keras's
# CPU backend) and h5py from PyPI (deploy/pypi_venv.sh: cached outside the clone). Prints the
# venv's python. Fails loudly when it cannot be built: the interop tests never skip.
set -euo pipefail
export KERAS_BACKEND=jax
exec "$(dirname "$0")/../../deploy/pypi_venv.sh" keras 'import keras, jax, h5py' \
  keras==3.15.1 "jax[cpu]==0.10.2" h5py==3.16.0
