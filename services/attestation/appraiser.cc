#include "services/attestation/appraiser.h"

#include <algorithm>
#include <utility>

#include <openssl/crypto.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/gpu/errors.h"
#include "lib/tdx/tcb_info.h"
#include "services/attestation/policy_store.h"
#include "services/attestation/signing_keys.h"

namespace pml::attestation {
namespace {

template <typename C>
std::string Hex(const C& c) {
  return core::HexEncode(absl::Span<const uint8_t>(c.data(), c.size()));
}

// At most this many characters of a detail (details go into tokens and logs).
std::string Bounded(absl::string_view s) { return std::string(s.substr(0, 400)); }

bool SameBytes(absl::Span<const uint8_t> a, absl::Span<const uint8_t> b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// A bound list of hex values for details ("a1b2…, …").
template <typename C>
std::string Short(const C& c) {
  std::string h = Hex(c);
  return h.size() > 16 ? h.substr(0, 16) + "…" : h;
}

struct Ctx {
  const AppraisalPolicy& policy;
  const std::string& policy_name;  // "id vN" for details
};

// Failures of a verified GPU that are about measurements (reported as POLICY_GPU_MEASUREMENTS),
// as opposed to chains, OCSP and FWID (GPU_VERIFICATION). Matches lib/gpu's Failures() wording.
bool IsMeasurementFailure(absl::string_view f) {
  return absl::StartsWith(f, "measurement mismatch") || absl::StartsWith(f, "an index is active") ||
         (absl::StrContains(f, "RIM") && absl::StrContains(f, "unusable"));
}

EarStatus Worst(EarStatus a, EarStatus b) {
  return static_cast<int>(a) >= static_cast<int>(b) ? a : b;
}

const char* CcModeName(ReportedCcMode m) {
  switch (m) {
    case ReportedCcMode::kOff:
      return "off";
    case ReportedCcMode::kOn:
      return "on";
    case ReportedCcMode::kDevtools:
      return "devtools";
    case ReportedCcMode::kProtectedPcie:
      return "protected-pcie";
    case ReportedCcMode::kUnspecified:
      break;
  }
  return "not reported";
}

}  // namespace

std::string AppraisalCheckName(AppraisalCheck check) {
  switch (check) {
    case AppraisalCheck::kTdxVerification:
      return "tdx_verification";
    case AppraisalCheck::kGpuVerification:
      return "gpu_verification";
    case AppraisalCheck::kEventLogReplay:
      return "event_log_replay";
    case AppraisalCheck::kReportDataBinding:
      return "report_data_binding";
    case AppraisalCheck::kGpuNonceBinding:
      return "gpu_nonce_binding";
    case AppraisalCheck::kAppInfoConsistency:
      return "app_info_consistency";
    case AppraisalCheck::kPolicyOsMeasurements:
      return "policy_os_measurements";
    case AppraisalCheck::kPolicyComposeHash:
      return "policy_compose_hash";
    case AppraisalCheck::kPolicyAppId:
      return "policy_app_id";
    case AppraisalCheck::kPolicyTcbStatus:
      return "policy_tcb_status";
    case AppraisalCheck::kPolicyAdvisoryIds:
      return "policy_advisory_ids";
    case AppraisalCheck::kPolicyDebugTd:
      return "policy_debug_td";
    case AppraisalCheck::kPolicyGpuCount:
      return "policy_gpu_count";
    case AppraisalCheck::kPolicyGpuCcMode:
      return "policy_gpu_cc_mode";
    case AppraisalCheck::kPolicyGpuMeasurements:
      return "policy_gpu_measurements";
    case AppraisalCheck::kPolicyGpuVersions:
      return "policy_gpu_versions";
    case AppraisalCheck::kPolicySimulated:
      return "policy_simulated";
    case AppraisalCheck::kPolicyCollateralExpired:
      return "policy_collateral_expired";
    case AppraisalCheck::kPolicyImageVariant:
      return "policy_image_variant";
  }
  return "unknown";
}

const char* EarStatusName(EarStatus status) {
  switch (status) {
    case EarStatus::kNone:
      return "none";
    case EarStatus::kAffirming:
      return "affirming";
    case EarStatus::kWarning:
      return "warning";
    case EarStatus::kContraindicated:
      return "contraindicated";
  }
  return "none";
}

struct Appraiser::Metrics {
  prometheus::Family<prometheus::Counter>* appraisals = nullptr;
};

Appraiser::Appraiser(VerifierCore& tdx, GpuCore& gpu, PolicyStore* policies, SigningKeyStore& keys,
                     const core::Clock& clock, AppraiserOptions options,
                     prometheus::Registry* registry)
    : tdx_(tdx),
      gpu_(gpu),
      policies_(policies),
      keys_(keys),
      clock_(clock),
      options_(std::move(options)),
      metrics_(std::make_unique<Metrics>()) {
  if (registry != nullptr) {
    metrics_->appraisals = &prometheus::BuildCounter()
                                .Name("pml_verifier_appraisals_total")
                                .Help(
                                    "Appraisals by result (allowed, refused) and whether the "
                                    "evidence was simulated.")
                                .Register(*registry);
  }
}

Appraiser::~Appraiser() = default;

absl::StatusOr<std::shared_ptr<const Appraiser::ParsedPolicy>> Appraiser::Parse(
    absl::string_view kind, const std::string& json, bool cache) {
  // By the digest of the text itself, so that a hit is always the parse of these very bytes.
  const std::string key = absl::StrCat(kind, ":", core::HexEncode(crypto::Sha256(json)));
  if (cache) {
    absl::MutexLock l(&policy_mu_);
    auto it = parsed_policies_.find(key);
    if (it != parsed_policies_.end())
      return it->second;
  }
  PML_ASSIGN_OR_RETURN(AppraisalPolicy policy, ParsePolicyJson(json));
  auto p = std::make_shared<ParsedPolicy>();
  p->digest = PolicyDigest(policy);
  p->policy = std::move(policy);
  if (cache) {
    absl::MutexLock l(&policy_mu_);
    if (parsed_policies_.size() >= kParsedPolicyCacheEntries)
      parsed_policies_.clear();  // bounded; entries are parsed again on demand
    parsed_policies_.emplace(key, p);
  }
  return std::shared_ptr<const ParsedPolicy>(std::move(p));
}

absl::StatusOr<AppraisalResult> Appraiser::Appraise(const AppraiseInput& input) {
  if (input.tdx_quote.empty())
    return absl::InvalidArgumentError("evidence.tdx_quote: empty");

  // ---- The policy.
  AppraisalResult out;
  std::shared_ptr<const ParsedPolicy> parsed;
  if (input.inline_policy_json.has_value()) {
    // Only small inline policies are kept: callers choose their text, and a cache of 1 MiB
    // policies would be theirs to fill.
    auto p = Parse("inline", *input.inline_policy_json,
                   input.inline_policy_json->size() <= kMaxCachedInlinePolicyBytes);
    if (!p.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("inline_policy_json: ", p.status().message()));
    }
    parsed = *std::move(p);
    out.policy_sha256 = parsed->digest;
    out.policy_id = "inline:" + out.policy_sha256;
  } else {
    if (policies_ == nullptr)
      return absl::FailedPreconditionError("this verifier has no policy store");
    if (!IsValidPolicyId(input.policy_id))
      return absl::InvalidArgumentError("policy_id: not a policy id");
    PML_ASSIGN_OR_RETURN(PolicyRecord rec, policies_->Get(input.policy_id, input.policy_version));
    auto p = Parse("stored", rec.json, /*cache=*/true);
    if (!p.ok())
      return absl::InternalError("stored policy does not parse");  // validated when stored
    parsed = *std::move(p);
    out.policy_id = rec.id;
    out.policy_version = rec.version;
    out.policy_sha256 = rec.sha256;
  }
  const AppraisalPolicy& policy = parsed->policy;
  const std::string policy_name = input.inline_policy_json.has_value()
                                      ? std::string("inline policy")
                                      : absl::StrCat(out.policy_id, " v", out.policy_version);
  const absl::Time now = input.at.value_or(clock_.Now());

