#pragma once
// pml-verifier's gRPC surface: thin handlers that convert protos and call the service core
// (STYLE.md §1). Methods whose behaviour lands in a later issue answer UNIMPLEMENTED naming it.

#include <grpcpp/grpcpp.h>

#include <memory>

#include "lib/rpc/authz.h"
#include "lib/rpc/unary.h"
#include "pml/attestation/v1/attestation.grpc.pb.h"
#include "services/attestation/verifier_core.h"

namespace pml::attestation {

// Who may call what (deny by default). Every method of every service below has an entry;
// verifier_service_test walks the descriptors to prove it.
rpc::RoleTable VerifierRoleTable();

class AttestationService final : public pml::attestation::v1::Attestation::CallbackService {
 public:
  // `core` does the TDX work; handlers run it on env's executor (RunUnary).
  AttestationService(const rpc::ServiceEnv& env, std::unique_ptr<VerifierCore> core)
      : env_(env), core_(std::move(core)) {}

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
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, VerifyGpuEvidence, "GPU evidence verification lands with issue 4 (lib/gpu)")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, Appraise, "appraisal lands with issue 5 (policies and tokens)")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, PutPolicy, "policies land with issue 5")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, GetPolicy, "policies land with issue 5")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, ListPolicies, "policies land with issue 5")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, DeletePolicy, "policies land with issue 5")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, GetJwks, "token signing keys land with issue 5")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, RotateSigningKey, "token signing keys land with issue 5")
 private:
  rpc::ServiceEnv env_;
  std::unique_ptr<VerifierCore> core_;
};

}  // namespace pml::attestation
