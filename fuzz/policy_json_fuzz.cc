// libFuzzer target for the appraisal policy parser (services/attestation/policy.h): ParsePolicyJson
// must never crash, leak or read out of bounds, and whatever it accepts must satisfy the
// documented invariants, else the target traps:
//   * ValidatePolicy(p) is OK;
//   * ParsePolicyJson(PolicyToJson(p)) succeeds and equals p;
//   * PolicyToJson is a fixed point: PolicyToJson(ParsePolicyJson(PolicyToJson(p))) ==
//     PolicyToJson(p), and so PolicyDigest agrees.
// IsValidPolicyId (policy ids come from RPC callers too) is run on the same bytes.
// Seeds: fuzz/seeds/policy_json/*.json (scripts/fuzz.sh copies them):
//   policy_json_fuzz -max_total_time=60 corpus/ fuzz/seeds/policy_json/
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "services/attestation/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pml::attestation;  // NOLINT(google-build-using-namespace): fuzz entry point only
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  volatile bool id_ok = IsValidPolicyId(text);
  (void)id_ok;

  auto policy = ParsePolicyJson(text);
  if (!policy.ok()) {
    return 0;
  }
  if (!ValidatePolicy(*policy).ok()) {
    __builtin_trap();
  }

  const std::string canonical = PolicyToJson(*policy);
  auto reparsed = ParsePolicyJson(canonical);
  if (!reparsed.ok()) {
    __builtin_trap();
  }
  if (!(*reparsed == *policy)) {
    __builtin_trap();
  }
  if (PolicyToJson(*reparsed) != canonical) {
    __builtin_trap();
  }
  if (PolicyDigest(*reparsed) != PolicyDigest(*policy)) {
    __builtin_trap();
  }
  return 0;
}
