// libFuzzer target for the GPU evidence transport parsers (lib/gpu/evidence.h): ParseEvidenceJson
// (NVAT serialized evidence, PPCIe test data, NRAS request bodies), DecodeHexReport and
// ParseNonceHex must never crash, leak or read out of bounds. Traps when a result breaks what the
// header states: an evidence list holds 1..kMaxEvidenceDevices devices; a parsed nonce is the
// input's 64 hex digits (HexEncode gives them back, lower case; HexDecode also takes "0x"). Each
// parsed report goes on to ParseReport, as a verifier would. Seeds: the vectors' evidence JSON
// files (scripts/fuzz.sh):
//   gpu_evidence_json_fuzz -max_total_time=60 corpus/ ../shared/vectors/gpu/*/*evidence*.json
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/core/hex.h"
#include "lib/gpu/evidence.h"
#include "lib/gpu/report.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pml::gpu;  // NOLINT(google-build-using-namespace): fuzz entry point only
  const absl::string_view text(reinterpret_cast<const char*>(data), size);

  auto nonce = ParseNonceHex(text);
  if (nonce.ok()) {
    // The 64 digits, after surrounding whitespace and the "0x" prefix core::HexDecode allows.
    std::string digits = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
    if (absl::StartsWith(digits, "0x")) {
      digits.erase(0, 2);
    }
    if (pml::core::HexEncode(absl::MakeConstSpan(*nonce)) != digits) {
      __builtin_trap();
    }
  }

  auto hex_report = DecodeHexReport(text);
  if (hex_report.ok()) {
    (void)ParseReport(*hex_report);
  }

  auto devices = ParseEvidenceJson(text);
  if (!devices.ok()) {
    return 0;
  }
  if (devices->empty() || devices->size() > kMaxEvidenceDevices) {
    __builtin_trap();
  }
  volatile size_t sink = 0;
  for (const DeviceEvidence& device : *devices) {
    sink = sink + device.certificate_chain.size() + device.arch.has_value() +
           (device.nonce.has_value() ? (*device.nonce)[kNonceSize - 1] : 0);
    auto report = ParseReport(device.report);
    if (report.ok()) {
      sink = sink + report->SignedBytes().size();
    }
  }
  (void)sink;
  return 0;
}
