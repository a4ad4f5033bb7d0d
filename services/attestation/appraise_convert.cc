#include "services/attestation/appraise_convert.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/ratls/report_data.h"
#include "services/attestation/verifier_convert.h"

namespace pml::attestation {
namespace {

std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }

ReportedCcMode CcModeFromProto(common::v1::GpuCcMode m) {
  switch (m) {
    case common::v1::GPU_CC_MODE_OFF:
      return ReportedCcMode::kOff;
    case common::v1::GPU_CC_MODE_ON:
      return ReportedCcMode::kOn;
    case common::v1::GPU_CC_MODE_DEVTOOLS:
      return ReportedCcMode::kDevtools;
    case common::v1::GPU_CC_MODE_PROTECTED_PCIE:
      return ReportedCcMode::kProtectedPcie;
    default:
      return ReportedCcMode::kUnspecified;
  }
}

absl::StatusOr<ratls::ReportDataPurpose> PurposeFromProto(v1::ReportDataPurpose p) {
  switch (p) {
    case v1::REPORT_DATA_PURPOSE_RA_TLS_CERT:
      return ratls::ReportDataPurpose::kRaTlsCert;
    case v1::REPORT_DATA_PURPOSE_KMS_KEY_RELEASE:
      return ratls::ReportDataPurpose::kKmsKeyRelease;
    case v1::REPORT_DATA_PURPOSE_KMS_REPLICA_JOIN:
      return ratls::ReportDataPurpose::kKmsReplicaJoin;
    case v1::REPORT_DATA_PURPOSE_NONCE:
      return ratls::ReportDataPurpose::kNonce;
    case v1::REPORT_DATA_PURPOSE_APP_DATA:
      return ratls::ReportDataPurpose::kAppData;
    default:
      return absl::InvalidArgumentError("binding.purpose: not set");
  }
}

}  // namespace

absl::StatusOr<AppraiseInput> AppraiseInputFromProto(const v1::AppraiseRequest& req) {
  if (!req.has_evidence())
    return absl::InvalidArgumentError("evidence: missing");
  const common::v1::EvidenceBundle& b = req.evidence();
  AppraiseInput in;
  in.tdx_quote = Bytes(b.tdx_quote());
  in.event_log = b.event_log();
  // The GPU list reuses VerifyGpuEvidence's conversion (arch/kind checks, chains, reports).
  v1::VerifyGpuEvidenceRequest gpu_req;
  *gpu_req.mutable_evidence() = b.gpus();
  gpu_req.set_expected_nonce(std::string(32, '\0'));  // replaced by the derived nonce
  auto gpus = GpuVerifyInputFromProto(gpu_req);
  if (!gpus.ok())
    return absl::InvalidArgumentError(absl::StrCat("evidence.gpus: ", gpus.status().message()));
  for (int i = 0; i < b.gpus_size(); ++i) {
    in.gpus.push_back({std::move(gpus->devices[i]), CcModeFromProto(b.gpus(i).cc_mode())});
  }
  const common::v1::AppInfo& a = b.app_info();
  in.app_info.app_id = Bytes(a.app_id());
  in.app_info.compose_hash = Bytes(a.compose_hash());
  in.app_info.instance_id = Bytes(a.instance_id());
  in.app_info.os_image_hash = Bytes(a.os_image_hash());
  switch (a.image_variant()) {
    case common::v1::IMAGE_VARIANT_PRODUCTION:
      in.app_info.image_variant = "production";
      break;
    case common::v1::IMAGE_VARIANT_DEVELOPMENT:
      in.app_info.image_variant = "development";
      break;
    default:
      break;
  }
  switch (req.expected_report_data_case()) {
    case v1::AppraiseRequest::kReportData:
      if (req.report_data().size() != 64) {
        return absl::InvalidArgumentError(
            absl::StrCat("report_data: ", req.report_data().size(), " bytes, want 64"));
      }
      std::copy(req.report_data().begin(), req.report_data().end(),
                in.expected_report_data.begin());
      break;
    case v1::AppraiseRequest::kBinding: {
      PML_ASSIGN_OR_RETURN(ratls::ReportDataPurpose purpose,
                           PurposeFromProto(req.binding().purpose()));
      auto rd = ratls::ComputeReportData(purpose, Bytes(req.binding().value()));
      if (!rd.ok())
        return absl::InvalidArgumentError(absl::StrCat("binding.value: ", rd.status().message()));
      in.expected_report_data = *rd;
      break;
    }
    default:
      return absl::InvalidArgumentError(
          "expected_report_data: give report_data or binding (what the quote must commit to)");
  }
  switch (req.policy_case()) {
    case v1::AppraiseRequest::kPolicyId:
      in.policy_id = req.policy_id();
      if (req.policy_version() != 0)
        in.policy_version = req.policy_version();
      break;
    case v1::AppraiseRequest::kInlinePolicyJson:
      in.inline_policy_json = req.inline_policy_json();
      break;
    default:
      return absl::InvalidArgumentError("policy: give policy_id or inline_policy_json");
  }
  if (req.has_verification_time()) {
    PML_ASSIGN_OR_RETURN(in.at, TimeFromProto(req.verification_time(), "verification_time"));
  }
  in.token_ttl = absl::Seconds(req.token_ttl_seconds());
  in.omit_token = req.omit_token();
  return in;
}