  // ---- Verification.
  TdxVerifyInput tin;
  tin.quote = input.tdx_quote;
  tin.at = now;
  tin.event_log = input.event_log;
  auto tdx = tdx_.VerifyTdx(tin);
  if (!tdx.ok()) {
    if (absl::IsInvalidArgument(tdx.status()))
      return absl::InvalidArgumentError(
          absl::StrCat("evidence.tdx_quote: ", tdx.status().message()));
    return tdx.status();
  }
  out.tdx = *std::move(tdx);
  const TdxVerification& t = out.tdx;
  if (!t.quote.td_report.has_value())
    return absl::InvalidArgumentError(
        "evidence.tdx_quote: not a TDX quote (SGX quotes carry no TD)");
  const tdx::TdReport& td = *t.quote.td_report;
  ratls::ReportData quote_report_data;
  std::copy(td.report_data.begin(), td.report_data.end(), quote_report_data.begin());

  if (!input.gpus.empty()) {
    out.gpu_input = std::make_unique<GpuVerifyInput>();
    const ratls::GpuNonceBytes nonce = ratls::GpuNonce(quote_report_data);
    std::copy(nonce.begin(), nonce.end(), out.gpu_input->nonce.begin());
    out.gpu_input->at = now;
    for (const BundleGpu& g : input.gpus)
      out.gpu_input->devices.push_back(g.device);
    auto gv = gpu_.Verify(*out.gpu_input);
    if (!gv.ok()) {
      if (absl::IsInvalidArgument(gv.status()))
        return absl::InvalidArgumentError(absl::StrCat("evidence.gpus: ", gv.status().message()));
      return gv.status();
    }
    out.gpu = *std::move(gv);
  }

