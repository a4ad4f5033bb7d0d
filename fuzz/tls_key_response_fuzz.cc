// libFuzzer target for `pml-guest-agent tls-key`'s parser of the agent's /GetTlsKey answer
// (services/guest-agent/tls_key_client.h ParseTlsKeyResponse): whatever answers on the socket, the
// client must not crash, leak or read out of bounds, and must accept only a key together with a
// chain whose first certificate carries that key (then both outputs are non-empty PEM).
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "services/guest-agent/tls_key_client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view body(reinterpret_cast<const char*>(data), size);
  auto files = pml::guest::ParseTlsKeyResponse(body);
  if (files.ok() &&
      (files->key_pem.empty() || files->chain_pem.rfind("-----BEGIN CERTIFICATE-----", 0) != 0)) {
    __builtin_trap();
  }
  return 0;
}
