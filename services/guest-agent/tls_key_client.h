#pragma once
// The client side of the agent's /GetTlsKey, for apps inside the guest that cannot speak HTTP over
// a unix socket (`pml-guest-agent tls-key`, e.g. a bash app that runs `openssl s_server`): it asks
// the agent's dstack socket for a fresh TLS key and certificate chain and writes them as files.
//
// The answer is checked before anything is written: the key parses, every certificate parses, and
// the leaf (first) certificate carries the key's public half.
//
// Thread-safety: no shared state; each call is independent.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/crypto/secret_bytes.h"

namespace pml::guest {

struct TlsKeyClientOptions {
  std::string socket_path;             // the agent's dstack socket, e.g. /var/run/dstack.sock
  std::string subject;                 // the leaf's common name
  std::vector<std::string> alt_names;  // DNS names or IP addresses for the leaf's SAN
  bool ra_tls = false;                 // add the RA-TLS extensions (quote, event log, app id)
  absl::Duration timeout = absl::Seconds(60);
};

struct TlsKeyFiles {
  crypto::SecretBytes key_pem;  // PKCS#8 PEM private key
  std::string chain_pem;        // the certificates, PEM, leaf first, each ending in a newline
};

// Builds the /GetTlsKey request body (the SDK's JSON: subject, alt_names, usage_ra_tls,
// usage_server_auth true). Pure.
std::string TlsKeyRequestJson(const TlsKeyClientOptions& options);

// Parses a 200 answer of /GetTlsKey: {"key": PEM, "certificate_chain": [PEM, ...]}.
// kInvalidArgument naming the field when the body is not that shape, a PEM does not parse, the
// chain is empty or longer than 8, or the leaf does not carry the key's public half. Pure; the
// error never quotes the key.
absl::StatusOr<TlsKeyFiles> ParseTlsKeyResponse(absl::string_view body);

// POSTs /GetTlsKey to the agent's socket and parses the answer. kUnavailable when the socket
// cannot be reached or the call times out; an agent's error answer maps its HTTP status to a code
// (400 kInvalidArgument, 403 kPermissionDenied, 404 kNotFound, 409 kFailedPrecondition,
// 503 kUnavailable, else kInternal) with the agent's message (bounded); ParseTlsKeyResponse's
// errors otherwise.
absl::StatusOr<TlsKeyFiles> RequestTlsKey(const TlsKeyClientOptions& options);

// Writes the key (mode 0600) and the chain (mode 0644), each atomically: a crash leaves the old
// file or the new one. Errors name the path: kNotFound for a missing directory,
// kPermissionDenied, kInternal for other I/O failures.
absl::Status WriteTlsKeyFiles(const TlsKeyFiles& files, const std::string& key_path,
                              const std::string& chain_path);

}  // namespace pml::guest