  // ---- cpu0.
  DeviceAppraisal cpu;
  cpu.submodule = "cpu0";
  auto fail = [](DeviceAppraisal& d, AppraisalCheck c, std::string detail) {
    d.failures.push_back({c, Bounded(detail)});
  };
  bool warning = false;
  const bool tdx_simulated = t.evaluation.has_value() && t.evaluation->simulated();
  if (!t.verified) {
    if (t.collateral_time_error && t.evaluation.has_value()) {
      if (!policy.allow_expired_collateral) {
        fail(cpu, AppraisalCheck::kPolicyCollateralExpired,
             absl::StrCat(t.error_class, ": ", t.error_message, " (", policy_name,
                          " does not allow expired collateral)"));
      } else {
        warning = true;
      }
    } else {
      fail(cpu, AppraisalCheck::kTdxVerification,
           absl::StrCat(t.error_class, ": ", t.error_message));
    }
  }
  // Event log.
  if (input.event_log.empty()) {
    if (policy.require_event_log)
      fail(cpu, AppraisalCheck::kEventLogReplay, "the bundle has no event log");
  } else if (!t.event_log.has_value() || !t.event_log->error.empty()) {
    fail(cpu, AppraisalCheck::kEventLogReplay,
         absl::StrCat("the event log does not replay: ",
                      t.event_log.has_value() ? t.event_log->error : "not replayed"));
  }
  // RTMR3 must replay; RTMR0-2 must replay when the log carries their boot events (a log without
  // them claims nothing about them: the policy judges the quote's values).
  std::vector<uint32_t> bad;
  if (t.event_log.has_value() && t.event_log->error.empty()) {
    for (uint32_t i : t.event_log->mismatched) {
      if (i == 3 || t.event_log->events_per_rtmr[i] > 0)
        bad.push_back(i);
    }
    if (!bad.empty()) {
      fail(cpu, AppraisalCheck::kEventLogReplay,
           absl::StrCat("the event log replays to other values than the quote's RTMR ",
                        absl::StrJoin(bad, ", ")));
    }
  }
  const bool log_ok = !input.event_log.empty() && t.event_log.has_value() &&
                      t.event_log->error.empty() && bad.empty();
  if (log_ok)
    out.app_info = t.event_log->app_info;
  const LogAppInfo& app = out.app_info;
  // Report data.
  if (!SameBytes(quote_report_data, input.expected_report_data)) {
    fail(cpu, AppraisalCheck::kReportDataBinding,
         absl::StrCat("quote report_data ", Short(quote_report_data), " is not the expected ",
                      Short(input.expected_report_data)));
  }
  // App info: the bundle's claims must agree with the log, and MRCONFIGID (v1) with the compose
  // hash.
  if (log_ok) {
    auto agree = [&](absl::string_view name, const std::vector<uint8_t>& claimed,
                     const std::vector<uint8_t>& logged) {
      if (!claimed.empty() && !SameBytes(claimed, logged)) {
        fail(cpu, AppraisalCheck::kAppInfoConsistency,
             absl::StrCat("app_info.", name, " ", Short(claimed), " is not the event log's ",
                          logged.empty() ? std::string("(absent)") : Short(logged)));
      }
    };
    agree("app_id", input.app_info.app_id, app.app_id);
    agree("compose_hash", input.app_info.compose_hash, app.compose_hash);
    agree("instance_id", input.app_info.instance_id, app.instance_id);
    agree("os_image_hash", input.app_info.os_image_hash, app.os_image_hash);
    if (app.compose_hash.empty() || app.app_id.empty()) {
      fail(cpu, AppraisalCheck::kAppInfoConsistency,
           "the event log has no app-id or compose-hash event");
    }
    if (!app.error.empty())
      fail(cpu, AppraisalCheck::kAppInfoConsistency, app.error);
    if (td.mr_config_id[0] == 0x01 && app.compose_hash.size() == 32 &&
        !SameBytes(absl::MakeConstSpan(td.mr_config_id).subspan(1, 32), app.compose_hash)) {
      fail(cpu, AppraisalCheck::kAppInfoConsistency,
           absl::StrCat("MRCONFIGID ", Short(td.mr_config_id),
                        " does not commit to the compose hash ", Short(app.compose_hash)));
    }
  }
  // Policy: OS.
  if (!policy.allow_any_os) {
    bool os_ok = false;
    for (const OsMeasurements& m : policy.allowed_os) {
      auto eq = [](const std::optional<Measurement>& want, const tdx::Bytes48& got) {
        return !want.has_value() || SameBytes(*want, got);
      };
      if (eq(m.mrtd, td.mr_td) && eq(m.rtmr0, td.rtmr[0]) && eq(m.rtmr1, td.rtmr[1]) &&
          eq(m.rtmr2, td.rtmr[2])) {
        os_ok = true;
      }
    }
    for (const Sha256Hash& h : policy.allowed_os_image_hashes) {
      if (log_ok && SameBytes(h, app.os_image_hash))
        os_ok = true;
    }
    if (!os_ok) {
      fail(cpu, AppraisalCheck::kPolicyOsMeasurements,
           absl::StrCat("MRTD ", Short(td.mr_td), " / RTMR0-2",
                        app.os_image_hash.empty()
                            ? std::string()
                            : absl::StrCat(" / os image ", Short(app.os_image_hash)),
                        " not allowed by ", policy_name));
    }
  }
  // Policy: app.
  if (!policy.allow_any_app) {
    const bool compose_ok =
        app.compose_hash.size() == 32 &&
        std::any_of(policy.allowed_compose_hashes.begin(), policy.allowed_compose_hashes.end(),
                    [&](const Sha256Hash& h) { return SameBytes(h, app.compose_hash); });
    if (!compose_ok) {
      fail(cpu, AppraisalCheck::kPolicyComposeHash,
           !log_ok ? std::string("no verified compose hash: the event log does not replay")
                   : absl::StrCat(
                         "compose_hash ",
                         app.compose_hash.empty() ? std::string("(none)") : Short(app.compose_hash),
                         " not in ", policy_name));
    }
    const bool app_ok = app.app_id.size() == 20 &&
                        std::any_of(policy.allowed_app_ids.begin(), policy.allowed_app_ids.end(),
                                    [&](const AppId& h) { return SameBytes(h, app.app_id); });
    if (!app_ok) {
      fail(cpu, AppraisalCheck::kPolicyAppId,
           !log_ok ? std::string("no verified app id: the event log does not replay")
                   : absl::StrCat("app_id ",
                                  app.app_id.empty() ? std::string("(none)") : Hex(app.app_id),
                                  " not in ", policy_name));
    }
  }
  // Policy: TCB.
  if (t.evaluation.has_value()) {
    const std::string status(tdx::TcbStatusName(t.evaluation->tcb_status()));
    if (std::find(policy.allowed_tcb_statuses.begin(), policy.allowed_tcb_statuses.end(), status) ==
        policy.allowed_tcb_statuses.end()) {
      fail(cpu, AppraisalCheck::kPolicyTcbStatus,
           absl::StrCat("TCB status ", status, " not allowed by ", policy_name,
                        " (allowed: ", absl::StrJoin(policy.allowed_tcb_statuses, ", "), ")"));
    } else if (status != "UpToDate") {
      warning = true;
    }
    std::vector<std::string> refused;
    for (const auto& id : t.evaluation->advisory_ids()) {
      if (std::find(policy.allowed_advisory_ids.begin(), policy.allowed_advisory_ids.end(), id) ==
          policy.allowed_advisory_ids.end()) {
        refused.push_back(id);
      }
    }
    if (!refused.empty()) {
      fail(cpu, AppraisalCheck::kPolicyAdvisoryIds,
           absl::StrCat("advisories ", absl::StrJoin(refused, ", "), " not allowed by ",
                        policy_name));
    } else if (!t.evaluation->advisory_ids().empty()) {
      warning = true;
    }
  }
  // Policy: debug, image variant, GPU count.
  const bool debug = (td.td_attributes & tdx::kTdAttributeDebug) != 0;
  if (debug && !policy.allow_debug) {
    fail(cpu, AppraisalCheck::kPolicyDebugTd,
         absl::StrCat("the TD is debuggable (TDATTRIBUTES.DEBUG); ", policy_name,
                      " does not allow debug TDs"));
  }
  const std::string variant =
      input.app_info.image_variant.empty() ? "(not stated)" : input.app_info.image_variant;
  // An unstated variant passes only a policy that accepts both.
  const bool any_variant = policy.allowed_image_variants.size() >= 2;
  if (!(input.app_info.image_variant.empty() && any_variant) &&
      std::find(policy.allowed_image_variants.begin(), policy.allowed_image_variants.end(),
                input.app_info.image_variant) == policy.allowed_image_variants.end()) {
    fail(cpu, AppraisalCheck::kPolicyImageVariant,
         absl::StrCat("image variant ", variant, " not allowed by ", policy_name,
                      " (allowed: ", absl::StrJoin(policy.allowed_image_variants, ", "), ")"));
  }
  const uint32_t gpu_count =
      static_cast<uint32_t>(std::count_if(input.gpus.begin(), input.gpus.end(),
                                          [](const BundleGpu& g) { return !g.device.is_switch; }));
  if ((policy.gpu.count.has_value() && gpu_count != *policy.gpu.count) ||
      gpu_count < policy.gpu.min_count) {
    fail(cpu, AppraisalCheck::kPolicyGpuCount,
         absl::StrCat(gpu_count, " GPUs; ", policy_name, " wants ",
                      policy.gpu.count.has_value()
                          ? absl::StrCat("exactly ", *policy.gpu.count)
                          : absl::StrCat("at least ", policy.gpu.min_count)));
  }
  if (out.gpu.has_value() && out.gpu->topology.has_value() && !out.gpu->topology->ok()) {
    fail(cpu, AppraisalCheck::kGpuVerification,
         absl::StrCat("PPCIe topology: ", out.gpu->topology->message()));
  }
  out.simulated = tdx_simulated || (out.gpu.has_value() && out.gpu->simulated);
  if (tdx_simulated) {
    if (!policy.allow_simulated) {
      fail(cpu, AppraisalCheck::kPolicySimulated,
           absl::StrCat("the quote is simulated (lib/tee); ", policy_name,
                        " does not allow simulated evidence"));
    } else {
      warning = true;
    }
  }
  // cpu0 claims, under Intel Trust Authority's names.
  nlohmann::json& c = cpu.claims;
  c["attester_type"] = "TDX";
  c["tdx_mrtd"] = Hex(td.mr_td);
  for (int i = 0; i < 4; ++i)
    c[absl::StrCat("tdx_rtmr", i)] = Hex(td.rtmr[i]);
  c["tdx_mrconfigid"] = Hex(td.mr_config_id);
  c["tdx_mrowner"] = Hex(td.mr_owner);
  c["tdx_mrownerconfig"] = Hex(td.mr_owner_config);
  c["tdx_mrseam"] = Hex(td.mr_seam);
  c["tdx_mrsignerseam"] = Hex(td.mr_signer_seam);
  c["tdx_report_data"] = Hex(td.report_data);
  c["tdx_tee_tcb_svn"] = Hex(td.tee_tcb_svn);
  c["tdx_td_attributes_debug"] = debug;
  c["tdx_xfam"] = absl::StrCat(absl::Hex(td.xfam, absl::kZeroPad16));
  c["tdx_td_attributes"] = absl::StrCat(absl::Hex(td.td_attributes, absl::kZeroPad16));
  if (t.evaluation.has_value()) {
    c["attester_tcb_status"] = std::string(tdx::TcbStatusName(t.evaluation->tcb_status()));
    c["attester_advisory_ids"] = t.evaluation->advisory_ids();
    c["attester_tcb_date"] =
        absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t.evaluation->tcb_date(), absl::UTCTimeZone());
    c["tdx_collateral_expired"] = t.evaluation->collateral_expired();
  }
  if (log_ok) {
    c["pml_app_id"] = Hex(app.app_id);
    c["pml_compose_hash"] = Hex(app.compose_hash);
    c["pml_instance_id"] = Hex(app.instance_id);
    c["pml_os_image_hash"] = Hex(app.os_image_hash);
    if (!app.key_provider_info.empty())
      c["pml_key_provider"] = app.key_provider_info;
  }
  c["pml_image_variant"] = input.app_info.image_variant;
  c["simulated"] = tdx_simulated;
  cpu.status = !cpu.failures.empty() ? EarStatus::kContraindicated
               : warning             ? EarStatus::kWarning
                                     : EarStatus::kAffirming;
  out.devices.push_back(std::move(cpu));

