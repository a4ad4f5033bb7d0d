#!/usr/bin/env bash
# Enforces the dependency direction of STYLE.md §1 by grepping includes (tests excluded):
#   lib/ never includes services/ or tools/; services never include each other;
#   only lib/rpc, services/ and tools/ include <grpcpp/...> or generated protos;
#   lib/tdx and lib/gpu (verifiers) never include lib/tee (evidence producers); nor do pml-verifier
#   and pmlctl's verify commands (pmlctl's `dev` commands, tools/pmlctl/dev_cmd.*, are the one
#   producer there: they write simulated collateral for development).
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
check() {  # check DESCRIPTION FILES_GLOB_REGEX INCLUDE_REGEX [EXCLUDED_FILES_REGEX]
  local what=$1 files=$2 pattern=$3 exclude=${4:-^$} hits
  hits=$(git ls-files -co --exclude-standard -- $files | grep -E '\.(h|cc)$' | grep -vE '(_test\.cc|/testing/)' \
    | grep -vE "$exclude" \
    | xargs -r grep -nE "^#include ${pattern}" || true)
  if [ -n "$hits" ]; then
    echo "include rule broken: $what"; echo "$hits"; fail=1
  fi
}
check "lib/ includes services/ or tools/" "lib" '"(services|tools)/'
check "grpc outside lib/rpc, services/, tools/" "lib/core lib/crypto lib/tdx lib/gpu lib/tee lib/ratls lib/store" '[<"](grpcpp/|grpc/|pml/.*\.pb\.h)'
check "verifier code includes lib/tee (evidence producer)" "lib/tdx lib/gpu services/attestation tools/pmlctl" '"lib/tee/' '^tools/pmlctl/dev_cmd\.(h|cc)$'
for svc in services/*/; do
  s=$(basename "$svc")
  others=$(ls services | grep -vx "$s" | paste -sd'|')
  [ -n "$others" ] && check "services/$s includes another service" "$svc" "\"services/($others)/"
done
if [ "$fail" = 0 ]; then echo "include rules: ok"; fi
exit "$fail"
