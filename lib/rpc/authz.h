#pragma once
// Per-RPC authorization as data (STYLE.md §6): a table from full method name
// ("/pml.vmm.v1.Vmm/CreateVm") to the roles allowed to call it. Deny by default.

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "lib/rpc/identity.h"

namespace pml::rpc {

// What a method admits. `public_method` methods are guest-facing: no client certificate is
// needed (the caller's identity is its attestation, checked by the handler). `local_unix`
// methods also admit any caller on a unix socket, without a certificate ("guest-local": access
// is governed by the socket file's permissions; the guest agent inside a CVM).
struct MethodAccess {
  std::vector<Role> roles;
  bool public_method = false;
  bool local_unix = false;
};

class RoleTable {
 public:
  RoleTable() = default;
  RoleTable(std::initializer_list<std::pair<std::string, MethodAccess>> entries);

  // Adds or replaces an entry.
  void Set(absl::string_view full_method, MethodAccess access);

  // OK when `identity` may call `full_method`. kPermissionDenied naming the caller's role and
  // the roles allowed; kPermissionDenied "not in the role table" for a method without entry.
  // Thread-safe for concurrent readers once built.
  absl::Status Check(absl::string_view full_method, const Identity& identity) const;

  // The entry for a method, or null.
  const MethodAccess* Find(absl::string_view full_method) const;

  // All method names with an entry.
  std::vector<std::string> Methods() const;

 private:
  absl::flat_hash_map<std::string, MethodAccess> entries_;
};

}  // namespace pml::rpc
