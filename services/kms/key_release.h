#pragma once
// pml-kms's guest-facing behaviour, free of gRPC servers (STYLE.md §1): attested key release
// (GetAppKeys), RA-TLS certificate signing (SignCert), the public env-encryption key, the public
// root material, and replication (JoinCluster). The verifier is reached through VerifierClient
// (the service passes a gRPC one, with mTLS and the `kms` role).
//
// Every release and every refusal is audited: time, app id, instance id, compose hash, device id,
// measurements, the verifier's verdict and failed checks, the policy and the epoch. Refusals are
// kFailedPrecondition naming the reason: an unknown app (no policy binding), evidence the
// verifier refuses under the app's policy (including a quote whose report data does not commit to
// the request's ephemeral key, or simulated evidence under a policy that does not allow it), a
// verified app id that differs from the claimed one. A verifier that cannot be reached is
// kUnavailable (audited as an error). No key material ever reaches a log line or a Status.
//
// Thread-safety: thread-safe.

#include <cstdint>
#include <memory>
#include <string>

#include <openssl/crypto.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lib/crypto/seal.h"
#include "pml/attestation/v1/attestation.pb.h"
#include "pml/kms/v1/kms.pb.h"
#include "services/kms/kms_store.h"
#include "services/kms/root_keys.h"

namespace pml::kms {

class VerifierClient {
 public:
  virtual ~VerifierClient() = default;
  // pml-verifier's Appraise. Transport failures are kUnavailable / kDeadlineExceeded; a verifier
  // error (e.g. INVALID_ARGUMENT for malformed evidence) passes through with its code.
  virtual absl::StatusOr<attestation::v1::AppraiseResponse> Appraise(
      const attestation::v1::AppraiseRequest& request) = 0;
  virtual std::string address() const = 0;
};

// Labels of the two sealed payloads (lib/crypto/seal.h).
inline constexpr const char* kAppKeysSealLabel = crypto::kKmsAppKeysSealLabel;
inline constexpr const char* kRootSecretsSealLabel = crypto::kKmsRootSecretsSealLabel;

struct KeyReleaseOptions {
  std::string node_name = "kms-0";
  // Policy a joining replica is appraised under: a verifier policy id (empty: replication is
  // refused).
  std::string replica_policy_id;
  // SHA-256 of the operator's join token (empty: replication is refused). A joiner must present
  // the token and pass the replica policy.
  std::string replica_join_token_sha256;
  std::string version;
  // This node's own evidence (GuestTls::evidence: a quote binding its guest TLS key), answered in
  // GetPublicInfo.kms_evidence; empty when the node has no TEE.
  common::v1::EvidenceBundle kms_evidence;
  // Validity of app CA certificates the KMS issues.
  absl::Duration app_ca_validity = absl::Hours(24 * 365 * 5);
};

class KeyReleaseCore {
 public:
  // All borrowed; must outlive the core.
  KeyReleaseCore(RootKeys& keys, KmsStore& store, VerifierClient& verifier,
                 KeyReleaseOptions options)
      : keys_(keys), store_(store), verifier_(verifier), options_(std::move(options)) {}

  absl::StatusOr<v1::GetAppKeysResponse> GetAppKeys(const v1::GetAppKeysRequest& request);
  absl::StatusOr<v1::SignCertResponse> SignCert(const v1::SignCertRequest& request);
  absl::StatusOr<v1::GetAppEnvEncryptPubKeyResponse> GetAppEnvEncryptPubKey(
      const v1::GetAppEnvEncryptPubKeyRequest& request);
  absl::StatusOr<v1::GetPublicInfoResponse> GetPublicInfo();
  absl::StatusOr<v1::JoinClusterResponse> JoinCluster(const v1::JoinClusterRequest& request);

  // Public material of every epoch (GetPublicInfo, GetKmsInfo).
  absl::StatusOr<std::vector<v1::EpochPublicInfo>> EpochInfos();

  const KeyReleaseOptions& options() const { return options_; }

 private:
  struct Appraisal;
  // Everything of an app's keys that depends only on (epoch, app id), derived and encoded once:
  // a release then costs the disk key's HKDF, the seal and the audit write. Secrets stay in
  // memory only (as the root secrets do), cleansed when an entry is dropped.
  struct AppMaterial {
    crypto::EvpPkeyPtr app_ca_key;
    crypto::X509Ptr app_ca_cert;
    std::string app_ca_cert_der, app_ca_spki;
    std::string app_ca_key_pkcs8;  // secret
    std::string env_key;           // secret
    std::string env_public_key;
    std::string k256_key;          // secret
    std::string k256_public_key, k256_signature, env_signature_v0;
    mutable absl::Mutex env_mu;
    mutable uint64_t env_sig_time ABSL_GUARDED_BY(env_mu) = 0;
    mutable std::string env_sig ABSL_GUARDED_BY(env_mu);
    ~AppMaterial() {
      for (std::string* s : {&app_ca_key_pkcs8, &env_key, &k256_key})
        OPENSSL_cleanse(s->data(), s->size());
    }
  };
  static constexpr size_t kMaterialCacheEntries = 4096;
  absl::StatusOr<std::shared_ptr<const AppMaterial>> Material(const Epoch& e,
                                                              const std::string& app_id);
  absl::StatusOr<Appraisal> AppraiseFor(const common::v1::EvidenceBundle& evidence,
                                        attestation::v1::ReportDataPurpose purpose,
                                        const std::string& bound_value,
                                        const v1::AppPolicy* app_policy,
                                        const std::string& replica_policy_id,
                                        v1::AuditEvent& audit);
  absl::StatusOr<std::shared_ptr<const Epoch>> EpochFor(bool has_epoch, uint32_t epoch);
  absl::Status Refuse(v1::AuditEvent audit, absl::Status status);
  // The sender key of released app keys' sealed boxes, reused for up to kSenderKeyLifetime:
  // each request brings a one-time recipient key, so every box still has its own shared secret
  // (crypto::SealSender), and a release costs one X25519 operation instead of three. The root
  // secrets such a key could protect are in this process's memory anyway.
  static constexpr absl::Duration kSenderKeyLifetime = absl::Seconds(60);
  absl::StatusOr<std::shared_ptr<const crypto::SealSender>> SenderKey();

  RootKeys& keys_;
  KmsStore& store_;
  VerifierClient& verifier_;
  const KeyReleaseOptions options_;
  absl::Mutex sender_mu_;
  std::shared_ptr<const crypto::SealSender> sender_ ABSL_GUARDED_BY(sender_mu_);
  absl::Time sender_since_ ABSL_GUARDED_BY(sender_mu_);
  absl::Mutex cache_mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const AppMaterial>> cache_
      ABSL_GUARDED_BY(cache_mu_);
};

// Issues the app CA certificate of `app_id` in `epoch` (usage app:ca, pathlen 0, app id
// extension), valid from now for `validity` but never beyond the root CA.
absl::StatusOr<crypto::X509Ptr> IssueAppCaCert(const Epoch& epoch, const EVP_PKEY& app_ca_key,
                                               absl::Span<const uint8_t> app_id,
                                               absl::Duration validity);

}  // namespace pml::kms
