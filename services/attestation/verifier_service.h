#pragma once
// pml-verifier's gRPC surface: thin handlers that convert protos and call the service core
// (STYLE.md §1). Methods whose behaviour lands in a later issue answer UNIMPLEMENTED naming it.

#include <grpcpp/grpcpp.h>

#include "lib/rpc/authz.h"
#include "lib/rpc/unary.h"
#include "pml/attestation/v1/attestation.grpc.pb.h"

namespace pml::attestation {

// Who may call what (deny by default). Every method of every service below has an entry;
// verifier_service_test walks the descriptors to prove it.
rpc::RoleTable VerifierRoleTable();

class AttestationService final : public pml::attestation::v1::Attestation::CallbackService {
 public:
  explicit AttestationService(const rpc::ServiceEnv& env) : env_(env) {}
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, VerifyTdxQuote, "TDX quote verification lands with issue 3 (lib/tdx)")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, GetCollateralCacheStatus, "collateral caching lands with issue 3 (lib/tdx)")
  PML_UNIMPLEMENTED_UNARY("pml.attestation.v1.Attestation", v1, RefreshCollateral, "collateral refresh lands with issue 3 (lib/tdx)")
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
};

}  // namespace pml::attestation
