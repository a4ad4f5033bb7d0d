#include "lib/rpc/identity.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace pml::rpc {
namespace {

constexpr absl::string_view kPrefix = "spiffe://pml/";
constexpr size_t kMaxNameLength = 128;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kOperator:
      return "operator";
    case Role::kViewer:
      return "viewer";
    case Role::kVmm:
      return "vmm";
    case Role::kKms:
      return "kms";
    case Role::kVerifier:
      return "verifier";
  }
  return "unknown";
}

const std::vector<Role>& AllRoles() {
  static const auto* const kRoles = new std::vector<Role>{Role::kOperator, Role::kViewer,
                                                          Role::kVmm, Role::kKms, Role::kVerifier};
  return *kRoles;
}

std::optional<Role> RoleFromName(absl::string_view name) {
  for (Role r : AllRoles()) {
    if (RoleName(r) == name) return r;
  }
  return std::nullopt;
}

absl::StatusOr<Identity> ParseSpiffeId(absl::string_view uri) {
  if (!absl::StartsWith(uri, kPrefix)) {
    return absl::InvalidArgumentError("identity uri is not spiffe://pml/<role>/<name>");
  }
  const absl::string_view rest = uri.substr(kPrefix.size());
  const std::vector<absl::string_view> parts = absl::StrSplit(rest, '/');
  if (parts.size() != 2) {
    return absl::InvalidArgumentError("identity uri must have exactly <role>/<name> after spiffe://pml/");
  }
  const std::optional<Role> role = RoleFromName(parts[0]);
  if (!role.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("identity uri names unknown role ", parts[0].substr(0, 32)));
  }
  const absl::string_view name = parts[1];
  if (name.empty() || name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError("identity name must be 1..128 characters");
  }
  for (char c : name) {
    if (!IsNameChar(c)) {
      return absl::InvalidArgumentError("identity name may only contain [A-Za-z0-9._-]");
    }
  }
  return Identity{*role, std::string(name), std::string(uri)};
}

absl::StatusOr<Identity> IdentityFromUris(const std::vector<std::string>& uris) {
  std::vector<const std::string*> ours;
  for (const auto& u : uris) {
    if (absl::StartsWith(u, kPrefix)) ours.push_back(&u);
  }
  if (ours.empty()) {
    return absl::UnauthenticatedError("client certificate has no spiffe://pml/<role>/<name> uri");
  }
  if (ours.size() > 1) {
    return absl::PermissionDeniedError("client certificate has more than one spiffe://pml/ uri");
  }
  auto id = ParseSpiffeId(*ours[0]);
  if (!id.ok()) return absl::UnauthenticatedError(id.status().message());
  return id;
}

absl::StatusOr<Identity> IdentityFromAuthContext(const grpc::AuthContext& auth) {
  if (!auth.IsPeerAuthenticated()) {
    return absl::UnauthenticatedError("no verified client certificate");
  }
  std::vector<std::string> uris;
  for (const auto& v : auth.FindPropertyValues(GRPC_PEER_URI_PROPERTY_NAME)) {
    uris.emplace_back(v.data(), v.size());
  }
  if (uris.empty()) {
    for (const auto& v : auth.FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME)) {
      uris.emplace_back(v.data(), v.size());
    }
  }
  return IdentityFromUris(uris);
}

}  // namespace pml::rpc
