#pragma once
// pml-kms's root secrets (DESIGN.md §5): per epoch a P-256 root CA key (with its self-signed
// certificate) and a secp256k1 root key, from which every app key derives (derive.h).
//
// At rest: each epoch's secrets are sealed (AES-256-GCM, lib/crypto/seal.h AeadSeal) under the
// node's cluster key and stored in the KMS store (kms_epochs) with their public material; the
// associated data binds the epoch number and the CA certificate. The cluster key (32 random bytes)
// lives in `<state dir>/cluster.key`, written atomically with mode 0600; the store keeps only an
// HMAC check value of it. Replicas sharing a PostgreSQL store share the cluster key (JoinCluster
// hands it over on the attested channel), so an epoch rotated in on one node is read by all.
//
// Crash safety (a kill -9 at any point leaves the old state or the new one):
//   first start  the key is written to cluster.key.new, epoch 1 is inserted (one transaction with
//                the key's check value), then the key is written to cluster.key; a restart reuses
//                a pending .new key for an empty store, completes it when the store's check value
//                is its own, and drops it (asking to --join) when another node won the race;
//   rotation     one transaction inserting epoch N+1 (and its audit event); it either commits
//                or not, and two nodes rotating at once cannot both win (kAborted).
// Start-up refuses (kFailedPrecondition) a store that has epochs but no local cluster key (join
// the cluster instead), a cluster key whose check value differs from the store's, and a
// cluster key with an empty store (a wrong --store must not silently start a new cluster).
//
// Thread-safety: thread-safe.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lib/crypto/ossl.h"
#include "lib/crypto/secret_bytes.h"
#include "lib/tee/tee_provider.h"
#include "pml/common/v1/evidence.pb.h"
#include "services/kms/derive.h"
#include "services/kms/kms_store.h"

namespace pml::kms {

// One epoch, opened.
struct Epoch {
  RootSecret secret;
  crypto::EvpPkeyPtr ca_key;
  crypto::X509Ptr ca_cert;
  std::string ca_cert_der;
  std::vector<uint8_t> ca_spki_der;
  std::vector<uint8_t> k256_public_key;  // SEC1 compressed
  absl::Time created;
  // dstack key_provider_id: hex of the root CA's SPKI DER. The cluster's identity is epoch 1's.
  std::string key_provider_id() const;
};

// The cluster's identity CA: a P-256 key derived from epoch 1's root CA secret (so every replica
// has it) that signs nothing but key-release TLS certificates. Epoch root CAs sign app CAs, and
// app CAs sign whatever an app asks its guest agent for; keeping the TLS anchor apart means no
// app can present a certificate a guest would take for the KMS. key_provider_id = hex of its SPKI.
// The certificate (fixed subject, serial and validity) may differ in signature bytes between
// replicas; any of them anchors any replica's TLS certificate.
struct IdentityCa {
  crypto::EvpPkeyPtr key;
  crypto::X509Ptr cert;
  std::string cert_der;
  std::string cert_pem;
  std::string key_provider_id;  // hex SPKI DER
};
absl::StatusOr<IdentityCa> MakeIdentityCa(const Epoch& epoch1);
// key_provider_id of the identity CA derived from epoch 1's root CA scalar (for a joiner's check).
absl::StatusOr<std::string> IdentityKeyProviderId(const crypto::SecretBytes& epoch1_ca_scalar);

// The key-release listener's TLS identity: a fresh P-256 key and a certificate issued by the
// identity CA (usage "kms:rpc", SANs `names`: DNS names or IP addresses). With `tee` (the node
// runs in a CVM, or the simulated TEE), the certificate is also an RA-TLS certificate: it carries
// a quote whose report data binds its key (SHA-512("ratls-cert:" ‖ SPKI), lib/ratls/cert.h), so
// anyone can appraise what runs behind the listener (`pmlctl verify endpoint`); the same evidence
// is returned in `evidence` for GetPublicInfo. No runtime event log: a KMS node is appraised on
// its platform and OS measurements, as when it joins.
struct GuestTls {
  std::string key_pem;    // secret
  std::string chain_pem;  // leaf, identity CA
  std::string root_pem;   // identity CA
  common::v1::EvidenceBundle evidence;  // empty without a TEE
};
absl::StatusOr<GuestTls> IssueGuestTls(const IdentityCa& identity, const std::string& node_name,
                                       const std::vector<std::string>& names,
                                       tee::TeeProvider* tee = nullptr);

// A KMS node's own evidence: a quote from `tee` over `report_data` (64 bytes), labelled with the
// TEE (simulated or not). No runtime event log: a KMS node is appraised on its platform and OS
// measurements (the replica policy sets require_event_log false and allow_any_app).
absl::StatusOr<common::v1::EvidenceBundle> NodeEvidence(tee::TeeProvider& tee,
                                                        absl::Span<const uint8_t> report_data);

class RootKeys {
 public:
  // See the file comment. `store` must outlive the object. Audits first-start generation with
  // `caller` "kms:<node>".
  static absl::StatusOr<std::unique_ptr<RootKeys>> Open(const std::string& state_dir,
                                                        KmsStore& store,
                                                        const std::string& node_name);

  // A joining node: writes the received cluster key (atomically, 0600; kAlreadyExists when the
  // state dir already has one), inserts the epochs the store lacks, then opens as above. Nothing
  // is written when a received epoch does not open or check.
  static absl::StatusOr<std::unique_ptr<RootKeys>> Join(const std::string& state_dir,
                                                        KmsStore& store,
                                                        const std::string& node_name,
                                                        const v1::RootSecrets& secrets);

  // The current epoch (re-read from the store: another replica may have rotated).
  absl::StatusOr<std::shared_ptr<const Epoch>> Current();
  // Epoch `n`; kNotFound when the cluster has no such epoch.
  absl::StatusOr<std::shared_ptr<const Epoch>> Get(uint32_t n);
  // Every epoch, oldest first.
  absl::StatusOr<std::vector<std::shared_ptr<const Epoch>>> All();

  // Starts epoch current + 1 (kAborted when expected_current is set and differs, or another node
  // won the race). Returns the new epoch.
  absl::StatusOr<std::shared_ptr<const Epoch>> Rotate(std::optional<uint32_t> expected_current,
                                                      const std::string& reason,
                                                      const std::string& caller);

  // Everything a joining replica needs (secret!): every epoch and the cluster key.
  absl::StatusOr<v1::RootSecrets> Export();

  // The identity CA (computed once from epoch 1).
  absl::StatusOr<std::shared_ptr<const IdentityCa>> Identity();

 private:
  RootKeys(KmsStore& store, crypto::SecretBytes cluster_key)
      : store_(store), cluster_key_(std::move(cluster_key)) {}
  absl::Status Refresh() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<const Epoch>> OpenRow(const EpochRow& row) const;
  absl::Status Create(uint32_t epoch, std::optional<uint32_t> expected_current,
                      v1::AuditEvent audit);

  KmsStore& store_;
  const crypto::SecretBytes cluster_key_;
  absl::Mutex mu_;
  std::map<uint32_t, std::shared_ptr<const Epoch>> epochs_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const IdentityCa> identity_ ABSL_GUARDED_BY(mu_);
};

// The check value stored for a cluster key.
std::string ClusterKeyCheck(const crypto::SecretBytes& cluster_key);

}  // namespace pml::kms
