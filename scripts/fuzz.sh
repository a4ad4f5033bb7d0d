#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz and runs each one for a
# bounded time, seeded with the shared vectors. Any crash, leak or sanitizer report fails.
#   scripts/fuzz.sh            30 s per target (what scripts/test.sh runs)
#   scripts/fuzz.sh 300        5 minutes per target
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-30}
SHARED=${PML_SHARED_DIR:-$(cd .. && pwd)/shared}
if [ ! -f fuzz/CMakeLists.txt ]; then echo "==> no fuzz targets"; exit 0; fi
cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DPML_FUZZ=ON -DPML_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=$(sed -n 's/^ *pml_fuzzer(\([a-z0-9_]*\).*/\1/p' fuzz/CMakeLists.txt)
ninja -C build-fuzz -j"$(nproc)" $targets
for t in $targets; do
  corpus=$(mktemp -d)
  # Seeds: every file of the vectors that target's domain reads (quotes, collateral, reports).
  # Seeds are named by content hash, so same-named files of different vectors all count.
  case "$t" in
    tdx_*) seeds=$(find "$SHARED/vectors/tdx" -type f \( -name '*.bin' -o -name '*.json' -o -name '*.der' \)) ;;
    gpu_*) seeds=$(find "$SHARED/vectors/gpu" -type f -size -1024k) ;;
    *) seeds="" ;;
  esac
  for f in $seeds; do cp "$f" "$corpus/$(sha256sum "$f" | cut -c1-16)"; done
  echo "==> fuzzing $t for ${SECONDS_PER_TARGET}s ($(ls "$corpus" | wc -l) seeds)"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "build-fuzz/fuzz/$t" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 \
      -max_len=1048576 -print_final_stats=0 "$corpus" 2>&1 | tail -n 3
  rm -rf "$corpus"
done
echo "==> fuzzing finished: no crash, leak or sanitizer report"