  // ---- Devices.
  if (out.gpu.has_value()) {
    uint32_t gpu_n = 0, switch_n = 0;
    for (size_t i = 0; i < out.gpu->devices.size(); ++i) {
      const GpuDeviceOutcome& o = out.gpu->devices[i];
      const BundleGpu& bg = input.gpus[i];
      DeviceAppraisal d;
      d.submodule =
          bg.device.is_switch ? absl::StrCat("nvswitch", switch_n++) : absl::StrCat("gpu", gpu_n++);
      bool dev_warning = false;
      if (!o.result.ok()) {
        const std::string cls = gpu::ErrorClass(o.result.status());
        fail(d,
             cls == gpu::error_class::kNonceMismatch ? AppraisalCheck::kGpuNonceBinding
                                                     : AppraisalCheck::kGpuVerification,
             std::string(o.result.status().message()));
        d.claims["x-nvidia-error"] = Bounded(o.result.status().message());
        d.claims["simulated"] = false;
      } else {
        const gpu::VerifiedGpu& v = *o.result;
        std::vector<std::string> verification;
        for (const auto& f : v.Failures()) {
          if (!IsMeasurementFailure(f))
            verification.push_back(f);
        }
        if (!verification.empty())
          fail(d, AppraisalCheck::kGpuVerification, absl::StrJoin(verification, "; "));
        if (policy.gpu.require_measurements_match && !v.measres()) {
          std::vector<std::string> m;
          for (const auto& f : v.Failures()) {
            if (IsMeasurementFailure(f))
              m.push_back(f);
          }
          fail(d, AppraisalCheck::kPolicyGpuMeasurements,
               m.empty() ? std::string("measurements do not match") : absl::StrJoin(m, "; "));
        }
        if (!v.is_switch()) {
          auto listed = [](const std::vector<std::string>& allowed, const std::string& v) {
            return allowed.empty() || std::find(allowed.begin(), allowed.end(), v) != allowed.end();
          };
          if (!listed(policy.gpu.allowed_driver_versions, v.driver_version())) {
            fail(d, AppraisalCheck::kPolicyGpuVersions,
                 absl::StrCat("driver ", v.driver_version(), " not allowed by ", policy_name));
          }
          if (!listed(policy.gpu.allowed_vbios_versions, v.vbios_version())) {
            fail(d, AppraisalCheck::kPolicyGpuVersions,
                 absl::StrCat("VBIOS ", v.vbios_version(), " not allowed by ", policy_name));
          }
        }
        if (v.simulated()) {
          if (!policy.allow_simulated) {
            fail(d, AppraisalCheck::kPolicySimulated,
                 absl::StrCat("the device is simulated (lib/tee); ", policy_name,
                              " does not allow simulated evidence"));
          } else {
            dev_warning = true;
          }
        }
        d.claims = v.Claims();
        d.claims["simulated"] = v.simulated();
      }
      if (!bg.device.is_switch && policy.gpu.require_cc) {
        const bool cc_ok = bg.cc_mode == ReportedCcMode::kOn ||
                           bg.cc_mode == ReportedCcMode::kProtectedPcie ||
                           (bg.cc_mode == ReportedCcMode::kDevtools && policy.gpu.allow_devtools);
        if (!cc_ok) {
          fail(d, AppraisalCheck::kPolicyGpuCcMode,
               absl::StrCat("confidential computing is ", CcModeName(bg.cc_mode),
                            bg.cc_mode == ReportedCcMode::kDevtools
                                ? absl::StrCat(" (", policy_name, " does not allow devtools)")
                                : std::string()));
        }
      }
      d.claims["pml_cc_mode"] = CcModeName(bg.cc_mode);
      d.status = !d.failures.empty() ? EarStatus::kContraindicated
                 : dev_warning       ? EarStatus::kWarning
                                     : EarStatus::kAffirming;
      out.devices.push_back(std::move(d));
    }
  }

