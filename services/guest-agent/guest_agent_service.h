#pragma once
// pml-guest-agent's gRPC surface: thin handlers that convert protos and call the AgentCore
// (agent_core.h), the same code the dstack sockets call (STYLE.md §1).
//
// Access (guest.proto): every method is open to callers on the agent's unix socket
// ("guest-local", governed by the socket file's permissions). Over TCP with mTLS, the read-only
// methods admit operator and viewer; the ones that hand out key material or change the
// measurements (GetKey, GetTlsKey, EmitEvent, Sign) admit nobody.

#include <grpcpp/grpcpp.h>

#include "lib/rpc/authz.h"
#include "lib/rpc/unary.h"
#include "pml/guest/v1/guest.grpc.pb.h"
#include "services/guest-agent/agent_core.h"

namespace pml::guest {

// Who may call what (deny by default). Every method of every service below has an entry;
// guest_agent_service_test walks the descriptors to prove it.
rpc::RoleTable GuestAgentRoleTable();

class GuestAgentService final : public pml::guest::v1::GuestAgent::CallbackService {
 public:
  // `core` is borrowed and must outlive the service.
  GuestAgentService(const rpc::ServiceEnv& env, const AgentCore& core) : env_(env), core_(core) {}

  grpc::ServerUnaryReactor* GetQuote(grpc::CallbackServerContext* ctx,
                                     const v1::GetQuoteRequest* req,
                                     v1::GetQuoteResponse* resp) override;
  grpc::ServerUnaryReactor* GetKey(grpc::CallbackServerContext* ctx, const v1::GetKeyRequest* req,
                                   v1::GetKeyResponse* resp) override;
  grpc::ServerUnaryReactor* GetTlsKey(grpc::CallbackServerContext* ctx,
                                      const v1::GetTlsKeyRequest* req,
                                      v1::GetTlsKeyResponse* resp) override;
  grpc::ServerUnaryReactor* GetInfo(grpc::CallbackServerContext* ctx,
                                    const v1::GetInfoRequest* req,
                                    v1::GetInfoResponse* resp) override;
  grpc::ServerUnaryReactor* Attest(grpc::CallbackServerContext* ctx, const v1::AttestRequest* req,
                                   v1::AttestResponse* resp) override;
  grpc::ServerUnaryReactor* EmitEvent(grpc::CallbackServerContext* ctx,
                                      const v1::EmitEventRequest* req,
                                      v1::EmitEventResponse* resp) override;
  grpc::ServerUnaryReactor* Sign(grpc::CallbackServerContext* ctx, const v1::SignRequest* req,
                                 v1::SignResponse* resp) override;
  grpc::ServerUnaryReactor* Verify(grpc::CallbackServerContext* ctx, const v1::VerifyRequest* req,
                                   v1::VerifyResponse* resp) override;
  grpc::ServerUnaryReactor* GetVersion(grpc::CallbackServerContext* ctx,
                                       const v1::GetVersionRequest* req,
                                       v1::GetVersionResponse* resp) override;

 private:
  rpc::ServiceEnv env_;
  const AgentCore& core_;
};

}  // namespace pml::guest
