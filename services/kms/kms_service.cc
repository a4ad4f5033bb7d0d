#include "services/kms/kms_service.h"

namespace pml::kms {

using rpc::Role;

rpc::RoleTable KmsRoleTable() {
  return rpc::RoleTable{
      {"/pml.kms.v1.KmsAdmin/PutAppPolicy", {{Role::kOperator}}},
      {"/pml.kms.v1.KmsAdmin/GetAppPolicy", {{Role::kOperator, Role::kViewer}}},
      {"/pml.kms.v1.KmsAdmin/ListAppPolicies", {{Role::kOperator, Role::kViewer}}},
      {"/pml.kms.v1.KmsAdmin/DeleteAppPolicy", {{Role::kOperator}}},
      {"/pml.kms.v1.KmsAdmin/RotateRootKeys", {{Role::kOperator}}},
      {"/pml.kms.v1.KmsAdmin/ListAuditEvents", {{Role::kOperator, Role::kViewer}}},
      {"/pml.kms.v1.KmsAdmin/GetKmsInfo", {{Role::kOperator, Role::kViewer}}},
      {"/pml.kms.v1.KeyRelease/GetAppKeys", {{}, /*public_method=*/true}},
      {"/pml.kms.v1.KeyRelease/SignCert", {{}, /*public_method=*/true}},
      {"/pml.kms.v1.KeyRelease/GetAppEnvEncryptPubKey", {{}, /*public_method=*/true}},
      {"/pml.kms.v1.KeyRelease/GetPublicInfo", {{}, /*public_method=*/true}},
      {"/pml.kms.v1.KeyRelease/JoinCluster", {{}, /*public_method=*/true}},
  };
}

}  // namespace pml::kms
