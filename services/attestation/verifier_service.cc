#include "services/attestation/verifier_service.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "absl/strings/str_join.h"
#include "lib/core/status.h"
#include "services/attestation/appraise_convert.h"
#include "services/attestation/policy.h"
#include "services/attestation/verifier_convert.h"

namespace pml::attestation {

using rpc::Role;

namespace {
constexpr char kVerifyTdxQuote[] = "/pml.attestation.v1.Attestation/VerifyTdxQuote";
constexpr char kGetCollateralCacheStatus[] =
    "/pml.attestation.v1.Attestation/GetCollateralCacheStatus";
constexpr char kRefreshCollateral[] = "/pml.attestation.v1.Attestation/RefreshCollateral";
constexpr char kVerifyGpuEvidence[] = "/pml.attestation.v1.Attestation/VerifyGpuEvidence";
constexpr char kAppraise[] = "/pml.attestation.v1.Attestation/Appraise";
constexpr char kPutPolicy[] = "/pml.attestation.v1.Attestation/PutPolicy";
constexpr char kGetPolicy[] = "/pml.attestation.v1.Attestation/GetPolicy";
constexpr char kListPolicies[] = "/pml.attestation.v1.Attestation/ListPolicies";
constexpr char kDeletePolicy[] = "/pml.attestation.v1.Attestation/DeletePolicy";
constexpr char kGetJwks[] = "/pml.attestation.v1.Attestation/GetJwks";
constexpr char kRotateSigningKey[] = "/pml.attestation.v1.Attestation/RotateSigningKey";

std::string Actor(const std::optional<rpc::Identity>& id) {
  return id.has_value() ? id->spiffe_id : std::string("unknown");
}
}  // namespace

rpc::RoleTable VerifierRoleTable() {
  return rpc::RoleTable{
      {"/pml.attestation.v1.Attestation/VerifyTdxQuote",
       {{Role::kOperator, Role::kViewer, Role::kKms}}},
      {"/pml.attestation.v1.Attestation/GetCollateralCacheStatus",
       {{Role::kOperator, Role::kViewer}}},
      {"/pml.attestation.v1.Attestation/RefreshCollateral", {{Role::kOperator}}},
      {"/pml.attestation.v1.Attestation/VerifyGpuEvidence",
       {{Role::kOperator, Role::kViewer, Role::kKms}}},
      {"/pml.attestation.v1.Attestation/Appraise", {{Role::kOperator, Role::kViewer, Role::kKms}}},
      {"/pml.attestation.v1.Attestation/PutPolicy", {{Role::kOperator}}},
      {"/pml.attestation.v1.Attestation/GetPolicy", {{Role::kOperator, Role::kViewer, Role::kKms}}},
      {"/pml.attestation.v1.Attestation/ListPolicies",
       {{Role::kOperator, Role::kViewer, Role::kKms}}},
      {"/pml.attestation.v1.Attestation/DeletePolicy", {{Role::kOperator}}},
      {"/pml.attestation.v1.Attestation/GetJwks",
       {{Role::kOperator, Role::kViewer, Role::kVmm, Role::kKms, Role::kVerifier}}},
      {"/pml.attestation.v1.Attestation/RotateSigningKey", {{Role::kOperator}}},
  };
}

grpc::ServerUnaryReactor* AttestationService::VerifyTdxQuote(grpc::CallbackServerContext* ctx,
                                                             const v1::VerifyTdxQuoteRequest* req,
                                                             v1::VerifyTdxQuoteResponse* resp) {
  return rpc::RunUnary(ctx, kVerifyTdxQuote, env_, [this, req, resp](const auto&) -> absl::Status {
    PML_ASSIGN_OR_RETURN(TdxVerifyInput input, TdxVerifyInputFromProto(*req));
    PML_ASSIGN_OR_RETURN(TdxVerification v, parts_.tdx->VerifyTdx(input));
    SPDLOG_DEBUG("tdx_quote_verified verified={} error_class={:?} quote_bytes={}", v.verified,
                 v.error_class, input.quote.size());
    TdxVerificationToProto(v, resp->mutable_result());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AttestationService::GetCollateralCacheStatus(
    grpc::CallbackServerContext* ctx, const v1::GetCollateralCacheStatusRequest* req,
    v1::GetCollateralCacheStatusResponse* resp) {
  return rpc::RunUnary(ctx, kGetCollateralCacheStatus, env_,
                       [this, req, resp](const auto&) -> absl::Status {
                         CacheStatusToProto(parts_.tdx->GetCacheStatus(), *req, resp);
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* AttestationService::RefreshCollateral(
    grpc::CallbackServerContext* ctx, const v1::RefreshCollateralRequest* req,
    v1::RefreshCollateralResponse* resp) {
  return rpc::RunUnary(
      ctx, kRefreshCollateral, env_, [this, req, resp](const auto&) -> absl::Status {
        bool intel = true;
        PML_ASSIGN_OR_RETURN(RefreshInput input, RefreshInputFromProto(*req, &intel));
        if (!intel) {
          return absl::OkStatus();  // NVIDIA items: nothing cached by this verifier yet
        }
        PML_ASSIGN_OR_RETURN(RefreshResult r, parts_.tdx->Refresh(input));
        SPDLOG_INFO("collateral_refreshed imported={} refreshed={} failed={}",
                    input.import_json.has_value(), r.refreshed.size(), r.failures.size());
        RefreshResultToProto(r, resp);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AttestationService::VerifyGpuEvidence(
    grpc::CallbackServerContext* ctx, const v1::VerifyGpuEvidenceRequest* req,
    v1::VerifyGpuEvidenceResponse* resp) {
  return rpc::RunUnary(ctx, kVerifyGpuEvidence, env_,
                       [this, req, resp](const auto&) -> absl::Status {
                         PML_ASSIGN_OR_RETURN(GpuVerifyInput input, GpuVerifyInputFromProto(*req));
                         PML_ASSIGN_OR_RETURN(GpuVerification v, parts_.gpu->Verify(input));
                         SPDLOG_DEBUG("gpu_evidence_verified devices={} overall={} simulated={}",
                                      v.devices.size(), v.overall, v.simulated);
                         GpuVerificationToProto(v, resp);
                         return absl::OkStatus();
                       });
}

AttestationService::AttestationService(const rpc::ServiceEnv& env, Parts parts,
                                       const core::Clock& clock)
    : env_(env), parts_(std::move(parts)), clock_(clock) {}

AttestationService::~AttestationService() = default;

absl::Status AttestationService::NeedState() const {
  if (parts_.policies == nullptr || parts_.keys == nullptr || parts_.appraiser == nullptr) {
    return absl::FailedPreconditionError(
        "this verifier runs without --state-dir: no policies, no token keys, no appraisal");
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AttestationService::Appraise(grpc::CallbackServerContext* ctx,
                                                       const v1::AppraiseRequest* req,
                                                       v1::AppraiseResponse* resp) {
  return rpc::RunUnary(ctx, kAppraise, env_, [this, req, resp](const auto& caller) -> absl::Status {
    PML_RETURN_IF_ERROR(NeedState());
    PML_ASSIGN_OR_RETURN(AppraiseInput input, AppraiseInputFromProto(*req));
    PML_ASSIGN_OR_RETURN(AppraisalResult r, parts_.appraiser->Appraise(input));
    std::vector<std::string> failed;
    for (const auto& f : r.failures)
      failed.push_back(AppraisalCheckName(f.check));
    SPDLOG_INFO(
        "appraised caller={:?} policy={:?} version={} allowed={} status={} simulated={} "
        "failed={:?}",
        Actor(caller), r.policy_id, r.policy_version, r.allowed, EarStatusName(r.status),
        r.simulated, absl::StrJoin(failed, ","));
    AppraisalResultToProto(r, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AttestationService::PutPolicy(grpc::CallbackServerContext* ctx,
                                                        const v1::PutPolicyRequest* req,
                                                        v1::PutPolicyResponse* resp) {
  return rpc::RunUnary(
      ctx, kPutPolicy, env_, [this, req, resp](const auto& caller) -> absl::Status {
        PML_RETURN_IF_ERROR(NeedState());
        if (!IsValidPolicyId(req->id()))
          return absl::InvalidArgumentError(
              "id: want 1-63 characters of [a-z0-9._-], starting with a letter or digit");
        auto policy = ParsePolicyJson(req->policy_json());
        if (!policy.ok())
          return absl::InvalidArgumentError(
              absl::StrCat("policy_json: ", policy.status().message()));
        if (!req->description().empty()) {
          policy->description = req->description();
          PML_RETURN_IF_ERROR(ValidatePolicy(*policy));
        }
        const std::string canonical = PolicyToJson(*policy);
        if (req->validate_only()) {
          PolicyRecord r;
          r.id = req->id();
          r.json = canonical;
          r.sha256 = PolicyDigest(*policy);
          r.created_at = clock_.Now();
          r.created_by = Actor(caller);
          PolicyRecordToProto(r, resp->mutable_policy());
          return absl::OkStatus();
        }
        std::optional<int64_t> expected;
        if (req->expected_version() != 0)
          expected = req->expected_version();
        PML_ASSIGN_OR_RETURN(
            PolicyRecord r,
            parts_.policies->Put(req->id(), canonical, Actor(caller), clock_.Now(), expected));
        SPDLOG_INFO("policy_put caller={:?} id={:?} version={} sha256={}", Actor(caller), r.id,
                    r.version, r.sha256);
        PolicyRecordToProto(r, resp->mutable_policy());
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AttestationService::GetPolicy(grpc::CallbackServerContext* ctx,
                                                        const v1::GetPolicyRequest* req,
                                                        v1::GetPolicyResponse* resp) {
  return rpc::RunUnary(ctx, kGetPolicy, env_, [this, req, resp](const auto&) -> absl::Status {
    PML_RETURN_IF_ERROR(NeedState());
    std::optional<int64_t> version;
    if (req->version() != 0)
      version = req->version();
    PML_ASSIGN_OR_RETURN(PolicyRecord r, parts_.policies->Get(req->id(), version));
    PolicyRecordToProto(r, resp->mutable_policy());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AttestationService::ListPolicies(grpc::CallbackServerContext* ctx,
                                                           const v1::ListPoliciesRequest* req,
                                                           v1::ListPoliciesResponse* resp) {
  return rpc::RunUnary(ctx, kListPolicies, env_, [this, req, resp](const auto&) -> absl::Status {
    PML_RETURN_IF_ERROR(NeedState());
    if (req->page_size() < 0)
      return absl::InvalidArgumentError("page_size: negative");
    PML_ASSIGN_OR_RETURN(
        PolicyPage page,
        parts_.policies->List(std::min(req->page_size(), kMaxPolicyPageSize), req->page_token()));
    for (const auto& r : page.policies)
      PolicyRecordToProto(r, resp->add_policies());
    resp->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AttestationService::DeletePolicy(grpc::CallbackServerContext* ctx,
                                                           const v1::DeletePolicyRequest* req,
                                                           v1::DeletePolicyResponse*) {
  return rpc::RunUnary(ctx, kDeletePolicy, env_, [this, req](const auto& caller) -> absl::Status {
    PML_RETURN_IF_ERROR(NeedState());
    PML_RETURN_IF_ERROR(parts_.policies->Delete(req->id(), Actor(caller), clock_.Now()));
    SPDLOG_INFO("policy_deleted caller={:?} id={:?}", Actor(caller), req->id());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AttestationService::GetJwks(grpc::CallbackServerContext* ctx,
                                                      const v1::GetJwksRequest*,
                                                      v1::GetJwksResponse* resp) {
  return rpc::RunUnary(ctx, kGetJwks, env_, [this, resp](const auto&) -> absl::Status {
    PML_RETURN_IF_ERROR(NeedState());
    resp->set_jwks_json(
        parts_.keys->Jwks(clock_.Now(), parts_.appraiser->options().max_token_ttl).dump());
    resp->set_current_key_id(parts_.keys->CurrentKid());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AttestationService::RotateSigningKey(grpc::CallbackServerContext* ctx,
                                                               const v1::RotateSigningKeyRequest*,
                                                               v1::RotateSigningKeyResponse* resp) {
  return rpc::RunUnary(
      ctx, kRotateSigningKey, env_, [this, resp](const auto& caller) -> absl::Status {
        PML_RETURN_IF_ERROR(NeedState());
        const std::string previous = parts_.keys->CurrentKid();
        const absl::Time now = clock_.Now();
        PML_ASSIGN_OR_RETURN(std::string kid, parts_.keys->Rotate(now));
        SPDLOG_INFO("signing_key_rotated caller={:?} kid={} previous={}", Actor(caller), kid,
                    previous);
        resp->set_key_id(kid);
        resp->set_previous_key_id(previous);
        resp->set_jwks_json(
            parts_.keys->Jwks(now, parts_.appraiser->options().max_token_ttl).dump());
        TimeToProto(now, resp->mutable_rotate_time());
        return absl::OkStatus();
      });
}

}  // namespace pml::attestation
