#pragma once
// pml-verifier's gRPC surface: thin handlers that convert protos and call the service core
// (STYLE.md §1). Methods whose behaviour lands in a later issue answer UNIMPLEMENTED naming it.

#include <memory>

#include <grpcpp/grpcpp.h>

#include "lib/rpc/authz.h"
#include "lib/rpc/unary.h"
#include "pml/attestation/v1/attestation.grpc.pb.h"
#include "services/attestation/gpu_core.h"
#include "services/attestation/verifier_core.h"

namespace pml::attestation {

// Who may call what (deny by default). Every method of every service below has an entry;
// verifier_service_test walks the descriptors to prove it.
rpc::RoleTable VerifierRoleTable();

class AttestationService final : public pml::attestation::v1::Attestation::CallbackService {
 public:
  // `core` does the TDX work, `gpu` the GPU work; handlers run them on env's executor
  // (RunUnary).
  AttestationService(const rpc::ServiceEnv& env, std::unique_ptr<VerifierCore> core,
                     std::unique_ptr<GpuCore> gpu)
      : env_(env), core_(std::move(core)), gpu_(std::move(gpu)) {}

  // A quote that parses but fails verification is OK with verified=false and Intel's class;
  // INVALID_ARGUMENT names the unusable field; FAILED_PRECONDITION / UNAVAILABLE when collateral
  // is needed and cannot be obtained (verifier_core.h).
  grpc::ServerUnaryReactor* VerifyTdxQuote(grpc::CallbackServerContext* ctx,
                                           const v1::VerifyTdxQuoteRequest* req,
                                           v1::VerifyTdxQuoteResponse* resp) override;
  grpc::ServerUnaryReactor* GetCollateralCacheStatus(
      grpc::CallbackServerContext* ctx, const v1::GetCollateralCacheStatusRequest* req,
      v1::GetCollateralCacheStatusResponse* resp) override;
  // FAILED_PRECONDITION without a cache dir, or when fetching is asked for without --pcs-url.
  grpc::ServerUnaryReactor* RefreshCollateral(grpc::CallbackServerContext* ctx,
                                              const v1::RefreshCollateralRequest* req,
                                              v1::RefreshCollateralResponse* resp) override;
  // A device that fails a check is OK with passed=false and its class; INVALID_ARGUMENT names an
  // unusable field (gpu_core.h).
  grpc::ServerUnaryReactor* VerifyGpuEvidence(grpc::CallbackServerContext* ctx,
                                              const v1::VerifyGpuEvidenceRequest* req,
                                              v1::VerifyGpuEvidenceResponse* resp) override;
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, Appraise,
                          "appraisal lands with issue 5 (policies and tokens)")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, PutPolicy,
                          "policies land with issue 5")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, GetPolicy,
                          "policies land with issue 5")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, ListPolicies,
                          "policies land with issue 5")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, DeletePolicy,
                          "policies land with issue 5")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, GetJwks,
                          "token signing keys land with issue 5")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, RotateSigningKey,
                          "token signing keys land with issue 5")
 private:
  rpc::ServiceEnv env_;
  std::unique_ptr<VerifierCore> core_;
  std::unique_ptr<GpuCore> gpu_;
};

}  // namespace pml::attestation
