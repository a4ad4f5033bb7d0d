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
  // Creates the tables when missing. Errors of the store pass through.
  static absl::StatusOr<std::unique_ptr<KmsStore>> Open(std::unique_ptr<store::SqlDb> db);

  std::string kind() const { return kind_; }

  // Cluster facts.
  absl::StatusOr<std::optional<std::string>> GetMeta(const std::string& key);

  // Epochs, oldest first.
  absl::StatusOr<std::vector<EpochRow>> ListEpochs();
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
  // kNotFound when the app has no binding.
  absl::Status DeleteAppPolicy(const std::string& app_id, const std::string& caller);

  // Appends an audit event (sequence and, when unset, time are assigned). Returns its sequence.
  absl::StatusOr<uint64_t> AppendAudit(v1::AuditEvent event);
  // Filtered, paged, oldest first. kInvalidArgument for a bad page token.
  absl::StatusOr<std::pair<std::vector<v1::AuditEvent>, std::string>> ListAudit(
      const v1::ListAuditEventsRequest& request);

  // Replicas.
  absl::Status UpsertReplica(const std::string& name, const std::string& url, int64_t join_unix,
                             int64_t last_seen_unix);
  absl::StatusOr<std::vector<v1::ReplicaInfo>> ListReplicas();

 private:
  KmsStore(std::unique_ptr<store::SqlDb> db, std::string kind)
      : db_(std::move(db)), kind_(std::move(kind)) {}
  absl::StatusOr<uint64_t> AppendAuditLocked(v1::AuditEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::unique_ptr<store::SqlDb> db_ ABSL_GUARDED_BY(mu_);
  const std::string kind_;
};

}  // namespace pml::kms
