#pragma once
// Appraisal policies (DESIGN.md §4): the declarative statement of which verified evidence a use
// accepts. A policy is data only: this file defines its model, its JSON form and validation;
// Appraise (a separate step after verification) applies it. gRPC-free and proto-free.
//
// Strictness is the rule: nothing is accepted unless the policy says so.
//  - OS: the TD must match one `allowed_os` entry (every register the entry states must equal
//    the TD's; registers it omits are not checked) or have an os image hash in
//    `allowed_os_image_hashes`. A policy must state at least one of those, or set
//    `allow_any_os: true` explicitly (and then list none).
//  - App: the compose hash must be in `allowed_compose_hashes` and the app id in
//    `allowed_app_ids`; an empty list accepts nothing, unless `allow_any_app: true` (and then
//    both lists are empty).
//  - TCB: the verified TCB status must be in `allowed_tcb_statuses` (default ["UpToDate"];
//    "Revoked" can never be listed) and every advisory id the verification reports must be in
//    `allowed_advisory_ids` (default empty).
//  - Debug TDs, simulated evidence and expired collateral are refused unless the matching
//    `allow_*` flag is true; only image variants in `allowed_image_variants` (default
//    ["production"]) are accepted.
//  - GPUs: see GpuPolicy.
//
// JSON form: one object whose keys are the field names below (all optional on input, defaults as
// stated); bytes are hex strings of exactly the field's length (either case in, lower case out,
// no "0x"). ParsePolicyJson refuses any unknown field, wrong type, bad hex or length, unknown or
// forbidden TCB status, duplicate entry or duplicate key, a document over kMaxPolicyJsonBytes and
// a list over kMaxPolicyListEntries, with kInvalidArgument naming the JSON path, e.g.
// "policy.gpu.cont: unknown field" or "policy.allowed_compose_hashes[2]: want 64 hex digits".
// PolicyToJson writes the canonical form (every field, keys sorted, no whitespace, lower-case
// hex), so ParsePolicyJson(PolicyToJson(p)) == p for every valid p, and PolicyDigest identifies
// a policy's content.
//
// Everything here is pure and thread-safe.

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pml::attestation {

// A TDX measurement register value (SHA-384): MRTD, RTMR0..3.
using Measurement = std::array<uint8_t, 48>;
// SHA-256 digests: os image hash, compose hash.
using Sha256Hash = std::array<uint8_t, 32>;
// A dstack app id.
using AppId = std::array<uint8_t, 20>;

inline constexpr size_t kMaxPolicyJsonBytes = size_t{1} << 20;
inline constexpr size_t kMaxPolicyListEntries = 4096;
inline constexpr size_t kMaxPolicyDescriptionBytes = 1024;
// Bound on gpu.count and gpu.min_count.
inline constexpr uint32_t kMaxPolicyGpuCount = 64;
// Bound on a driver/VBIOS version or advisory id string.
inline constexpr size_t kMaxPolicyTokenBytes = 64;

// One accepted OS: the registers it states must all match; an omitted one matches anything.
// At least one must be present. JSON: {"mrtd": hex96, "rtmr0": hex96, "rtmr1": ..., "rtmr2": ...}.
struct OsMeasurements {
  std::optional<Measurement> mrtd;
  std::optional<Measurement> rtmr0;
  std::optional<Measurement> rtmr1;
  std::optional<Measurement> rtmr2;

  bool operator==(const OsMeasurements&) const = default;
  auto operator<=>(const OsMeasurements&) const = default;
};

// Requirements on the GPUs attached to the CVM (JSON object "gpu").
struct GpuPolicy {
  // Exact number of GPUs required; absent accepts any number, 0 included.
  std::optional<uint32_t> count;
  // Fewest GPUs accepted (default 0). When `count` is set it must be >= min_count.
  uint32_t min_count = 0;
  // Every GPU must be in confidential-computing mode.
  bool require_cc = true;
  // Accept GPUs in CC "devtools" mode (debuggable, not confidential).
  bool allow_devtools = false;
  // Every GPU measurement must match its reference (RIM) value.
  bool require_measurements_match = true;
  // Accepted driver / VBIOS versions as the evidence reports them (e.g. "550.54.15",
  // "96.00.5e.00.01"; characters [0-9A-Za-z._-], at most kMaxPolicyTokenBytes, compared
  // exactly). Empty accepts any version.
  std::vector<std::string> allowed_driver_versions;
  std::vector<std::string> allowed_vbios_versions;

  bool operator==(const GpuPolicy&) const = default;
};

struct AppraisalPolicy {
  // OS (see the top of this file). Entries and hashes are unique.
  std::vector<OsMeasurements> allowed_os;
  std::vector<Sha256Hash> allowed_os_image_hashes;
  bool allow_any_os = false;

  // App: unique entries; empty lists accept nothing unless allow_any_app.
  std::vector<Sha256Hash> allowed_compose_hashes;
  std::vector<AppId> allowed_app_ids;
  bool allow_any_app = false;

  // Intel's TCB status names: UpToDate, SWHardeningNeeded, ConfigurationNeeded,
  // ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded,
  // TDRelaunchAdvised, TDRelaunchAdvisedConfigurationNeeded. Non-empty, unique, never Revoked.
  std::vector<std::string> allowed_tcb_statuses = {"UpToDate"};
  // Intel advisory ids ("INTEL-SA-00837": upper-case letters and digits in dash-separated
  // groups, starting with a letter, at most kMaxPolicyTokenBytes). Unique.
  std::vector<std::string> allowed_advisory_ids;

  bool allow_debug = false;               // accept TDs with the DEBUG attribute
  bool allow_simulated = false;           // accept evidence from the simulated TEE
  bool allow_expired_collateral = false;  // accept collateral past its nextUpdate
  // The bundle must carry an event log that replays to RTMR3 (default). false: a bundle without
  // one is appraised on its platform and OS measurements alone (no verified app identity, so the
  // app checks then need allow_any_app); a log that is given is always checked.
  bool require_event_log = true;
  // "production" and/or "development"; non-empty, unique.
  std::vector<std::string> allowed_image_variants = {"production"};

  GpuPolicy gpu;

  // Free text for operators: valid UTF-8, at most kMaxPolicyDescriptionBytes, no control
  // characters other than tab and newline.
  std::string description;

  bool operator==(const AppraisalPolicy&) const = default;
};

// Checks every rule stated above on a policy built in code (ParsePolicyJson runs it too).
// kInvalidArgument naming the JSON path of the first offending field, e.g.
// "policy.allowed_tcb_statuses[1]: Revoked may never be allowed".
absl::Status ValidatePolicy(const AppraisalPolicy& policy);

// Parses and validates the JSON form. kInvalidArgument naming the JSON path and the problem (see
// the top of this file); a malformed document names the byte offset, never the input text.
absl::StatusOr<AppraisalPolicy> ParsePolicyJson(absl::string_view json);

// The canonical JSON form of a policy. Precondition: ValidatePolicy(policy) is OK (an invalid
// policy is still written, but may not parse back).
std::string PolicyToJson(const AppraisalPolicy& policy);

// Lower-case hex SHA-256 of PolicyToJson(policy): 64 characters.
std::string PolicyDigest(const AppraisalPolicy& policy);

// Policy ids: [a-z0-9][a-z0-9._-]{0,62} (1 to 63 characters).
bool IsValidPolicyId(absl::string_view id);

}  // namespace pml::attestation
