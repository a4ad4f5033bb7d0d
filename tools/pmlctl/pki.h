#pragma once
// `pmlctl pki init`: a development PKI. One CA, one client certificate per role (SAN URI
// spiffe://pml/<role>/<role>), one server certificate per service with localhost SANs (and the
// service's role URI, so the same certificate works when the service calls another). Keys are
// written with mode 0600, certificates 0644, all atomically. gRPC-free so it is unit-testable.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace pml::pmlctl {

struct PkiOptions {
  std::string dir;
  std::vector<std::string> extra_hosts;  // extra DNS names / IPs for the server certificates
  absl::Duration validity = absl::Hours(24 * 365);
  bool force = false;  // overwrite an existing PKI
};

// File names inside the directory.
inline constexpr char kCaCert[] = "ca.pem";
inline constexpr char kCaKey[] = "ca.key";

// The client roles and services a PKI contains.
const std::vector<std::string>& PkiRoles();     // operator, viewer, vmm, kms, verifier
const std::vector<std::string>& PkiServices();  // vmm, kms, verifier, guest-agent

// Creates the PKI. kAlreadyExists when `dir` already holds a CA and !force; kInvalidArgument for
// a bad extra host; kInternal for I/O errors (naming the path).
absl::Status InitPki(const PkiOptions& options);

}  // namespace pml::pmlctl
