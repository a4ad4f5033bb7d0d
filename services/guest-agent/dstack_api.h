#pragma once
// The dstack-compatible guest API over HTTP/JSON (specs/dstack-compat.md §2.4), served on
// `dstack.sock` (DstackGuest: POST /GetQuote, /GetKey, /Info, /EmitEvent, /Sign, /Verify,
// /Version) and `tappd.sock` (legacy Tappd: /prpc/Tappd.TdxQuote, /prpc/Tappd.RawQuote,
// /prpc/Tappd.Info), as `@phala/dstack-sdk`'s DstackClient and TappdClient call them: JSON
// bodies, binary values as hex, errors as HTTP 4xx/5xx with `{"error": "..."}` (the SDK throws
// `result.error`).
//
// Everything is answered from the agent's parts (the runtime event log and its TEE, the app keys,
// the app identity); nothing here holds state. Not yet served (issue 6 continues): /GetTlsKey,
// /Attest, /prpc/Tappd.DeriveKey — they answer 501 with a JSON error naming what is missing.
//
// Thread-safety: Handle is thread-safe (the parts are).

#include <cstdint>
#include <string>
#include <vector>

#include "services/guest-agent/app_keys.h"
#include "services/guest-agent/runtime_log.h"
#include "services/guest-agent/unix_http.h"

namespace pml::guest {

// The app identity and configuration as the agent computed them at boot (dstack-compat §3.2).
struct AgentIdentity {
  std::vector<uint8_t> app_id;        // 20 bytes
  std::vector<uint8_t> instance_id;   // 20 bytes, empty with no_instance_id
  std::vector<uint8_t> compose_hash;  // 32 bytes
  std::vector<uint8_t> os_image_hash;
  std::vector<uint8_t> device_id;
  std::string app_name;
  std::string app_compose;        // the exact bytes of app-compose.json
  std::string vm_config;          // dstack VmConfig JSON
  std::string key_provider_info;  // {"name":"...","id":"..."}
  std::string boot_log_json;      // RTMR0-2 entries (dstack JSON array), "[]" when none
  std::string tee_kind;           // "simulated", "configfs-tsm", "tdx-guest-device"
  std::string version;            // agent version
};

class DstackApi {
 public:
  DstackApi(RuntimeEventLog& log, AppKeys& keys, AgentIdentity identity)
      : log_(log), keys_(keys), identity_(std::move(identity)) {}

  // One request of either socket.
  HttpResponse Handle(const HttpRequest& request) const;

  const AgentIdentity& identity() const { return identity_; }

 private:
  RuntimeEventLog& log_;
  AppKeys& keys_;
  const AgentIdentity identity_;
};

}  // namespace pml::guest
