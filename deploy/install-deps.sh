#!/usr/bin/env bash
# Installs every system package maas needs to build, test and run, from Debian's
# packages. Idempotent: packages already present are skipped, and apt is only
# touched when something is missing. Run as root (or with sudo available).
set -euo pipefail

# Build and runtime libraries (each sits behind one adapter file in common/).
PKGS_BUILD=(
  build-essential cmake pkg-config clang-format
  libopenblas-dev     # GEMM wrapper (common/src/gemm.c)
  libhdf5-dev         # model files (model_h5)
  librdkafka-dev      # Kafka adapter
  libmsgpack-dev      # codec (msgpack-c)
  libhiredis-dev      # Redis adapter
  libssl-dev          # SHA-256 of model versions (libcrypto)
  libcjson-dev        # JSON (Keras model_config, schemas)
  libcsv-dev          # CSV reader for datasets
  libcmocka-dev       # unit test framework
  libmicrohttpd-dev   # HTTP endpoints (worker /metrics, coordinator API)
  libdnnl-dev         # oneDNN: int8 GEMMs of large batches (qgemm_dnnl.c)
  zlib1g-dev          # gzip-compressed IDX datasets
)
# Test-only: reference implementations and data.
PKGS_TEST=(
  python3 python3-numpy python3-torch python3-h5py python3-venv
  python3-jsonschema python3-msgpack   # the protocol schema tests
  python3-confluent-kafka python3-redis # the worker tests and the Python client example
  kcat jq                               # the kcat + redis-cli recipe (examples/kcat; jq
                                        # reads a job's record, one JSON object)
  dataset-fashion-mnist
  clang libclang-rt-14-dev   # the sanitizer build and the libFuzzer targets
  systemd                    # systemd-analyze: the units in deploy/systemd are verified
  podman runc mmdebstrap     # the container image (deploy/container), built and run in a test
  podman-compose golang-github-containernetworking-plugin-dnsname # deploy/compose, run in a
                             # test (dnsname: containers find each other by service name)
  chromium chromium-driver python3-selenium fonts-dejavu-core # the web console, tested in a
                             # real (headless) browser
)
# The local stack (and the integration tests): Redis, and Java + Maven for the Kafka broker.
PKGS_STACK=(redis-server redis-tools default-jre-headless maven)

# no argument: everything; --build-only: the build; --stack: the local stack
want=("${PKGS_BUILD[@]}" "${PKGS_TEST[@]}" "${PKGS_STACK[@]}")
if [[ "${1:-}" == "--build-only" ]]; then want=("${PKGS_BUILD[@]}"); fi
if [[ "${1:-}" == "--stack" ]]; then want=("${PKGS_STACK[@]}"); fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
