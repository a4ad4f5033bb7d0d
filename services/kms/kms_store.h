#pragma once
// pml-kms's persistent state in one SQL store (lib/store/sql.h): SQLite for one node, PostgreSQL
// when several KMS replicas serve together (DESIGN.md §5). Tables:
//   kms_meta       key/value facts about the cluster (the cluster-key check value)
//   kms_epochs     root-key epochs: public material and the secrets sealed under the cluster key
//   kms_app_policy which verifier policy each app's key release is appraised under (versioned)
//   kms_audit      append-only audit events (releases, refusals, policy changes, rotations, joins)
//   kms_replicas   KMS nodes sharing this store
// Every change that is audited writes its audit event in the same transaction. Never stores key
// material in the clear: epoch secrets are sealed by RootKeys before they get here.
//
// Thread-safety: thread-safe (one connection behind a mutex).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "lib/crypto/secret_bytes.h"
#include "lib/store/sql.h"
#include "pml/kms/v1/kms.pb.h"

namespace pml::kms {

struct EpochRow {
  uint32_t epoch = 0;
  int64_t create_unix = 0;
  std::string ca_cert_der;
  std::string k256_public_key;  // SEC1 compressed
  std::string sealed_secrets;   // RootKeys' sealed blob
};

class KmsStore {
 public:
  // Creates the tables when missing. Errors of the store pass through. With `reader` (a second
  // connection to the same database), the reads on every key release (GetAppPolicy,
  // CurrentEpoch) go through it, so they do not wait behind a write holding the first
  // connection (an audit commit's fsync); they still see every committed write.
  static absl::StatusOr<std::unique_ptr<KmsStore>> Open(std::unique_ptr<store::SqlDb> db,
                                                        std::unique_ptr<store::SqlDb> reader =
                                                            nullptr);
  // Opens `url` (store::OpenSqlDb) with a reader connection, except for an in-memory SQLite
  // database (a second connection would be another database).
  static absl::StatusOr<std::unique_ptr<KmsStore>> OpenUrl(const std::string& url);

  std::string kind() const { return kind_; }

  // Cluster facts.
  absl::StatusOr<std::optional<std::string>> GetMeta(const std::string& key);

  // Epochs, oldest first.
  absl::StatusOr<std::vector<EpochRow>> ListEpochs();
  // The newest epoch's number (0 in an empty store): one indexed read.
  absl::StatusOr<uint32_t> CurrentEpoch();
  // Inserts epoch `row.epoch`, which must be the current epoch + 1 (or 1 in an empty store), and
  // `meta` entries that are absent, with `audit` in the same transaction. kAborted when another
  // node inserted that epoch first or `expected_current` is set and differs from the current epoch.
  absl::Status InsertEpoch(const EpochRow& row, std::optional<uint32_t> expected_current,
                           const std::vector<std::pair<std::string, std::string>>& meta,
                           v1::AuditEvent audit);

  // A joining node's import: in one transaction, inserts the epochs the store lacks (in order,
  // each following the current one) and the absent `meta`, with `audit`. Epochs the store has
  // already are skipped (the caller checked they belong to the same cluster).
  absl::Status ImportEpochs(const std::vector<EpochRow>& rows,
                            const std::vector<std::pair<std::string, std::string>>& meta,
                            v1::AuditEvent audit);

  // App policies. Put validates nothing about the policy itself (the service does); it assigns
  // version = previous + 1 and returns the stored binding. kAborted when expected_version is
  // non-zero and differs from the current version (0 when absent).
  absl::StatusOr<v1::AppPolicy> PutAppPolicy(v1::AppPolicy policy, uint32_t expected_version,
                                             const std::string& caller);
  // kNotFound when the app has no binding.
  absl::StatusOr<v1::AppPolicy> GetAppPolicy(const std::string& app_id);
  absl::StatusOr<std::pair<std::vector<v1::AppPolicy>, std::string>> ListAppPolicies(
      int page_size, const std::string& page_token);
  // App-policy rows carry HMAC-SHA256 under a key derived from the cluster key, so that a writer
  // of a shared database who is not a KMS node cannot bind an app to a policy of its choosing
  // (it can still delete a row, which refuses the app its keys, or restore an older row the
  // operator once wrote). RootKeys sets the key once the cluster key is loaded; until then the
  // policy calls are kFailedPrecondition. A row whose MAC does not verify reads as kDataLoss,
  // naming the app; ListAppPolicies lists it with only app_id and `unauthenticated` set.
  void SetPolicyMacKey(const crypto::SecretBytes& cluster_key);
  // kNotFound when the app has no binding.
  absl::Status DeleteAppPolicy(const std::string& app_id, const std::string& caller);

