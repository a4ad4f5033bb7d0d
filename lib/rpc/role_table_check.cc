#include "lib/rpc/role_table_check.h"

#include <google/protobuf/descriptor.h>

#include "absl/strings/str_cat.h"

namespace pml::rpc {

std::vector<std::string> MethodsMissingFromRoleTable(
    const RoleTable& table, const google::protobuf::ServiceDescriptor& service) {
  const auto* svc = &service;
  std::vector<std::string> missing;
  for (int i = 0; i < svc->method_count(); ++i) {
    const std::string full = absl::StrCat("/", svc->full_name(), "/", svc->method(i)->name());
    if (table.Find(full) == nullptr) missing.push_back(full);
  }
  return missing;
}

}  // namespace pml::rpc
