#pragma once
// pml-verifier's gRPC surface: thin handlers that convert protos and call the service core
// (STYLE.md §1). Methods whose behaviour lands in a later issue answer UNIMPLEMENTED naming it.

#include <memory>

#include <grpcpp/grpcpp.h>

#include "lib/core/clock.h"
#include "lib/rpc/authz.h"
#include "lib/rpc/unary.h"
#include "pml/attestation/v1/attestation.grpc.pb.h"
#include "services/attestation/appraiser.h"
#include "services/attestation/gpu_core.h"
#include "services/attestation/policy_store.h"
#include "services/attestation/signing_keys.h"
#include "services/attestation/verifier_core.h"

namespace pml::attestation {

// Who may call what (deny by default). Every method of every service below has an entry;
// verifier_service_test walks the descriptors to prove it.
rpc::RoleTable VerifierRoleTable();

class AttestationService final : public pml::attestation::v1::Attestation::CallbackService {
 public:
  // Everything the handlers use; the service owns it. `policies`, `keys` and `appraiser` may be
  // null (a verifier without --state-dir): their RPCs then answer FAILED_PRECONDITION.
  struct Parts {
    std::unique_ptr<VerifierCore> tdx;
    std::unique_ptr<GpuCore> gpu;
    std::unique_ptr<PolicyStore> policies;
    std::unique_ptr<SigningKeyStore> keys;
    std::unique_ptr<Appraiser> appraiser;
  };
  // Handlers run on env's executor (RunUnary).
  AttestationService(const rpc::ServiceEnv& env, Parts parts, const core::Clock& clock);
  ~AttestationService() override;

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
  // A refusal is a result (allowed = false with the named checks); errors: appraiser.h.
  grpc::ServerUnaryReactor* Appraise(grpc::CallbackServerContext* ctx,
                                     const v1::AppraiseRequest* req,
                                     v1::AppraiseResponse* resp) override;
  // INVALID_ARGUMENT naming the field of a malformed policy; ABORTED when expected_version is not
  // the latest. Audited with the caller's SPIFFE id.
  grpc::ServerUnaryReactor* PutPolicy(grpc::CallbackServerContext* ctx,
                                      const v1::PutPolicyRequest* req,
                                      v1::PutPolicyResponse* resp) override;
  grpc::ServerUnaryReactor* GetPolicy(grpc::CallbackServerContext* ctx,
                                      const v1::GetPolicyRequest* req,
                                      v1::GetPolicyResponse* resp) override;
  grpc::ServerUnaryReactor* ListPolicies(grpc::CallbackServerContext* ctx,
                                         const v1::ListPoliciesRequest* req,
                                         v1::ListPoliciesResponse* resp) override;
  grpc::ServerUnaryReactor* DeletePolicy(grpc::CallbackServerContext* ctx,
                                         const v1::DeletePolicyRequest* req,
                                         v1::DeletePolicyResponse* resp) override;
  grpc::ServerUnaryReactor* GetJwks(grpc::CallbackServerContext* ctx, const v1::GetJwksRequest* req,
                                    v1::GetJwksResponse* resp) override;
  grpc::ServerUnaryReactor* RotateSigningKey(grpc::CallbackServerContext* ctx,
                                             const v1::RotateSigningKeyRequest* req,
                                             v1::RotateSigningKeyResponse* resp) override;

 private:
  absl::Status NeedState() const;

  rpc::ServiceEnv env_;
  Parts parts_;
  const core::Clock& clock_;
};

}  // namespace pml::attestation
