#include "services/guest-agent/guest_agent_service.h"

#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/timestamp.pb.h>

#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/rpc/flags.h"

namespace pml::guest {
namespace {

using rpc::Role;

constexpr char kSvc[] = "/pml.guest.v1.GuestAgent/";

std::string M(const char* method) { return absl::StrCat(kSvc, method); }

// Read-only methods: guest-local, and operator/viewer over mTLS.
rpc::MethodAccess ReadOnly() { return {{Role::kOperator, Role::kViewer}, false, true}; }
// Key material and measurements: guest-local only.
rpc::MethodAccess LocalOnly() { return {{}, false, true}; }

absl::StatusOr<std::string> AlgorithmName(v1::KeyAlgorithm a, bool for_get_key) {
  switch (a) {
    case v1::KEY_ALGORITHM_UNSPECIFIED:
      if (for_get_key)
        return std::string("secp256k1");
      return absl::InvalidArgumentError("algorithm: required");
    case v1::KEY_ALGORITHM_SECP256K1:
      return std::string("secp256k1");
    case v1::KEY_ALGORITHM_ED25519:
      return std::string("ed25519");
    case v1::KEY_ALGORITHM_SECP256K1_PREHASHED:
      if (for_get_key)
        return absl::InvalidArgumentError("algorithm: secp256k1_prehashed is for Sign and Verify");
      return std::string("secp256k1_prehashed");
    default:
      return absl::InvalidArgumentError(absl::StrCat("algorithm: unknown value ", a));
  }
}

v1::KeyAlgorithm ToProto(KeyAlgorithm a) {
  switch (a) {
    case KeyAlgorithm::kEd25519:
      return v1::KEY_ALGORITHM_ED25519;
    default:
      return v1::KEY_ALGORITHM_SECP256K1;
  }
}

absl::StatusOr<absl::Time> FromTimestamp(const google::protobuf::Timestamp& t, const char* field) {
  // RFC 3339 range (0001-01-01 .. 9999-12-31), nanos in [0, 1e9).
  if (t.seconds() < -62135596800 || t.seconds() > 253402300799 || t.nanos() < 0 ||
      t.nanos() > 999999999)
    return absl::InvalidArgumentError(absl::StrCat(field, ": not a valid timestamp"));
  return absl::FromUnixSeconds(t.seconds());
}

}  // namespace

rpc::RoleTable GuestAgentRoleTable() {
  return rpc::RoleTable{
      {M("GetQuote"), ReadOnly()},  {M("GetKey"), LocalOnly()},  {M("GetTlsKey"), LocalOnly()},
      {M("GetInfo"), ReadOnly()},   {M("Attest"), ReadOnly()},   {M("EmitEvent"), LocalOnly()},
      {M("Sign"), LocalOnly()},     {M("Verify"), ReadOnly()},   {M("GetVersion"), ReadOnly()},
  };
}

grpc::ServerUnaryReactor* GuestAgentService::GetQuote(grpc::CallbackServerContext* ctx,
                                                      const v1::GetQuoteRequest* req,
                                                      v1::GetQuoteResponse* resp) {
  return rpc::RunUnary(ctx, M("GetQuote"), env_, [this, req, resp](const auto&) -> absl::Status {
    PML_ASSIGN_OR_RETURN(QuoteResult q, core_.GetQuote(core::AsBytes(req->report_data())));
    resp->set_quote(core::ToString(q.quote));
    resp->set_event_log(std::move(q.event_log));
    resp->set_report_data(core::ToString(q.report_data));
    resp->set_vm_config(std::move(q.vm_config));
    resp->set_simulated(q.simulated);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GuestAgentService::GetKey(grpc::CallbackServerContext* ctx,
                                                    const v1::GetKeyRequest* req,
                                                    v1::GetKeyResponse* resp) {
  return rpc::RunUnary(ctx, M("GetKey"), env_, [this, req, resp](const auto&) -> absl::Status {
    PML_ASSIGN_OR_RETURN(std::string algorithm, AlgorithmName(req->algorithm(), true));
    PML_ASSIGN_OR_RETURN(DerivedKey k, core_.keys().GetKey(req->path(), req->purpose(), algorithm));
    resp->set_key(core::ToString(k.private_key.span()));
    for (const auto& s : k.signature_chain)
      resp->add_signature_chain(core::ToString(s));
    resp->set_public_key(core::ToString(k.public_key));
    resp->set_algorithm(ToProto(k.algorithm));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GuestAgentService::GetTlsKey(grpc::CallbackServerContext* ctx,
                                                       const v1::GetTlsKeyRequest* req,
                                                       v1::GetTlsKeyResponse* resp) {
  return rpc::RunUnary(ctx, M("GetTlsKey"), env_, [this, req, resp](const auto&) -> absl::Status {
    TlsKeyRequest r;
    r.subject = req->subject();
    r.alt_names.assign(req->alt_names().begin(), req->alt_names().end());
    r.usage_ra_tls = req->usage_ra_tls();
    r.usage_server_auth = req->usage_server_auth();
    r.usage_client_auth = req->usage_client_auth();
    r.with_app_info = req->with_app_info();
    if (req->has_not_before()) {
      PML_ASSIGN_OR_RETURN(absl::Time t, FromTimestamp(req->not_before(), "not_before"));
      r.not_before = t;
    }
    if (req->has_not_after()) {
      PML_ASSIGN_OR_RETURN(absl::Time t, FromTimestamp(req->not_after(), "not_after"));
      r.not_after = t;
    }
    PML_ASSIGN_OR_RETURN(TlsKeyResult t, core_.GetTlsKey(r));
    resp->set_key(core::ToString(t.key_pem.span()));
    for (auto& c : t.certificate_chain)
      resp->add_certificate_chain(std::move(c));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GuestAgentService::GetInfo(grpc::CallbackServerContext* ctx,
                                                     const v1::GetInfoRequest*,
                                                     v1::GetInfoResponse* resp) {
  return rpc::RunUnary(ctx, M("GetInfo"), env_, [this, resp](const auto&) -> absl::Status {
    PML_ASSIGN_OR_RETURN(InfoResult r, core_.Info());
    const AgentIdentity& id = core_.identity();
    common::v1::AppInfo* app = resp->mutable_app_info();
    app->set_app_id(core::ToString(id.app_id));
    app->set_compose_hash(core::ToString(id.compose_hash));
    app->set_instance_id(core::ToString(id.instance_id));
    app->set_os_image_hash(core::ToString(id.os_image_hash));
    app->set_device_id(core::ToString(id.device_id));
    app->set_app_name(id.app_name);
    app->set_mr_aggregated(core::ToString(r.mr_aggregated));
    app->set_key_provider_info(id.key_provider_info);
    resp->set_tcb_info(std::move(r.tcb_info_json));
    resp->set_app_compose(id.app_compose);
    resp->set_vm_config(id.vm_config);
    resp->set_app_cert(std::move(r.app_cert_pem));
    switch (id.key_provider) {
      case KeyProviderKind::kKms:
        resp->set_key_provider(v1::KEY_PROVIDER_KIND_KMS);
        break;
      case KeyProviderKind::kLocalDev:
        resp->set_key_provider(v1::KEY_PROVIDER_KIND_LOCAL_DEV);
        break;
      case KeyProviderKind::kNone:
        resp->set_key_provider(v1::KEY_PROVIDER_KIND_NONE);
        break;
    }
    resp->set_tee_provider(id.tee_kind == "simulated"      ? common::v1::TEE_PROVIDER_SIMULATOR
                           : id.tee_kind == "configfs-tsm" ? common::v1::TEE_PROVIDER_CONFIGFS_TSM
                                                           : common::v1::TEE_PROVIDER_TDX_GUEST_DEVICE);
    resp->set_simulated(core_.simulated());
    for (const GpuDeviceInfo& g : id.gpus) {
      v1::GpuStatus* s = resp->add_gpus();
      s->set_index(g.index);
      s->set_uuid(g.uuid);
      s->set_device_kind(common::v1::GPU_DEVICE_KIND_GPU);
      s->set_name(g.name);
      s->set_driver_version(g.driver_version);
      s->set_vbios_version(g.vbios_version);
      s->set_cc_mode(g.ppcie ? common::v1::GPU_CC_MODE_PROTECTED_PCIE
                             : common::v1::GPU_CC_MODE_ON);
      s->set_verified(true);
    }
    resp->set_agent_version(id.version);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GuestAgentService::Attest(grpc::CallbackServerContext* ctx,
                                                    const v1::AttestRequest* req,
                                                    v1::AttestResponse* resp) {
  return rpc::RunUnary(ctx, M("Attest"), env_, [this, req, resp](const auto&) -> absl::Status {
    PML_ASSIGN_OR_RETURN(*resp->mutable_evidence(),
                         core_.Attest(core::AsBytes(req->report_data()), req->skip_gpu_evidence()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GuestAgentService::EmitEvent(grpc::CallbackServerContext* ctx,
                                                       const v1::EmitEventRequest* req,
                                                       v1::EmitEventResponse* resp) {
  return rpc::RunUnary(ctx, M("EmitEvent"), env_, [this, req, resp](const auto&) -> absl::Status {
    EmitReceipt r;
    PML_RETURN_IF_ERROR(core_.EmitEvent(req->event(), core::AsBytes(req->payload()), &r));
    resp->set_digest(core::ToString(r.digest));
    resp->set_rtmr3(core::ToString(r.rtmr3));
    resp->set_index(static_cast<uint32_t>(r.index));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GuestAgentService::Sign(grpc::CallbackServerContext* ctx,
                                                  const v1::SignRequest* req,
                                                  v1::SignResponse* resp) {
  return rpc::RunUnary(ctx, M("Sign"), env_, [this, req, resp](const auto&) -> absl::Status {
    PML_ASSIGN_OR_RETURN(std::string algorithm, AlgorithmName(req->algorithm(), false));
    PML_ASSIGN_OR_RETURN(SignResult s, core_.keys().Sign(algorithm, core::AsBytes(req->data())));
    resp->set_signature(core::ToString(s.signature));
    for (const auto& c : s.signature_chain)
      resp->add_signature_chain(core::ToString(c));
    resp->set_public_key(core::ToString(s.public_key));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GuestAgentService::Verify(grpc::CallbackServerContext* ctx,
                                                    const v1::VerifyRequest* req,
                                                    v1::VerifyResponse* resp) {
  return rpc::RunUnary(ctx, M("Verify"), env_, [req, resp](const auto&) -> absl::Status {
    PML_ASSIGN_OR_RETURN(std::string algorithm, AlgorithmName(req->algorithm(), false));
    PML_ASSIGN_OR_RETURN(bool valid,
                         AppKeys::Verify(algorithm, core::AsBytes(req->data()),
                                         core::AsBytes(req->signature()),
                                         core::AsBytes(req->public_key())));
    resp->set_valid(valid);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GuestAgentService::GetVersion(grpc::CallbackServerContext* ctx,
                                                        const v1::GetVersionRequest*,
                                                        v1::GetVersionResponse* resp) {
  return rpc::RunUnary(ctx, M("GetVersion"), env_, [this, resp](const auto&) {
    resp->set_version(core_.identity().version);
    resp->set_rev(rpc::Version());
    return absl::OkStatus();
  });
}

}  // namespace pml::guest
