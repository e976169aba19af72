#!/usr/bin/env bash
# Quickstart: installs what is needed, builds, and runs the seed scenario.
#
# Today the seed scenario runs on the compute core locally (maas-seed-local):
# Pima diabetes -> Dense(10, relu) -> Dense(1, sigmoid), Adam, 10 epochs.
# The Kafka/Redis cluster (coordinator + workers) is not built yet; see the
# README's "Status" section.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> installing dependencies (Debian packages)"
deploy/install-deps.sh --build-only
echo "==> building into build/"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
[[ -f build/CMakeCache.txt ]] || cmake -S . -B build "${generator[@]}" >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
echo "==> seed scenario (local compute core)"
build/bin/maas-seed-local examples/data/pima-indians-diabetes.csv --seed 7
