#include "services/kms/kms_service.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/rpc/flags.h"
#include "lib/rpc/status_convert.h"

namespace pml::kms {
namespace {

using rpc::Role;

std::string Caller(const std::optional<rpc::Identity>& id) {
  return id.has_value() ? id->spiffe_id : std::string("unknown");
}

absl::Status CheckAppId(const std::string& app_id, const char* field) {
  if (app_id.size() != kAppIdBytes)
    return absl::InvalidArgumentError(absl::StrCat(field, ": want 20 bytes"));
  return absl::OkStatus();
}

}  // namespace

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

absl::StatusOr<std::unique_ptr<GrpcVerifierClient>> GrpcVerifierClient::Create(
    const rpc::ClientConfig& c) {
  PML_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> ch, rpc::MakeChannel(c));
  return std::unique_ptr<GrpcVerifierClient>(new GrpcVerifierClient(std::move(ch), c.target));
}

absl::StatusOr<attestation::v1::AppraiseResponse> GrpcVerifierClient::Appraise(
    const attestation::v1::AppraiseRequest& request) {
  grpc::ClientContext ctx;
  rpc::SetTimeout(ctx, absl::Seconds(30));
  attestation::v1::AppraiseResponse resp;
  grpc::Status s = stub_->Appraise(&ctx, request, &resp);
  if (!s.ok())
    return rpc::FromGrpcStatus(s);
  return resp;
}

// ---- KmsAdmin ----

