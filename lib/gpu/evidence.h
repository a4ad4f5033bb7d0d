#pragma once
// Evidence transport formats (spec §1): what a collector hands a verifier for one device — the
// report bytes and the device certificate chain (PEM text) — and the JSON encodings NVIDIA's
// tools use for sets of devices:
//   * NVAT serialized evidence / PPCIe test data: a JSON array of
//     {"arch","nonce"(hex),"evidence"(base64 report),"certificate"(base64 PEM chain)[,...]};
//   * the NRAS request body
//   {"nonce","arch","claims_version","evidence_list":[{evidence,certificate}]}.
// Values here are unauthenticated: the verifier decides what they are worth.
//
// Thread-safety: all functions are pure.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/gpu/report.h"

namespace pml::gpu {

struct DeviceEvidence {
  std::optional<Arch> arch;       // as claimed by the collector
  std::optional<Nonce> nonce;     // as claimed by the collector
  std::vector<uint8_t> report;    // raw SPDM report
  std::string certificate_chain;  // PEM text, leaf first
};

inline constexpr size_t kMaxEvidenceDevices = 64;

// Parses either JSON form above. kInvalidArgument "EVIDENCE_MALFORMED: ..." (naming the entry and
// field) on bad JSON, a missing field, bad base64/hex, an unknown arch, or more than
// kMaxEvidenceDevices entries.
absl::StatusOr<std::vector<DeviceEvidence>> ParseEvidenceJson(absl::string_view json);

// Decodes a report given as hex text (whitespace ignored), as NVIDIA's sample files are.
// kInvalidArgument "EVIDENCE_MALFORMED: ..." when it is not hex.
absl::StatusOr<std::vector<uint8_t>> DecodeHexReport(absl::string_view text);

// Parses a 32-byte nonce from 64 hex digits (surrounding whitespace ignored).
// kInvalidArgument "EVIDENCE_MALFORMED: ..." otherwise.
absl::StatusOr<Nonce> ParseNonceHex(absl::string_view text);

}  // namespace pml::gpu
