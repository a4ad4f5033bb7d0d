#include "services/attestation/verifier_service.h"

namespace pml::attestation {

using rpc::Role;

rpc::RoleTable VerifierRoleTable() {
  return rpc::RoleTable{
      {"/pml.attestation.v1.Attestation/VerifyTdxQuote", {{Role::kOperator, Role::kViewer, Role::kKms}}},
      {"/pml.attestation.v1.Attestation/GetCollateralCacheStatus", {{Role::kOperator, Role::kViewer}}},
      {"/pml.attestation.v1.Attestation/RefreshCollateral", {{Role::kOperator}}},
      {"/pml.attestation.v1.Attestation/VerifyGpuEvidence", {{Role::kOperator, Role::kViewer, Role::kKms}}},
      {"/pml.attestation.v1.Attestation/Appraise", {{Role::kOperator, Role::kViewer, Role::kKms}}},
      {"/pml.attestation.v1.Attestation/PutPolicy", {{Role::kOperator}}},
      {"/pml.attestation.v1.Attestation/GetPolicy", {{Role::kOperator, Role::kViewer, Role::kKms}}},
      {"/pml.attestation.v1.Attestation/ListPolicies", {{Role::kOperator, Role::kViewer, Role::kKms}}},
      {"/pml.attestation.v1.Attestation/DeletePolicy", {{Role::kOperator}}},
      {"/pml.attestation.v1.Attestation/GetJwks", {{Role::kOperator, Role::kViewer, Role::kVmm, Role::kKms, Role::kVerifier}}},
      {"/pml.attestation.v1.Attestation/RotateSigningKey", {{Role::kOperator}}},
  };
}

}  // namespace pml::attestation
