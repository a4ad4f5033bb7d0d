#pragma once
// The dstack-compatible guest API over HTTP/JSON (specs/dstack-compat.md §2.4), served on
// `dstack.sock` (DstackGuest: POST /GetQuote, /GetKey, /Info, /EmitEvent, /Sign, /Verify,
// /Version) and `tappd.sock` (legacy Tappd: /prpc/Tappd.TdxQuote, /prpc/Tappd.RawQuote,
// /prpc/Tappd.Info), as `@phala/dstack-sdk`'s DstackClient and TappdClient call them: JSON
// bodies, binary values as hex, errors as HTTP 4xx/5xx with `{"error": "..."}` (the SDK throws
// `result.error`).
//
// Also /GetTlsKey, /Attest (the attestation is the serialized pml.common.v1.EvidenceBundle, hex)
// and /prpc/Tappd.DeriveKey. Everything is answered by the AgentCore (agent_core.h); this layer
// only translates JSON, and holds no state.
//
// The TCP listener (`--dstack-http-listen`, reached from the host through a forwarded port) serves
// only the public, key-free subset through HandlePublic: quotes, attestations, Info and Version.
// Every other path (GetKey, GetTlsKey, EmitEvent, Sign, Verify, Tappd.DeriveKey, unknown ones)
// answers 403 before its body is parsed: key material never leaves the guest, and nobody outside
// may extend RTMR3.
//
// Thread-safety: Handle and HandlePublic are thread-safe (the parts are).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "services/guest-agent/agent_core.h"
#include "services/guest-agent/unix_http.h"

namespace pml::guest {

class DstackApi {
 public:
  explicit DstackApi(const AgentCore& core) : core_(core) {}

  // One request of either socket.
  HttpResponse Handle(const HttpRequest& request) const;

  // One request of the TCP listener: Handle for a public path, else 403 with
  // {"error": "<path> is not served on the TCP listener: ..."} (the path bounded to 64 bytes).
  HttpResponse HandlePublic(const HttpRequest& request) const;

  // True for exactly the paths HandlePublic passes on: /GetQuote, /Attest, /Info, /Version,
  // /prpc/Tappd.TdxQuote, /prpc/Tappd.Info (exact, case-sensitive, as Handle routes them). Pure.
  static bool IsPublicPath(absl::string_view path);

  const AgentIdentity& identity() const { return core_.identity(); }

 private:
  const AgentCore& core_;
};

}  // namespace pml::guest
