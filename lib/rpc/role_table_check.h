#pragma once
// Test support: every method of a generated gRPC service must have a role-table entry
// (STYLE.md §6: "a unit test walks the service descriptor so no method lacks an entry").

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "lib/rpc/authz.h"

namespace pml::rpc {

// Full method names of `service` that `table` has no entry for. Get the descriptor from a
// message of the same file, e.g. `v1::CreateVmRequest::descriptor()->file()->service(0)`, so the
// generated code is linked in.
std::vector<std::string> MethodsMissingFromRoleTable(
    const RoleTable& table, const google::protobuf::ServiceDescriptor& service);

}  // namespace pml::rpc
