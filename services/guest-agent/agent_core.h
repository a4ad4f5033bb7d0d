#pragma once
// The guest agent's behaviour, once, for both of its APIs: the dstack HTTP/JSON sockets
// (dstack_api.h) and gRPC pml.guest.v1.GuestAgent (guest_agent_service.h) are thin translations
// of the methods here. Free of gRPC and JSON parsing (STYLE.md §1); the evidence bundle is the
// shared protobuf message.
//
// Thread-safety: every method is const and thread-safe (the parts are).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "lib/crypto/ossl.h"
#include "lib/crypto/secret_bytes.h"
#include "pml/common/v1/evidence.pb.h"
#include "services/guest-agent/app_keys.h"
#include "services/guest-agent/gpu_source.h"
#include "services/guest-agent/runtime_log.h"

namespace pml::guest {

// The boot events, in the order the boot sequence emits them (DESIGN.md §4).
inline constexpr const char* kBootEventNames[] = {
    "system-preparing", "app-id",       "compose-hash", "gpu-attestation",
    "instance-id",      "boot-mr-done", "key-provider", "system-ready"};
// Names only the boot sequence may emit: the above, and dstack's other boot-time events that
// verifiers read identity from (os-image-hash, mr-kms, init-script-hash, gpu-policy-hash,
// storage-fs, rootfs-hash).
bool IsBootEventName(absl::string_view name);

// Where the app's keys came from (GetInfo.key_provider).
enum class KeyProviderKind { kNone, kKms, kLocalDev };

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
  KeyProviderKind key_provider = KeyProviderKind::kNone;
  std::string boot_log_json = "[]";  // RTMR0-2 entries (dstack JSON array)
  std::string tee_kind;              // "simulated", "configfs-tsm", "tdx-guest-device"
  std::string version;               // agent version
  std::vector<GpuDeviceInfo> gpus;   // verified by the boot gate
  std::string gpu_evidence_json;     // what the gate verified ("" without GPUs)
  // "production" or "development" as the image's init states it (--image-variant; the init is
  // part of the measured initrd); "" when not stated.
  std::string image_variant;
};

// The app CA: what signs GetTlsKey certificates. From the KMS (its SignCert / app CA), or from
// the local development provider. chain_pem = [app CA certificate, KMS root CA certificate].
struct AppCa {
  crypto::EvpPkeyPtr key;
  crypto::X509Ptr cert;
  std::vector<std::string> chain_pem;
};

struct QuoteResult {
  std::vector<uint8_t> quote;
  std::string event_log;  // boot log + runtime log, dstack JSON
  std::vector<uint8_t> report_data;  // 64 bytes
  std::string vm_config;
  bool simulated = false;
};

struct TlsKeyRequest {
  std::string subject;
  std::vector<std::string> alt_names;  // DNS names or IP addresses
  bool usage_ra_tls = false;
  bool usage_server_auth = true;
  bool usage_client_auth = false;
  std::optional<absl::Time> not_before;
  std::optional<absl::Time> not_after;
  bool with_app_info = false;  // embeds the app id extension (.1.3; dstack HEAD's msgpack .1.9 is not emitted)
  // Tappd.DeriveKey: the key is derived from the app key for this path (deterministic) instead
  // of random.
  std::optional<std::string> derive_path;
};

struct TlsKeyResult {
  crypto::SecretBytes key_pem;  // PKCS#8 PEM
  std::vector<std::string> certificate_chain;  // leaf, app CA, root
};

struct InfoResult {
  std::string tcb_info_json;  // dstack tcb_info (mrtd, rtmr0-3, mr_aggregated, ...)
  std::vector<uint8_t> mr_aggregated;
  std::string app_cert_pem;  // the app CA certificate ("" without one)
};

// Limits of the request fields.
inline constexpr size_t kMaxTlsSubjectBytes = 256;
inline constexpr size_t kMaxTlsAltNames = 64;

class AgentCore {
 public:
  // Borrows log, keys, ca (may be null: GetTlsKey then FAILED_PRECONDITION) and gpus (may be
  // null: no GPUs); all must outlive the core.
  AgentCore(RuntimeEventLog& log, AppKeys& keys, const AppCa* ca, GpuSource* gpus,
            AgentIdentity identity);

  // A quote over `report_data` (≤ 64 bytes, zero-padded). kInvalidArgument when longer.
  absl::StatusOr<QuoteResult> GetQuote(absl::Span<const uint8_t> report_data) const;

  // A P-256 key (fresh, or derived for Tappd.DeriveKey) and its certificate chain signed by the
  // app CA; with usage_ra_tls, the leaf carries a quote whose report data binds its key
  // (SHA-512("ratls-cert:" ‖ SPKI)), the event log and the app id. kInvalidArgument naming the
  // field for a bad subject, alt name or validity; kFailedPrecondition without an app CA.
  absl::StatusOr<TlsKeyResult> GetTlsKey(const TlsKeyRequest& request) const;

  // Registers from a fresh quote, mr_aggregated and tcb_info (dstack /Info).
  absl::StatusOr<InfoResult> Info() const;

  // The evidence bundle for `report_data`: quote, event log, GPU evidence taken with
  // ratls::GpuNonce(report data) (unless skip_gpu or no GPUs), vm_config, app info.
  absl::StatusOr<common::v1::EvidenceBundle> Attest(absl::Span<const uint8_t> report_data,
                                                    bool skip_gpu) const;

  // An app's runtime event (dstack /EmitEvent): RuntimeEventLog::Emit, except that the boot
  // events' names are refused with kInvalidArgument (only the boot sequence emits those, so a
  // relying party can trust that e.g. `compose-hash` came from the agent).
  absl::Status EmitEvent(absl::string_view name, absl::Span<const uint8_t> payload,
                         EmitReceipt* receipt = nullptr) const;

  RuntimeEventLog& log() const { return log_; }
  const AppKeys& keys() const { return keys_; }
  const AgentIdentity& identity() const { return identity_; }
  bool simulated() const { return identity_.tee_kind == "simulated"; }

 private:
  RuntimeEventLog& log_;
  AppKeys& keys_;
  const AppCa* ca_;
  GpuSource* gpus_;
  AgentIdentity identity_;  // boot_log_json made compact once, in the constructor
};

// The evidence bundle for `report_data` (≤ 64 bytes, zero-padded): a quote taken with the log as
// it is (RuntimeEventLog::GetQuoteAndLog), the boot + runtime log, GPU evidence from `gpus` (may
// be null) taken with ratls::GpuNonce(report data), vm_config and the app info. Used by
// AgentCore::Attest and by the boot sequence's KMS request.
absl::StatusOr<common::v1::EvidenceBundle> BuildEvidenceBundle(
    RuntimeEventLog& log, GpuSource* gpus, const AgentIdentity& identity,
    absl::Span<const uint8_t> report_data);

// The local development key provider: from a 32-byte seed sealed in the agent's state dir,
// derives the app key (secp256k1) and a root CA ("PML local-dev KMS root (DEVELOPMENT)") that
// issues the app CA, so GetKey, GetTlsKey and Sign work without a KMS. key_provider_info is
// {"name":"local-dev","id":"<root CA SPKI SHA-256 hex>"}. Deterministic per seed and app id
// (keys; certificates are re-issued per start under the same keys).
struct LocalDevKeys {
  crypto::SecretBytes app_key;
  AppCa ca;
  std::string key_provider_info;
};
absl::StatusOr<LocalDevKeys> MakeLocalDevKeys(const crypto::SecretBytes& seed,
                                              absl::Span<const uint8_t> app_id);

}  // namespace pml::guest
