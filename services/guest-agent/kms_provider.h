#pragma once
// The KMS key provider of the boot sequence (DESIGN.md §5): the guest authenticates the KMS, proves
// what it is, and receives its app's keys sealed to a one-time key.
//
//   1. The KMS's identity root CA must have the SPKI the app pins in app-compose.json
//      `key_provider_id` (measured: it is part of the compose hash); the key-release TLS
//      certificate must chain to that root. Otherwise nothing is sent. The CA comes from a PEM
//      file delivered with the config or, where none is, from the KMS itself
//      (FetchKmsIdentityCa): fetched without authenticating the server, which is safe because
//      only a certificate carrying the pinned key is accepted, and everything after is
//      authenticated by it.
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
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/crypto/secret_bytes.h"
#include "services/guest-agent/agent_core.h"
#include "services/guest-agent/gpu_source.h"
#include "services/guest-agent/runtime_log.h"

namespace pml::guest {

struct KmsProviderOptions {
  std::string address;            // KMS key-release listener, host:port
  // The KMS identity root CA, PEM; "" = fetch it from the KMS (FetchKmsIdentityCa).
  std::string root_ca_pem_path;
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
// passes through); kUnavailable when the KMS cannot be reached (or its TLS certificate does not
// chain to the pinned root); kDataLoss when the answer does not open or is for another app; with
// root_ca_pem_path "", FetchKmsIdentityCa's errors.
absl::StatusOr<KmsKeys> FetchKeysFromKms(const KmsProviderOptions& options, RuntimeEventLog& log,
                                         GpuSource* gpus, const AgentIdentity& identity);

// The KMS's identity CA, asked of the KMS at `address` (KeyRelease.GetPublicInfo,
// identity_ca_cert) over TLS WITHOUT verifying the server, and accepted only when it is one
// self-signed certificate whose SPKI (hex of the DER SubjectPublicKeyInfo) equals
// `pinned_key_provider_id` (case-insensitive). Returns it as PEM, the trust anchor for the
// key-release connection. kFailedPrecondition when the pin is empty, or the KMS's CA is not the
// pinned one (the message names both, each bounded to its last 64 hex digits); kInvalidArgument
// when identity_ca_cert is missing, not one DER certificate, or not self-signed; the call's code
// otherwise (kUnavailable when the KMS cannot be reached) with the address.
absl::StatusOr<std::string> FetchKmsIdentityCa(const std::string& address,
                                               absl::string_view pinned_key_provider_id,
                                               absl::Duration timeout);

// The gRPC target of a KMS URL: "host:port" as is; "https://host[:port][/]" as host:port (443 by
// default), as the VMM writes .sys-config.json kms_urls. kInvalidArgument for another scheme
// (the key-release API is TLS only), a path, or an empty host. Pure.
absl::StatusOr<std::string> KmsTargetFromUrl(absl::string_view url);

}  // namespace pml::guest
