#pragma once
// pml-kms's gRPC surface: thin handlers that convert protos and call the KMS core (key_release.h,
// root_keys.h, kms_store.h) (STYLE.md §1). KeyRelease is served on the guest-facing listener (TLS
// without client certificates), KmsAdmin on the operator listener (mTLS).

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "lib/rpc/authz.h"
#include "lib/rpc/client.h"
#include "lib/rpc/unary.h"
#include "pml/attestation/v1/attestation.grpc.pb.h"
#include "pml/kms/v1/kms.grpc.pb.h"
#include "services/kms/key_release.h"
#include "services/kms/kms_store.h"
#include "services/kms/root_keys.h"

namespace prometheus {
class Registry;
class Counter;
template <typename T>
class Family;
}  // namespace prometheus

namespace pml::kms {

// Who may call what (deny by default). Every method of every service below has an entry;
// kms_service_test walks the descriptors to prove it.
rpc::RoleTable KmsRoleTable();

// pml-verifier's Appraise over mTLS (the KMS's client certificate carries the `kms` role).
class GrpcVerifierClient final : public VerifierClient {
 public:
  static absl::StatusOr<std::unique_ptr<GrpcVerifierClient>> Create(const rpc::ClientConfig& c);
  absl::StatusOr<attestation::v1::AppraiseResponse> Appraise(
      const attestation::v1::AppraiseRequest& request) override;
  std::string address() const override { return address_; }

 private:
  GrpcVerifierClient(std::shared_ptr<grpc::Channel> channel, std::string address)
      : stub_(attestation::v1::Attestation::NewStub(channel)), address_(std::move(address)) {}
  std::unique_ptr<attestation::v1::Attestation::Stub> stub_;
  std::string address_;
};

class KmsAdminService final : public pml::kms::v1::KmsAdmin::CallbackService {
 public:
  KmsAdminService(const rpc::ServiceEnv& env, KmsStore& store, RootKeys& keys,
                  KeyReleaseCore& core, VerifierClient& verifier)
      : env_(env), store_(store), keys_(keys), core_(core), verifier_(verifier) {}
  grpc::ServerUnaryReactor* PutAppPolicy(grpc::CallbackServerContext* ctx,
                                         const v1::PutAppPolicyRequest* req,
                                         v1::PutAppPolicyResponse* resp) override;
  grpc::ServerUnaryReactor* GetAppPolicy(grpc::CallbackServerContext* ctx,
                                         const v1::GetAppPolicyRequest* req,
                                         v1::GetAppPolicyResponse* resp) override;
  grpc::ServerUnaryReactor* ListAppPolicies(grpc::CallbackServerContext* ctx,
                                            const v1::ListAppPoliciesRequest* req,
                                            v1::ListAppPoliciesResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteAppPolicy(grpc::CallbackServerContext* ctx,
                                            const v1::DeleteAppPolicyRequest* req,
                                            v1::DeleteAppPolicyResponse* resp) override;
  grpc::ServerUnaryReactor* RotateRootKeys(grpc::CallbackServerContext* ctx,
                                           const v1::RotateRootKeysRequest* req,
                                           v1::RotateRootKeysResponse* resp) override;
  grpc::ServerUnaryReactor* ListAuditEvents(grpc::CallbackServerContext* ctx,
                                            const v1::ListAuditEventsRequest* req,
                                            v1::ListAuditEventsResponse* resp) override;
  grpc::ServerUnaryReactor* GetKmsInfo(grpc::CallbackServerContext* ctx,
                                       const v1::GetKmsInfoRequest* req,
                                       v1::GetKmsInfoResponse* resp) override;

 private:
  rpc::ServiceEnv env_;
  KmsStore& store_;
  RootKeys& keys_;
  KeyReleaseCore& core_;
  VerifierClient& verifier_;
};

class KeyReleaseService final : public pml::kms::v1::KeyRelease::CallbackService {
 public:
  // With `registry`, counts releases and refusals: pml_kms_key_releases_total{operation=
  // "get_app_keys"|"sign_cert", result="released"|"refused"|"error"} (refused = the attestation or
  // policy said no, FAILED_PRECONDITION; error = anything else that failed).
  KeyReleaseService(const rpc::ServiceEnv& env, KeyReleaseCore& core,
                    prometheus::Registry* registry = nullptr);
  ~KeyReleaseService() override;
  grpc::ServerUnaryReactor* GetAppKeys(grpc::CallbackServerContext* ctx,
                                       const v1::GetAppKeysRequest* req,
                                       v1::GetAppKeysResponse* resp) override;
  grpc::ServerUnaryReactor* SignCert(grpc::CallbackServerContext* ctx,
                                     const v1::SignCertRequest* req,
                                     v1::SignCertResponse* resp) override;
  grpc::ServerUnaryReactor* GetAppEnvEncryptPubKey(
      grpc::CallbackServerContext* ctx, const v1::GetAppEnvEncryptPubKeyRequest* req,
      v1::GetAppEnvEncryptPubKeyResponse* resp) override;
  grpc::ServerUnaryReactor* GetPublicInfo(grpc::CallbackServerContext* ctx,
                                          const v1::GetPublicInfoRequest* req,
                                          v1::GetPublicInfoResponse* resp) override;
  grpc::ServerUnaryReactor* JoinCluster(grpc::CallbackServerContext* ctx,
                                        const v1::JoinClusterRequest* req,
                                        v1::JoinClusterResponse* resp) override;

 private:
  void Count(const char* operation, const absl::Status& status);

  rpc::ServiceEnv env_;
  KeyReleaseCore& core_;
  prometheus::Family<prometheus::Counter>* releases_ = nullptr;
};

}  // namespace pml::kms