  // Appends an audit event (sequence and, when unset, time are assigned) and returns its sequence
  // once it is durable. Group commit: events appended while another thread's commit is in
  // flight are written together in the next transaction (one fsync for the group); each caller
  // still returns only after its own event is committed. If a group's transaction fails, its
  // events are retried one by one, so one bad event fails only its own caller.
  absl::StatusOr<uint64_t> AppendAudit(v1::AuditEvent event);
  // Audit rows form one MAC chain per KMS node: each row carries the node's name, its number in
  // the node's chain (1, 2, ...) and HMAC-SHA256, under a key derived from the cluster key, over
  // those, the row's indexed columns (time, app id, action, outcome), the event and the MAC of
  // the node's previous row. A writer of the database who is not a KMS node of this cluster can
  // then neither change nor forge a row, nor delete one that has a successor, without the
  // listing saying so. Deleting a node's newest rows goes unnoticed (nothing outside the
  // database remembers them; the node continues its chain from what is left): operators who
  // need that keep a copy of the log elsewhere (ListAuditEvents pages). RootKeys sets
  // the key and this node's name as soon as the cluster key is known; rows appended before that
  // carry no MAC and list as unauthenticated. Node names must be unique within a cluster: two
  // nodes of one name on one database fail each other's appends (the chain position is unique).
  void SetAuditChain(const crypto::SecretBytes& cluster_key, const std::string& node);
  // Forgets the chain key (rows are appended without a MAC again).
  void ClearAuditChain();
  // Filtered, paged, oldest first. Each row's MAC is checked: an event that fails (or has none)
  // is listed with `unauthenticated` and the reason set. kInvalidArgument for a bad page token.
  absl::StatusOr<std::pair<std::vector<v1::AuditEvent>, std::string>> ListAudit(
      const v1::ListAuditEventsRequest& request);

  // Replicas.
  absl::Status UpsertReplica(const std::string& name, const std::string& url, int64_t join_unix,
                             int64_t last_seen_unix);
  absl::StatusOr<std::vector<v1::ReplicaInfo>> ListReplicas();

 private:
  KmsStore(std::unique_ptr<store::SqlDb> db, std::unique_ptr<store::SqlDb> reader,
           std::string kind)
      : db_(std::move(db)), reader_(std::move(reader)), kind_(std::move(kind)) {}
  absl::StatusOr<std::shared_ptr<const crypto::SecretBytes>> PolicyMacKey();
  struct AuditChain {
    crypto::SecretBytes key;
    std::string node;
  };
  std::shared_ptr<const AuditChain> GetAuditChain();
  absl::StatusOr<v1::AppPolicy> PolicyFromRow(const std::string& app_id,
                                              const store::SqlValue& body,
                                              const store::SqlValue& mac);
  // Runs a read-only `fn(SqlDb&)` on the reader connection, or on the main one without it.
  template <typename Fn>
  auto Read(Fn fn) -> decltype(fn(std::declval<store::SqlDb&>()));
  // A node's audit chain position: the newest row's number and MAC (0 and empty before its first
  // row); `chain` null without the chain key.
  struct ChainHead {
    std::shared_ptr<const AuditChain> chain;
    int64_t seq = 0;
    std::string mac;
  };
  // The committed head (cached; read from the database outside any transaction when unknown).
  // Call before starting the transaction the append goes into.
  absl::StatusOr<ChainHead> ChainHeadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits `tx`; `head` (advanced by the appends in it) becomes the cached head on success, and
  // the cache is dropped on failure (the outcome may be unknown).
  absl::Status CommitChained(store::SqlTransaction& tx, const ChainHead& head)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inserts the event as the row after `head` and advances `head` (the caller's copy).
  absl::StatusOr<uint64_t> AppendAuditLocked(v1::AuditEvent event, ChainHead& head)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  struct PendingAudit {
    v1::AuditEvent event;
    absl::StatusOr<uint64_t> result = absl::InternalError("not committed");
    bool done = false;
  };
  void CommitAuditGroup(const std::vector<PendingAudit*>& group) ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex group_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::vector<PendingAudit*> pending_audit_ ABSL_GUARDED_BY(group_mu_);
  bool audit_committing_ ABSL_GUARDED_BY(group_mu_) = false;
  absl::Mutex mu_;
  std::unique_ptr<store::SqlDb> db_ ABSL_GUARDED_BY(mu_);
  std::optional<ChainHead> chain_head_ ABSL_GUARDED_BY(mu_);
  absl::Mutex mac_mu_;
  std::shared_ptr<const crypto::SecretBytes> policy_mac_key_ ABSL_GUARDED_BY(mac_mu_);
  std::shared_ptr<const AuditChain> audit_chain_ ABSL_GUARDED_BY(mac_mu_);
  absl::Mutex reader_mu_;
  const std::unique_ptr<store::SqlDb> reader_;  // its use is guarded by reader_mu_
  const std::string kind_;
};

}  // namespace pml::kms
