#pragma once
// Appraisal (issue 5, DESIGN.md §4): turns an evidence bundle into a decision for one use under
// one policy, and signs it as an EAR-shaped attestation token. gRPC-free (STYLE.md §1): the
// service converts protos to the types here (verifier_convert.h).
//
// Steps: parse the policy (stored: PolicyStore, or inline JSON) → verify the TDX quote and replay
// the event log (VerifierCore) → verify the GPU evidence with the nonce derived from the quote's
// report data (GpuCore, lib/ratls GpuNonce) → run every check, each reported by name when it
// fails (never stopping at the first) → sign the token (SigningKeyStore).
//
// Checks and where they are reported (submodule "cpu0" for the TD, "gpuN" / "nvswitchN" for
// devices in their order of the bundle):
//   cpu0  TDX_VERIFICATION, EVENT_LOG_REPLAY, REPORT_DATA_BINDING, APP_INFO_CONSISTENCY,
//         POLICY_OS_MEASUREMENTS, POLICY_COMPOSE_HASH, POLICY_APP_ID, POLICY_TCB_STATUS,
//         POLICY_ADVISORY_IDS, POLICY_DEBUG_TD, POLICY_COLLATERAL_EXPIRED, POLICY_IMAGE_VARIANT,
//         POLICY_GPU_COUNT, POLICY_SIMULATED
//   gpuN  GPU_VERIFICATION, GPU_NONCE_BINDING, POLICY_GPU_CC_MODE, POLICY_GPU_MEASUREMENTS,
//         POLICY_GPU_VERSIONS, POLICY_SIMULATED
// Identity values (app id, compose hash, instance id, OS image hash) are taken from the replayed
// event log only; the bundle's AppInfo is a claim that must agree with it.
//
// Statuses (EAR): contraindicated when a check failed; warning when everything passed but the
// policy accepted something less than ideal (a TCB status other than UpToDate, advisories,
// expired collateral, simulated evidence); affirming otherwise. `allowed` = no check failed.
//
// Errors (not results): kInvalidArgument for an unusable bundle (no quote, a quote or GPU report
// that does not parse: the field is named) or an invalid inline policy; kNotFound for an unknown
// policy id / version; kFailedPrecondition / kUnavailable when Intel collateral is needed and
// cannot be had (VerifierCore); kInternal when the token cannot be signed.
//
// Thread-safety: Appraise is thread-safe.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lib/core/clock.h"
#include "lib/ratls/report_data.h"
#include "services/attestation/gpu_core.h"
#include "services/attestation/policy.h"
#include "services/attestation/verifier_core.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace pml::attestation {

class PolicyStore;
class SigningKeyStore;

// Mirrors pml.attestation.v1.AppraisalCheck.
enum class AppraisalCheck {
  kTdxVerification = 1,
  kGpuVerification = 2,
  kEventLogReplay = 3,
  kReportDataBinding = 4,
  kGpuNonceBinding = 5,
  kAppInfoConsistency = 6,
  kPolicyOsMeasurements = 7,
  kPolicyComposeHash = 8,
  kPolicyAppId = 9,
  kPolicyTcbStatus = 10,
  kPolicyAdvisoryIds = 11,
  kPolicyDebugTd = 12,
  kPolicyGpuCount = 13,
  kPolicyGpuCcMode = 14,
  kPolicyGpuMeasurements = 15,
  kPolicyGpuVersions = 16,
  kPolicySimulated = 17,
  kPolicyCollateralExpired = 18,
  kPolicyImageVariant = 19,
};
// "tdx_verification", "policy_compose_hash", ... (lower-case proto names without the prefix).
std::string AppraisalCheckName(AppraisalCheck check);

enum class EarStatus { kNone = 1, kAffirming = 2, kWarning = 3, kContraindicated = 4 };
// "none", "affirming", "warning", "contraindicated" (IETF EAR).
const char* EarStatusName(EarStatus status);

// A GPU's CC mode as the collector reported it (pml.common.v1.GpuCcMode).
enum class ReportedCcMode { kUnspecified, kOff, kOn, kDevtools, kProtectedPcie };

struct BundleGpu {
  GpuDeviceInput device;
  ReportedCcMode cc_mode = ReportedCcMode::kUnspecified;
};

