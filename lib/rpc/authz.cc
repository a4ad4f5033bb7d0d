#include "lib/rpc/authz.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pml::rpc {

RoleTable::RoleTable(std::initializer_list<std::pair<std::string, MethodAccess>> entries) {
  for (const auto& [m, a] : entries) entries_[m] = a;
}

void RoleTable::Set(absl::string_view full_method, MethodAccess access) {
  entries_[std::string(full_method)] = std::move(access);
}

const MethodAccess* RoleTable::Find(absl::string_view full_method) const {
  auto it = entries_.find(full_method);
  return it == entries_.end() ? nullptr : &it->second;
}

absl::Status RoleTable::Check(absl::string_view full_method, const Identity& identity) const {
  const MethodAccess* access = Find(full_method);
  if (access == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat("method ", full_method, " is not in the role table"));
  }
  if (access->public_method) return absl::OkStatus();
  if (std::find(access->roles.begin(), access->roles.end(), identity.role) != access->roles.end()) {
    return absl::OkStatus();
  }
  std::vector<std::string> allowed;
  for (Role r : access->roles) allowed.emplace_back(RoleName(r));
  return absl::PermissionDeniedError(absl::StrCat(
      "role ", RoleName(identity.role), " may not call ", full_method, "; allowed roles: ",
      allowed.empty() ? std::string("none") : absl::StrJoin(allowed, ", ")));
}

std::vector<std::string> RoleTable::Methods() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [m, a] : entries_) out.push_back(m);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace pml::rpc
