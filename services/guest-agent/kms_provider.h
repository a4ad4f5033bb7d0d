#pragma once
// The KMS key provider of the boot sequence (DESIGN.md §5): the guest authenticates the KMS, proves
// what it is, and receives its app's keys sealed to a one-time key.
//
//   1. The KMS's identity root CA (PEM, delivered with the config) must have the SPKI the app pins
//      in app-compose.json `key_provider_id` (measured: it is part of the compose hash); the
//      key-release TLS certificate must chain to that root. Otherwise nothing is sent.
//   2. A one-time X25519 key; an evidence bundle whose quote's report data is
//      SHA-512("pml-kms-key-release:" ‖ its public key) (lib/ratls/report_data.h), with the event
//      log as it stands (up to boot-mr-done) and GPU evidence under the derived nonce.
//   3. KeyRelease.GetAppKeys over TLS; the answer opens only with the one-time key (associated
//      data = app id) and must be for this app.
//
// Thread-safety: called once, at boot.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/crypto/secret_bytes.h"
#include "services/guest-agent/agent_core.h"
#include "services/guest-agent/gpu_source.h"
#include "services/guest-agent/runtime_log.h"

namespace pml::guest {

struct KmsProviderOptions {
  std::string address;            // KMS key-release listener, host:port
  std::string root_ca_pem_path;   // the KMS identity root CA, PEM
  std::string pinned_key_provider_id;  // hex SPKI DER from app-compose.json key_provider_id
  absl::Duration timeout = absl::Seconds(60);
};

struct KmsKeys {
  crypto::SecretBytes app_key;          // secp256k1 app root key
  std::vector<uint8_t> kms_signature;   // root k256 signature over the app key
  AppCa ca;                             // app CA key and [app CA, KMS root CA of the epoch]
  crypto::SecretBytes disk_key;         // per instance
  crypto::SecretBytes env_key;          // X25519
  uint32_t epoch = 0;
  std::string key_provider_info;        // {"name":"kms","id":"<identity root SPKI hex>"}
  std::string attestation_token;        // the verifier's token for the release
};

// kFailedPrecondition when the pin is missing or does not match, or the KMS refuses (its reason
// passes through); kUnavailable when the KMS cannot be reached; kDataLoss when the answer does not
// open or is for another app.
absl::StatusOr<KmsKeys> FetchKeysFromKms(const KmsProviderOptions& options, RuntimeEventLog& log,
                                         GpuSource* gpus, const AgentIdentity& identity);

}  // namespace pml::guest
