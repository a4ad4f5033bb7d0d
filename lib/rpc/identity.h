#pragma once
// Caller identity: the client certificate's SAN URI `spiffe://pml/<role>/<name>` (DESIGN.md §3).

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace grpc {
class AuthContext;
}  // namespace grpc

namespace pml::rpc {

enum class Role { kOperator, kViewer, kVmm, kKms, kVerifier };

// "operator", "viewer", ...; and the inverse (nullopt for an unknown name).
absl::string_view RoleName(Role role);
std::optional<Role> RoleFromName(absl::string_view name);
// Every role, in declaration order.
const std::vector<Role>& AllRoles();

struct Identity {
  Role role;
  std::string name;
  std::string spiffe_id;  // the whole URI
};

// Parses `spiffe://pml/<role>/<name>`. The trust domain must be exactly "pml", role one of the
// five roles, name 1..128 characters of [A-Za-z0-9._-]; nothing else (no query, fragment, extra
// path segment, percent-encoding or user info). kInvalidArgument names what is wrong. Pure.
absl::StatusOr<Identity> ParseSpiffeId(absl::string_view uri);

// Picks the caller's identity from the URI SANs of its verified client certificate. Exactly one
// `spiffe://pml/` URI must be present; other URIs are ignored. kUnauthenticated when there is
// none or the SAN is malformed, kPermissionDenied when there are several. Pure.
absl::StatusOr<Identity> IdentityFromUris(const std::vector<std::string>& uris);

// The same, reading the URI SANs gRPC put in the auth context of a TLS connection (property
// "peer_uri", or "x509_subject_alternative_name" on versions without it). kUnauthenticated when
// the connection carries no verified client certificate.
absl::StatusOr<Identity> IdentityFromAuthContext(const grpc::AuthContext& auth);

}  // namespace pml::rpc