  // ---- Verdict.
  out.status = EarStatus::kAffirming;
  for (const auto& d : out.devices) {
    out.status = Worst(out.status, d.status);
    out.failures.insert(out.failures.end(), d.failures.begin(), d.failures.end());
  }
  out.allowed = out.failures.empty();
  if (metrics_->appraisals != nullptr) {
    metrics_->appraisals
        ->Add({{"result", out.allowed ? "allowed" : "refused"},
               {"simulated", out.simulated ? "true" : "false"}})
        .Increment();
  }
  if (input.omit_token)
    return out;

  // ---- Token (EAR).
  absl::Duration ttl =
      input.token_ttl > absl::ZeroDuration() ? input.token_ttl : options_.default_token_ttl;
  ttl = std::min(ttl, options_.max_token_ttl);
  const absl::Time issued = clock_.Now();
  out.token_expires_at = issued + ttl;
  nlohmann::json payload;
  payload["eat_profile"] = "tag:github.com,2023:veraison/ear";
  payload["iss"] = options_.issuer;
  payload["iat"] = absl::ToUnixSeconds(issued);
  payload["nbf"] = absl::ToUnixSeconds(issued);
  payload["exp"] = absl::ToUnixSeconds(out.token_expires_at);
  payload["jti"] = core::HexEncode(crypto::RandomBytes(16));
  payload["ear.verifier-id"] = {{"developer", "pml"}, {"build", options_.build}};
  payload["ear.status"] = EarStatusName(out.status);
  payload["pml.allowed"] = out.allowed;
  payload["pml.report_data"] = Hex(input.expected_report_data);
  payload["pml.verification_time"] = absl::ToUnixSeconds(now);
  payload["pml.policy"] = {
      {"id", out.policy_id}, {"version", out.policy_version}, {"sha256", out.policy_sha256}};
  payload["simulated"] = out.simulated;
  nlohmann::json submods = nlohmann::json::object();
  for (const auto& d : out.devices) {
    nlohmann::json s = d.claims;
    s["ear.status"] = EarStatusName(d.status);
    s["ear.appraisal-policy-id"] = out.policy_id;
    nlohmann::json failed = nlohmann::json::array();
    for (const auto& f : d.failures)
      failed.push_back({{"check", AppraisalCheckName(f.check)}, {"detail", f.detail}});
    s["pml.failed_checks"] = failed;
    submods[d.submodule] = s;
  }
  payload["submods"] = submods;
  PML_ASSIGN_OR_RETURN(out.token, keys_.Sign(payload, issued));
  // The kid that signed it, from the token's own header (a rotation may have happened since).
  auto header = core::Base64UrlDecode(absl::string_view(out.token).substr(0, out.token.find('.')));
  if (header.ok()) {
    auto h = nlohmann::json::parse(core::ToString(*header), nullptr, /*allow_exceptions=*/false);
    if (h.is_object() && h.contains("kid") && h["kid"].is_string())
      out.token_kid = h["kid"].get<std::string>();
  }
  return out;
}

}  // namespace pml::attestation
