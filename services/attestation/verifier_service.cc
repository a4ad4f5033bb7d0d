#include "services/attestation/verifier_service.h"

#include <spdlog/spdlog.h>

#include "lib/core/status.h"
#include "services/attestation/verifier_convert.h"

namespace pml::attestation {

using rpc::Role;

namespace {
constexpr char kVerifyTdxQuote[] = "/pml.attestation.v1.Attestation/VerifyTdxQuote";
constexpr char kGetCollateralCacheStatus[] =
    "/pml.attestation.v1.Attestation/GetCollateralCacheStatus";
constexpr char kRefreshCollateral[] = "/pml.attestation.v1.Attestation/RefreshCollateral";
constexpr char kVerifyGpuEvidence[] = "/pml.attestation.v1.Attestation/VerifyGpuEvidence";
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
    PML_ASSIGN_OR_RETURN(TdxVerification v, core_->VerifyTdx(input));
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
                         CacheStatusToProto(core_->GetCacheStatus(), *req, resp);
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
        PML_ASSIGN_OR_RETURN(RefreshResult r, core_->Refresh(input));
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
                         PML_ASSIGN_OR_RETURN(GpuVerification v, gpu_->Verify(input));
                         SPDLOG_DEBUG("gpu_evidence_verified devices={} overall={} simulated={}",
                                      v.devices.size(), v.overall, v.simulated);
                         GpuVerificationToProto(v, resp);
                         return absl::OkStatus();
                       });
}

}  // namespace pml::attestation
