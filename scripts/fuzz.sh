#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz and runs each one for a
# bounded time, seeded with the shared vectors. Any crash, leak or sanitizer report fails.
#   scripts/fuzz.sh            30 s per target (what scripts/test.sh runs)
#   scripts/fuzz.sh 300        5 minutes per target
#   scripts/fuzz.sh 30 jwt_fuzz policy_json_fuzz   only the named targets
# PML_FUZZ_BUILD_DIR (default build-fuzz) picks the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-30}
shift $(($# > 0 ? 1 : 0))
SHARED=${PML_SHARED_DIR:-$(cd .. && pwd)/shared}
BUILD=${PML_FUZZ_BUILD_DIR:-build-fuzz}
if [ ! -f fuzz/CMakeLists.txt ]; then echo "==> no fuzz targets"; exit 0; fi
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DPML_FUZZ=ON -DPML_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=$(sed -n 's/^ *pml_fuzzer(\([a-z0-9_]*\).*/\1/p' fuzz/CMakeLists.txt)
if [ $# -gt 0 ]; then
  for t in "$@"; do
    grep -qx "$t" <<<"$targets" || { echo "==> no fuzz target $t" >&2; exit 2; }
  done
  targets="$*"
fi
ninja -C "$BUILD" -j"$(nproc)" $targets
# Writes stdin to the corpus as one seed, named by content hash like the copied files.
add_seed() {
  local tmp
  tmp=$(mktemp -p "$corpus")
  cat >"$tmp"
  mv "$tmp" "$corpus/$(sha256sum "$tmp" | cut -c1-16)"
}
for t in $targets; do
  corpus=$(mktemp -d)
  # Seeds: every file of the vectors that target's domain reads (quotes, collateral, reports),
  # and the hand-written ones in fuzz/seeds/<target without _fuzz>/.
  # Seeds are named by content hash, so same-named files of different vectors all count.
  case "$t" in
    tdx_*) seeds=$(find "$SHARED/vectors/tdx" -type f \( -name '*.bin' -o -name '*.json' -o -name '*.der' \)) ;;
    # The JSON documents that carry evidence (NVAT/PPCIe arrays, NRAS requests; by content, under
    # 64 KiB: larger ones only repeat entries and slow every run), and the hex-text reports and
    # nonces (DecodeHexReport, ParseNonceHex).
    gpu_evidence_json_fuzz)
      seeds=$(find "$SHARED/vectors/gpu" -type f -size -64k \
        \( \( -name '*.json' -exec grep -q '"evidence"' {} \; \) -o -name '*.hex.txt' \) -print) ;;
    gpu_*) seeds=$(find "$SHARED/vectors/gpu" -type f -size -1024k) ;;
    *) seeds="" ;;
  esac
  if [ -d "fuzz/seeds/${t%_fuzz}" ]; then seeds="$seeds $(find "fuzz/seeds/${t%_fuzz}" -type f)"; fi
  for f in $seeds; do cp "$f" "$corpus/$(sha256sum "$f" | cut -c1-16)"; done
  if [ "$t" = jwt_fuzz ]; then
    # jwt_fuzz reads a mode digit first (see fuzz/jwt_fuzz.cc): '0' + a JWK Set, and
    # '3' + a JWK Set on one line + '\n' + a token it signed, from the vectors' NRAS directories.
    for jwks in $(find "$SHARED/vectors/gpu" -type f -name '*jwks*.json'); do
      { printf 0; cat "$jwks"; } | add_seed
      for resp in $(find "$(dirname "$jwks")" -type f -name 'nras-response*.json'); do
        for token in $(grep -oE 'eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+' "$resp" || true); do
          { printf 3; tr -d '\r\n' <"$jwks"; printf '\n%s' "$token"; } | add_seed
        done
      done
    done
  fi
  echo "==> fuzzing $t for ${SECONDS_PER_TARGET}s ($(ls "$corpus" | wc -l) seeds)"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$BUILD/fuzz/$t" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 \
      -max_len=1048576 -print_final_stats=0 "$corpus" 2>&1 | tail -n 3
  rm -rf "$corpus"
done
echo "==> fuzzing finished: no crash, leak or sanitizer report"
