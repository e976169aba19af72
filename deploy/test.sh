#!/usr/bin/env bash
# The whole test suite: installs what is missing, configures, builds and runs
# every test through ctest. `.ci/run` calls exactly this.
#   deploy/test.sh              build/ (RelWithDebInfo, warnings as errors)
#   deploy/test.sh --sanitize   build-asan/ (AddressSanitizer + UBSan)
# Extra arguments after `--` go to ctest (e.g. -- -L unit).
set -euo pipefail
cd "$(dirname "$0")/.."

build=build
cmake_args=(-DMAAS_WERROR=ON)
if [[ "${1:-}" == "--sanitize" ]]; then
  build=build-asan
  cmake_args+=(-DMAAS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
  shift
fi
[[ "${1:-}" == "--" ]] && shift

deploy/install-deps.sh
# The sanitizer build uses clang, which also builds the libFuzzer targets.
if [[ "$build" == build-asan ]]; then export CC=clang; fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S . -B "$build" "${generator[@]}" "${cmake_args[@]}"
else
  cmake -S . -B "$build" "${cmake_args[@]}" >/dev/null
fi
cmake --build "$build" -j "$(nproc)"

# intercept_tls_get_addr=0: up to LLVM 16 (Debian's clang 14 here) the runtime's __tls_get_addr
# interceptor takes a malloc'd dynamic-TLS block that happens to start 16 bytes into a page for a
# pre-2.25 glibc header and reads garbage from it; LeakSanitizer's tracer then dies at exit
# ("Tracer caught signal 11", no leak reported) in a random test, about once per suite run.
# Fixed upstream in LLVM 17 ("Fix tls_get_addr handling for glibc >=2.25").
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:intercept_tls_get_addr=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir "$build" --output-on-failure "$@"
