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
// Thread-safety: Handle is thread-safe (the parts are).

#include <cstdint>
#include <string>
#include <vector>

#include "services/guest-agent/agent_core.h"
#include "services/guest-agent/unix_http.h"

namespace pml::guest {

class DstackApi {
 public:
  explicit DstackApi(const AgentCore& core) : core_(core) {}

  // One request of either socket.
  HttpResponse Handle(const HttpRequest& request) const;

  const AgentIdentity& identity() const { return core_.identity(); }

 private:
  const AgentCore& core_;
};

}  // namespace pml::guest