void AppraisalResultToProto(const AppraisalResult& r, v1::AppraiseResponse* out) {
  out->set_allowed(r.allowed);
  out->set_status(static_cast<v1::EarStatus>(r.status));
  for (const auto& d : r.devices) {
    v1::DeviceAppraisal* p = out->add_devices();
    p->set_submodule(d.submodule);
    p->set_status(static_cast<v1::EarStatus>(d.status));
    p->set_passed(d.failures.empty());
    for (const auto& f : d.failures) {
      v1::FailedCheck* c = p->add_failed_checks();
      c->set_check(static_cast<v1::AppraisalCheck>(f.check));
      c->set_detail(f.detail);
    }
    p->set_claims_json(d.claims.dump());
  }
  for (const auto& f : r.failures) {
    v1::FailedCheck* c = out->add_failed_checks();
    c->set_check(static_cast<v1::AppraisalCheck>(f.check));
    c->set_detail(f.detail);
  }
  out->set_token(r.token);
  if (!r.token.empty())
    TimeToProto(r.token_expires_at, out->mutable_token_expires_at());
  out->set_token_key_id(r.token_kid);
  out->set_policy_id(r.policy_id);
  out->set_policy_version(static_cast<uint32_t>(r.policy_version));
  TdxVerificationToProto(r.tdx, out->mutable_tdx());
  if (r.gpu.has_value())
    GpuVerificationToProto(*r.gpu, out->mutable_gpu());
  common::v1::AppInfo* a = out->mutable_app_info();
  a->set_app_id(core::ToString(r.app_info.app_id));
  a->set_compose_hash(core::ToString(r.app_info.compose_hash));
  a->set_instance_id(core::ToString(r.app_info.instance_id));
  a->set_os_image_hash(core::ToString(r.app_info.os_image_hash));
  a->set_key_provider_info(r.app_info.key_provider_info);
  out->set_simulated(r.simulated);
}

void PolicyRecordToProto(const PolicyRecord& r, v1::Policy* out) {
  out->set_id(r.id);
  out->set_version(static_cast<uint32_t>(r.version));
  out->set_policy_json(r.json);
  auto p = ParsePolicyJson(r.json);
  if (p.ok())
    out->set_description(p->description);
  auto sha = core::HexDecode(r.sha256);
  if (sha.ok())
    out->set_sha256(core::ToString(*sha));
  TimeToProto(r.created_at, out->mutable_create_time());
  out->set_created_by(r.created_by);
}

}  // namespace pml::attestation