// The bundle's claimed app identity (pml.common.v1.AppInfo); empty fields are not claimed.
struct ClaimedAppInfo {
  std::vector<uint8_t> app_id;
  std::vector<uint8_t> compose_hash;
  std::vector<uint8_t> instance_id;
  std::vector<uint8_t> os_image_hash;
  std::string image_variant;  // "production", "development" or "" (not stated)
};

struct AppraiseInput {
  std::vector<uint8_t> tdx_quote;
  std::string event_log;
  std::vector<BundleGpu> gpus;
  ClaimedAppInfo app_info;
  ratls::ReportData expected_report_data{};
  // Exactly one: a stored policy id (and version; nullopt = latest), or inline JSON.
  std::string policy_id;
  std::optional<int64_t> policy_version;
  std::optional<std::string> inline_policy_json;
  std::optional<absl::Time> at;                     // absent: the clock
  absl::Duration token_ttl = absl::ZeroDuration();  // zero: the default; capped at the maximum
  bool omit_token = false;
};

struct FailedCheck {
  AppraisalCheck check;
  std::string detail;
};

struct DeviceAppraisal {
  std::string submodule;  // "cpu0", "gpu0", ..., "nvswitch0", ...
  EarStatus status = EarStatus::kNone;
  std::vector<FailedCheck> failures;
  nlohmann::json claims;  // ITA names for cpu0, NVIDIA names for devices
};

struct AppraisalResult {
  bool allowed = false;
  EarStatus status = EarStatus::kNone;
  std::vector<DeviceAppraisal> devices;  // cpu0 first
  std::vector<FailedCheck> failures;     // every device's, in evaluation order
  std::string token;                     // empty when omitted
  absl::Time token_expires_at = absl::InfinitePast();
  std::string token_kid;
  std::string policy_id;  // "inline:<sha256 hex>" for inline policies
  int64_t policy_version = 0;
  std::string policy_sha256;
  TdxVerification tdx;
  // GPU verification and the input its outcomes point into; absent without GPU evidence.
  std::unique_ptr<GpuVerifyInput> gpu_input;
  std::optional<GpuVerification> gpu;
  LogAppInfo app_info;  // from the replayed event log
  bool simulated = false;
};

struct AppraiserOptions {
  std::string issuer = "pml-verifier";
  std::string build = "dev";  // ear.verifier-id.build
  absl::Duration default_token_ttl = absl::Minutes(10);
  absl::Duration max_token_ttl = absl::Hours(24);
};

class Appraiser {
 public:
  // Everything must outlive the appraiser; `policies` may be null (then only inline policies);
  // `registry` (may be null) receives pml_verifier_appraisals_total.
  Appraiser(VerifierCore& tdx, GpuCore& gpu, PolicyStore* policies, SigningKeyStore& keys,
            const core::Clock& clock, AppraiserOptions options, prometheus::Registry* registry);
  ~Appraiser();

  absl::StatusOr<AppraisalResult> Appraise(const AppraiseInput& input);

  const AppraiserOptions& options() const { return options_; }

 private:
  struct Metrics;
  // Parsed policies by content ("stored:" or "inline:" and the SHA-256 of the text), with their
  // digest (PolicyDigest): appraisals skip re-parsing and re-digesting the JSON.
  struct ParsedPolicy {
    AppraisalPolicy policy;
    std::string digest;
  };
  static constexpr size_t kParsedPolicyCacheEntries = 1024;
  static constexpr size_t kMaxCachedInlinePolicyBytes = 16 << 10;
  // The parse of `json`, from the cache when `cache`; ParsePolicyJson's errors.
  absl::StatusOr<std::shared_ptr<const ParsedPolicy>> Parse(absl::string_view kind,
                                                            const std::string& json, bool cache);

  VerifierCore& tdx_;
  GpuCore& gpu_;
  PolicyStore* policies_;
  SigningKeyStore& keys_;
  const core::Clock& clock_;
  const AppraiserOptions options_;
  std::unique_ptr<Metrics> metrics_;
  absl::Mutex policy_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const ParsedPolicy>> parsed_policies_
      ABSL_GUARDED_BY(policy_mu_);
};

}  // namespace pml::attestation