grpc::ServerUnaryReactor* KmsAdminService::PutAppPolicy(grpc::CallbackServerContext* ctx,
                                                        const v1::PutAppPolicyRequest* req,
                                                        v1::PutAppPolicyResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.kms.v1.KmsAdmin/PutAppPolicy", env_,
                       [=, this](const auto& id) -> absl::Status {
                         const v1::AppPolicy& p = req->app_policy();
                         PML_RETURN_IF_ERROR(CheckAppId(p.app_id(), "app_policy.app_id"));
                         if (p.policy_case() == v1::AppPolicy::POLICY_NOT_SET) {
                           return absl::InvalidArgumentError(
                               "app_policy: give verifier_policy_id or inline_policy_json");
                         }
                         if (p.has_verifier_policy_id() &&
                             (p.verifier_policy_id().empty() ||
                              p.verifier_policy_id().size() > 63)) {
                           return absl::InvalidArgumentError(
                               "app_policy.verifier_policy_id: 1-63 characters");
                         }
                         if (p.has_inline_policy_json() &&
                             (p.inline_policy_json().empty() ||
                              p.inline_policy_json().size() > (256 << 10))) {
                           return absl::InvalidArgumentError(
                               "app_policy.inline_policy_json: 1 byte to 256 KiB");
                         }
                         if (p.description().size() > 1024)
                           return absl::InvalidArgumentError(
                               "app_policy.description: at most 1024 bytes");
                         PML_ASSIGN_OR_RETURN(*resp->mutable_app_policy(),
                                              store_.PutAppPolicy(p, req->expected_version(),
                                                                  Caller(id)));
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* KmsAdminService::GetAppPolicy(grpc::CallbackServerContext* ctx,
                                                        const v1::GetAppPolicyRequest* req,
                                                        v1::GetAppPolicyResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.kms.v1.KmsAdmin/GetAppPolicy", env_,
                       [=, this](const auto&) -> absl::Status {
                         PML_RETURN_IF_ERROR(CheckAppId(req->app_id(), "app_id"));
                         PML_ASSIGN_OR_RETURN(*resp->mutable_app_policy(),
                                              store_.GetAppPolicy(req->app_id()));
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* KmsAdminService::ListAppPolicies(grpc::CallbackServerContext* ctx,
                                                           const v1::ListAppPoliciesRequest* req,
                                                           v1::ListAppPoliciesResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.kms.v1.KmsAdmin/ListAppPolicies", env_,
                       [=, this](const auto&) -> absl::Status {
                         PML_ASSIGN_OR_RETURN(auto page, store_.ListAppPolicies(
                                                             req->page_size(), req->page_token()));
                         for (auto& p : page.first)
                           *resp->add_app_policies() = std::move(p);
                         resp->set_next_page_token(page.second);
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* KmsAdminService::DeleteAppPolicy(grpc::CallbackServerContext* ctx,
                                                           const v1::DeleteAppPolicyRequest* req,
                                                           v1::DeleteAppPolicyResponse*) {
  return rpc::RunUnary(ctx, "/pml.kms.v1.KmsAdmin/DeleteAppPolicy", env_,
                       [=, this](const auto& id) -> absl::Status {
                         PML_RETURN_IF_ERROR(CheckAppId(req->app_id(), "app_id"));
                         return store_.DeleteAppPolicy(req->app_id(), Caller(id));
                       });
}

grpc::ServerUnaryReactor* KmsAdminService::RotateRootKeys(grpc::CallbackServerContext* ctx,
                                                          const v1::RotateRootKeysRequest* req,
                                                          v1::RotateRootKeysResponse* resp) {
  return rpc::RunUnary(
      ctx, "/pml.kms.v1.KmsAdmin/RotateRootKeys", env_, [=, this](const auto& id) -> absl::Status {
        if (req->reason().size() > 512)
          return absl::InvalidArgumentError("reason: at most 512 bytes");
        std::optional<uint32_t> expected;
        if (req->expected_current_epoch() != 0)
          expected = req->expected_current_epoch();
        PML_ASSIGN_OR_RETURN(std::shared_ptr<const Epoch> e,
                             keys_.Rotate(expected, req->reason(), Caller(id)));
        resp->set_new_epoch(e->secret.epoch);
        resp->set_previous_epoch(e->secret.epoch - 1);
        v1::EpochPublicInfo* info = resp->mutable_epoch_info();
        info->set_epoch(e->secret.epoch);
        info->set_root_ca_cert(e->ca_cert_der);
        info->set_k256_public_key(core::ToString(e->k256_public_key));
        info->mutable_create_time()->set_seconds(absl::ToUnixSeconds(e->created));
        info->set_current(true);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* KmsAdminService::ListAuditEvents(grpc::CallbackServerContext* ctx,
                                                           const v1::ListAuditEventsRequest* req,
                                                           v1::ListAuditEventsResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.kms.v1.KmsAdmin/ListAuditEvents", env_,
                       [=, this](const auto&) -> absl::Status {
                         if (!req->app_id().empty())
                           PML_RETURN_IF_ERROR(CheckAppId(req->app_id(), "app_id"));
                         PML_ASSIGN_OR_RETURN(auto page, store_.ListAudit(*req));
                         for (auto& e : page.first)
                           *resp->add_events() = std::move(e);
                         resp->set_next_page_token(page.second);
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* KmsAdminService::GetKmsInfo(grpc::CallbackServerContext* ctx,
                                                      const v1::GetKmsInfoRequest*,
                                                      v1::GetKmsInfoResponse* resp) {
  return rpc::RunUnary(
      ctx, "/pml.kms.v1.KmsAdmin/GetKmsInfo", env_, [=, this](const auto&) -> absl::Status {
        PML_ASSIGN_OR_RETURN(std::vector<v1::EpochPublicInfo> infos, core_.EpochInfos());
        for (auto& i : infos)
          *resp->add_epochs() = std::move(i);
        PML_ASSIGN_OR_RETURN(std::shared_ptr<const Epoch> cur, keys_.Current());
        resp->set_current_epoch(cur->secret.epoch);
        PML_ASSIGN_OR_RETURN(std::shared_ptr<const IdentityCa> identity, keys_.Identity());
        resp->set_key_provider_id(identity->key_provider_id);
        resp->set_identity_ca_cert(identity->cert_der);
        resp->set_store_kind(store_.kind());
        resp->set_verifier_address(verifier_.address());
        resp->set_replica_policy_id(core_.options().replica_policy_id);
        PML_ASSIGN_OR_RETURN(auto replicas, store_.ListReplicas());
        for (auto& r : replicas) {
          r.set_self(r.node_name() == core_.options().node_name);
          *resp->add_replicas() = std::move(r);
        }
        resp->set_attested(false);
        resp->set_version(rpc::Version());
        return absl::OkStatus();
      });
}

// ---- KeyRelease ----

KeyReleaseService::KeyReleaseService(const rpc::ServiceEnv& env, KeyReleaseCore& core,
                                     prometheus::Registry* registry)
    : env_(env), core_(core) {
  if (registry == nullptr) return;
  releases_ = &prometheus::BuildCounter()
                   .Name("pml_kms_key_releases_total")
                   .Help("Key-release requests by operation (get_app_keys, sign_cert) and result: "
                         "released, refused (attestation or policy said no; audited), error.")
                   .Register(*registry);
  for (const char* op : {"get_app_keys", "sign_cert"})
    for (const char* r : {"released", "refused", "error"})
      releases_->Add({{"operation", op}, {"result", r}});
}

KeyReleaseService::~KeyReleaseService() = default;

void KeyReleaseService::Count(const char* operation, const absl::Status& status) {
  if (releases_ == nullptr) return;
  const char* result = status.ok()                       ? "released"
                       : absl::IsFailedPrecondition(status) ? "refused"
                                                            : "error";
  releases_->Add({{"operation", operation}, {"result", result}}).Increment();
}

grpc::ServerUnaryReactor* KeyReleaseService::GetAppKeys(grpc::CallbackServerContext* ctx,
                                                        const v1::GetAppKeysRequest* req,
                                                        v1::GetAppKeysResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.kms.v1.KeyRelease/GetAppKeys", env_,
                       [=, this](const auto&) -> absl::Status {
                         auto r = core_.GetAppKeys(*req);
                         Count("get_app_keys", r.status());
                         PML_ASSIGN_OR_RETURN(*resp, std::move(r));
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* KeyReleaseService::SignCert(grpc::CallbackServerContext* ctx,
                                                      const v1::SignCertRequest* req,
                                                      v1::SignCertResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.kms.v1.KeyRelease/SignCert", env_,
                       [=, this](const auto&) -> absl::Status {
                         auto r = core_.SignCert(*req);
                         Count("sign_cert", r.status());
                         PML_ASSIGN_OR_RETURN(*resp, std::move(r));
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* KeyReleaseService::GetAppEnvEncryptPubKey(
    grpc::CallbackServerContext* ctx, const v1::GetAppEnvEncryptPubKeyRequest* req,
    v1::GetAppEnvEncryptPubKeyResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.kms.v1.KeyRelease/GetAppEnvEncryptPubKey", env_,
                       [=, this](const auto&) -> absl::Status {
                         PML_ASSIGN_OR_RETURN(*resp, core_.GetAppEnvEncryptPubKey(*req));
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* KeyReleaseService::GetPublicInfo(grpc::CallbackServerContext* ctx,
                                                           const v1::GetPublicInfoRequest*,
                                                           v1::GetPublicInfoResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.kms.v1.KeyRelease/GetPublicInfo", env_,
                       [=, this](const auto&) -> absl::Status {
                         PML_ASSIGN_OR_RETURN(*resp, core_.GetPublicInfo());
                         return absl::OkStatus();
                       });
}

grpc::ServerUnaryReactor* KeyReleaseService::JoinCluster(grpc::CallbackServerContext* ctx,
                                                         const v1::JoinClusterRequest* req,
                                                         v1::JoinClusterResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.kms.v1.KeyRelease/JoinCluster", env_,
                       [=, this](const auto&) -> absl::Status {
                         PML_ASSIGN_OR_RETURN(*resp, core_.JoinCluster(*req));
                         return absl::OkStatus();
                       });
}

}  // namespace pml::kms
