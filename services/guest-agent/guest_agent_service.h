#pragma once
// pml-guest-agent's gRPC surface: thin handlers that convert protos and call the service core
// (STYLE.md §1). Methods whose behaviour lands in a later issue answer UNIMPLEMENTED naming it.

#include <grpcpp/grpcpp.h>

#include "lib/rpc/authz.h"
#include "lib/rpc/unary.h"
#include "pml/guest/v1/guest.grpc.pb.h"

namespace pml::guest {

// Who may call what (deny by default). Every method of every service below has an entry;
// guest_agent_service_test walks the descriptors to prove it.
rpc::RoleTable GuestAgentRoleTable();

class GuestAgentService final : public pml::guest::v1::GuestAgent::CallbackService {
 public:
  explicit GuestAgentService(const rpc::ServiceEnv& env) : env_(env) {}
  PML_UNIMPLEMENTED_UNARY("pml.guest.v1.GuestAgent", v1, GetQuote, "TDX quotes land with issue 6 (guest agent)")
  PML_UNIMPLEMENTED_UNARY("pml.guest.v1.GuestAgent", v1, GetKey, "app keys land with issue 6 (guest agent)")
  PML_UNIMPLEMENTED_UNARY("pml.guest.v1.GuestAgent", v1, GetTlsKey, "RA-TLS keys land with issue 6 (guest agent)")
  PML_UNIMPLEMENTED_UNARY("pml.guest.v1.GuestAgent", v1, GetInfo, "app info lands with issue 6 (guest agent)")
  PML_UNIMPLEMENTED_UNARY("pml.guest.v1.GuestAgent", v1, Attest, "evidence bundles land with issue 6 (guest agent)")
  PML_UNIMPLEMENTED_UNARY("pml.guest.v1.GuestAgent", v1, EmitEvent, "the RTMR3 event log lands with issue 6 (guest agent)")
  PML_UNIMPLEMENTED_UNARY("pml.guest.v1.GuestAgent", v1, Sign, "app signing keys land with issue 6 (guest agent)")
  PML_UNIMPLEMENTED_UNARY("pml.guest.v1.GuestAgent", v1, Verify, "signature verification lands with issue 6 (guest agent)")
  grpc::ServerUnaryReactor* GetVersion(grpc::CallbackServerContext* ctx, const v1::GetVersionRequest* req,
                                     v1::GetVersionResponse* resp) override;
 private:
  rpc::ServiceEnv env_;
};

}  // namespace pml::guest
