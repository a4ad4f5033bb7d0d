#pragma once
// pml-kms's gRPC surface: thin handlers that convert protos and call the service core
// (STYLE.md §1). Methods whose behaviour lands in a later issue answer UNIMPLEMENTED naming it.

#include <grpcpp/grpcpp.h>

#include "lib/rpc/authz.h"
#include "lib/rpc/unary.h"
#include "pml/kms/v1/kms.grpc.pb.h"

namespace pml::kms {

// Who may call what (deny by default). Every method of every service below has an entry;
// kms_service_test walks the descriptors to prove it.
rpc::RoleTable KmsRoleTable();

class KmsAdminService final : public pml::kms::v1::KmsAdmin::CallbackService {
 public:
  explicit KmsAdminService(const rpc::ServiceEnv& env) : env_(env) {}
  PML_UNIMPLEMENTED_UNARY("pml.kms.v1.KmsAdmin", v1, PutAppPolicy, "app policies land with issue 7 (KMS)")
  PML_UNIMPLEMENTED_UNARY("pml.kms.v1.KmsAdmin", v1, GetAppPolicy, "app policies land with issue 7 (KMS)")
  PML_UNIMPLEMENTED_UNARY("pml.kms.v1.KmsAdmin", v1, ListAppPolicies, "app policies land with issue 7 (KMS)")
  PML_UNIMPLEMENTED_UNARY("pml.kms.v1.KmsAdmin", v1, DeleteAppPolicy, "app policies land with issue 7 (KMS)")
  PML_UNIMPLEMENTED_UNARY("pml.kms.v1.KmsAdmin", v1, RotateRootKeys, "root keys and epochs land with issue 7 (KMS)")
  PML_UNIMPLEMENTED_UNARY("pml.kms.v1.KmsAdmin", v1, ListAuditEvents, "the audit log lands with issue 7 (KMS)")
  PML_UNIMPLEMENTED_UNARY("pml.kms.v1.KmsAdmin", v1, GetKmsInfo, "root keys and epochs land with issue 7 (KMS)")
 private:
  rpc::ServiceEnv env_;
};

class KeyReleaseService final : public pml::kms::v1::KeyRelease::CallbackService {
 public:
  explicit KeyReleaseService(const rpc::ServiceEnv& env) : env_(env) {}
  PML_UNIMPLEMENTED_UNARY("pml.kms.v1.KeyRelease", v1, GetAppKeys, "attested key release lands with issue 7 (KMS)")
  PML_UNIMPLEMENTED_UNARY("pml.kms.v1.KeyRelease", v1, SignCert, "RA-TLS certificate signing lands with issue 7 (KMS)")
  PML_UNIMPLEMENTED_UNARY("pml.kms.v1.KeyRelease", v1, GetAppEnvEncryptPubKey, "env encryption keys land with issue 7 (KMS)")
  PML_UNIMPLEMENTED_UNARY("pml.kms.v1.KeyRelease", v1, GetPublicInfo, "root keys and epochs land with issue 7 (KMS)")
  PML_UNIMPLEMENTED_UNARY("pml.kms.v1.KeyRelease", v1, JoinCluster, "replication lands with issue 7 (KMS)")
 private:
  rpc::ServiceEnv env_;
};

}  // namespace pml::kms
