#!/usr/bin/env bash
# The README's test command: installs every dependency, builds with warnings as errors, and runs
# all tests (unit, vectors, integration with third-party clients) through CTest.
#   scripts/test.sh                 everything
#   scripts/test.sh --sanitize      the same under ASan + UBSan (build dir build-asan)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export BUILD_DIR=${BUILD_DIR:-build}
# Tests need no debug info: -O2 without -g builds the tree about a fifth faster on a 2-core machine
# (keeps CI under 30 minutes). scripts/build.sh alone keeps the default RelWithDebInfo.
# Benchmarks are not tests: the test command skips building them (PML_BENCH=OFF; ~2-3 minutes of
# a 2-core CI run); scripts/build.sh builds them by default, so they still compile on every dev
# build.
extra=(-DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG"
       "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG" -DPML_BENCH=OFF)
if [ "${1:-}" = "--sanitize" ]; then
  BUILD_DIR=build-asan
  extra=(-DPML_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
scripts/check-includes.sh
echo "==> building ($BUILD_DIR)"
time scripts/build.sh "${extra[@]}"
# Fuzzing is its own command (scripts/fuzz.sh SECONDS [TARGET...]: a clang/ASan build of every
# libFuzzer target, then a bounded run of each): on this 2-core CI machine the clang build alone
# costs ~5 minutes, which with the VM boot tests would take the test command past CI's 30-minute
# budget. PML_FUZZ_SECONDS=N runs it here too.
if [ "${1:-}" != "--sanitize" ] && [ "${PML_FUZZ_SECONDS:-0}" -gt 0 ]; then
  echo "==> fuzzing (bounded)"
  scripts/fuzz.sh "$PML_FUZZ_SECONDS" $(sed -n 's/^ *pml_fuzzer(\([a-z0-9_]*\).*/\1/p' \
    fuzz/CMakeLists.txt | grep -vx dstack_api_fuzz)
fi
echo "==> testing"
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 900 -j"$(nproc)"
