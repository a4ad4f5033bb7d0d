#include "services/guest-agent/guest_agent_service.h"

#include "lib/rpc/flags.h"

namespace pml::guest {

using rpc::Role;

rpc::RoleTable GuestAgentRoleTable() {
  return rpc::RoleTable{
      {"/pml.guest.v1.GuestAgent/GetQuote", {{Role::kOperator, Role::kViewer}}},
      {"/pml.guest.v1.GuestAgent/GetKey", {{}}},
      {"/pml.guest.v1.GuestAgent/GetTlsKey", {{}}},
      {"/pml.guest.v1.GuestAgent/GetInfo", {{Role::kOperator, Role::kViewer}}},
      {"/pml.guest.v1.GuestAgent/Attest", {{Role::kOperator, Role::kViewer}}},
      {"/pml.guest.v1.GuestAgent/EmitEvent", {{}}},
      {"/pml.guest.v1.GuestAgent/Sign", {{}}},
      {"/pml.guest.v1.GuestAgent/Verify", {{Role::kOperator, Role::kViewer}}},
      {"/pml.guest.v1.GuestAgent/GetVersion", {{Role::kOperator, Role::kViewer}}},
  };
}

grpc::ServerUnaryReactor* GuestAgentService::GetVersion(grpc::CallbackServerContext* ctx,
                                                        const v1::GetVersionRequest*,
                                                        v1::GetVersionResponse* resp) {
  return rpc::RunUnary(ctx, "/pml.guest.v1.GuestAgent/GetVersion", env_, [resp](const auto&) {
    resp->set_version(rpc::Version());
    return absl::OkStatus();
  });
}

}  // namespace pml::guest
