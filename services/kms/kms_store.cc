#include "services/kms/kms_store.h"

// GCC 12 reports -Wmaybe-uninitialized inside std::variant's string alternative when SqlValue
// temporaries are pushed into a vector (a known false positive, GCC PR 105593 and relatives).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <openssl/crypto.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"

namespace pml::kms {
namespace {

using store::Blob;
using store::SqlValue;

constexpr int kDefaultPage = 100;
constexpr int kMaxPage = 1000;

// SQLite DDL; PostgreSQL gets BYTEA/BIGINT/BIGSERIAL (see Schema).
constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS kms_meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS kms_epochs (epoch INTEGER PRIMARY KEY, create_unix INTEGER NOT NULL,
  ca_cert BLOB NOT NULL, k256_public BLOB NOT NULL, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS kms_app_policy (app_id BLOB PRIMARY KEY, version INTEGER NOT NULL,
  body BLOB NOT NULL, mac BLOB);
CREATE TABLE IF NOT EXISTS kms_audit (seq INTEGER PRIMARY KEY AUTOINCREMENT,
  time_unix INTEGER NOT NULL, app_id BLOB NOT NULL, action INTEGER NOT NULL,
  outcome INTEGER NOT NULL, event BLOB NOT NULL, node TEXT, node_seq INTEGER, mac BLOB);
CREATE INDEX IF NOT EXISTS kms_audit_app ON kms_audit (app_id, seq);
CREATE TABLE IF NOT EXISTS kms_replicas (name TEXT PRIMARY KEY, url TEXT NOT NULL,
  join_unix INTEGER NOT NULL, last_seen_unix INTEGER NOT NULL);
)sql";

constexpr char kSqliteAppendOnly[] = R"sql(
CREATE TRIGGER IF NOT EXISTS kms_audit_no_update BEFORE UPDATE ON kms_audit
  BEGIN SELECT RAISE(ABORT, 'kms_audit is append-only'); END;
CREATE TRIGGER IF NOT EXISTS kms_audit_no_delete BEFORE DELETE ON kms_audit
  BEGIN SELECT RAISE(ABORT, 'kms_audit is append-only'); END;
)sql";

constexpr char kPostgresAppendOnly[] = R"sql(
CREATE OR REPLACE FUNCTION kms_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'kms_audit is append-only'; END $$;
DROP TRIGGER IF EXISTS kms_audit_append_only ON kms_audit;
CREATE TRIGGER kms_audit_append_only BEFORE UPDATE OR DELETE ON kms_audit
  FOR EACH ROW EXECUTE FUNCTION kms_audit_append_only();
)sql";

std::string Schema(store::SqlDialect d) {
  if (d == store::SqlDialect::kSqlite)
    return std::string(kSchema) + kSqliteAppendOnly;
  return absl::StrReplaceAll(kSchema, {{"INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY"},
                                       {"BLOB", "BYTEA"},
                                       {"INTEGER", "BIGINT"}}) +
         kPostgresAppendOnly;
}

int64_t Int(const SqlValue& v) {
  const int64_t* i = std::get_if<int64_t>(&v);
  return i == nullptr ? 0 : *i;
}
std::string Bytes(const SqlValue& v) {
  if (const Blob* b = std::get_if<Blob>(&v))
    return b->bytes;
  if (const std::string* s = std::get_if<std::string>(&v))
    return *s;
  return {};
}

absl::Status Corrupt(const char* what) {
  return absl::DataLossError(absl::StrCat("kms store: ", what, " does not parse"));
}

constexpr char kPolicyMacLabel[] = "pml-kms-app-policy-row:v1";

void PutLength(std::string& msg, size_t n) {
  for (int sh = 24; sh >= 0; sh -= 8)
    msg.push_back(static_cast<char>((n >> sh) & 0xff));
}
void PutU64(std::string& msg, uint64_t v) {
  for (int sh = 56; sh >= 0; sh -= 8)
    msg.push_back(static_cast<char>((v >> sh) & 0xff));
}

constexpr char kAuditMacLabel[] = "pml-kms-audit-row:v1";

// The MAC of one audit row (KmsStore::SetAuditChain): every field length-prefixed or fixed-size,
// so no two rows share an input.
std::string AuditMac(const crypto::SecretBytes& key, const std::string& node, int64_t node_seq,
                     const std::string& prev_mac, int64_t time_unix, const std::string& app_id,
                     int64_t action, int64_t outcome, const std::string& event) {
  std::string msg(kAuditMacLabel);
  msg.push_back('\0');
  PutLength(msg, node.size());
  msg += node;
  PutU64(msg, static_cast<uint64_t>(node_seq));
  PutLength(msg, prev_mac.size());
  msg += prev_mac;
  PutU64(msg, static_cast<uint64_t>(time_unix));
  PutLength(msg, app_id.size());
  msg += app_id;
  PutU64(msg, static_cast<uint64_t>(action));
  PutU64(msg, static_cast<uint64_t>(outcome));
  PutLength(msg, event.size());
  msg += event;
  const crypto::Sha256Digest mac = crypto::HmacSha256(key.span(), core::AsBytes(msg));
  return std::string(mac.begin(), mac.end());
}

// A MAC key derived from the cluster key for one purpose (`label`).
crypto::SecretBytes MacKey(const crypto::SecretBytes& cluster_key, absl::string_view label) {
  const crypto::Sha256Digest k = crypto::HmacSha256(cluster_key.span(), core::AsBytes(label));
  return crypto::SecretBytes(std::vector<uint8_t>(k.begin(), k.end()));
}

bool SameMac(const std::string& a, const std::string& b) {
  return a.size() == b.size() && !a.empty() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string PolicyMac(const crypto::SecretBytes& key, const std::string& app_id,
                      const std::string& body) {
  std::string msg(kPolicyMacLabel);
  msg.push_back('\0');
  PutLength(msg, app_id.size());
  msg += app_id;
  msg += body;
  const crypto::Sha256Digest mac = crypto::HmacSha256(key.span(), core::AsBytes(msg));
  return std::string(mac.begin(), mac.end());
}

// Whether `table` has `column` (asked before ALTER: PostgreSQL's ADD COLUMN IF NOT EXISTS takes an
// exclusive lock even when the column is there). Table and column are constants of this file.
absl::StatusOr<bool> HasColumn(store::SqlDb& db, const char* table, const char* column) {
  const bool pg = db.dialect() == store::SqlDialect::kPostgres;
  PML_ASSIGN_OR_RETURN(
      auto rows,
      db.Query(pg ? "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = "
                    "current_schema() AND table_name = ? AND column_name = ?"
                  : "SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?",
               {std::string(table), std::string(column)}));
  return !rows.empty() && Int(rows[0][0]) != 0;
}

absl::StatusOr<uint32_t> ReadCurrentEpoch(store::SqlDb& db) {
  PML_ASSIGN_OR_RETURN(auto rows, db.Query("SELECT MAX(epoch) FROM kms_epochs"));
  if (rows.empty())
    return 0u;
  return static_cast<uint32_t>(Int(rows[0][0]));
}

}  // namespace

absl::StatusOr<std::unique_ptr<KmsStore>> KmsStore::OpenUrl(const std::string& url) {
  PML_ASSIGN_OR_RETURN(std::unique_ptr<store::SqlDb> db, store::OpenSqlDb(url));
  std::unique_ptr<store::SqlDb> reader;
  if (!absl::StrContains(url, ":memory:")) {
    PML_ASSIGN_OR_RETURN(reader, store::OpenSqlDb(url));
  }
  return Open(std::move(db), std::move(reader));
}

template <typename Fn>
auto KmsStore::Read(Fn fn) -> decltype(fn(std::declval<store::SqlDb&>())) {
  if (reader_ != nullptr) {
    absl::MutexLock l(&reader_mu_);
    return fn(*reader_);
  }
  absl::MutexLock l(&mu_);
  return fn(*db_);
}

absl::StatusOr<std::unique_ptr<KmsStore>> KmsStore::Open(std::unique_ptr<store::SqlDb> db,
                                                         std::unique_ptr<store::SqlDb> reader) {
  const std::string kind = db->kind();
  {
    PML_ASSIGN_OR_RETURN(store::SqlTransaction tx, store::SqlTransaction::Start(*db));
    if (db->dialect() == store::SqlDialect::kPostgres) {
      // Replicas starting together must not race on CREATE TABLE.
      PML_RETURN_IF_ERROR(db->Exec("SELECT pg_advisory_xact_lock(7261001)"));
    }
    PML_RETURN_IF_ERROR(db->Exec(Schema(db->dialect())));
    // Stores made before app-policy rows carried a MAC: add the column (their rows then read as
    // unauthenticated until put again).
    const bool pg = db->dialect() == store::SqlDialect::kPostgres;
    PML_ASSIGN_OR_RETURN(bool policy_mac, HasColumn(*db, "kms_app_policy", "mac"));
    if (!policy_mac) {
      PML_RETURN_IF_ERROR(db->Exec(pg ? "ALTER TABLE kms_app_policy ADD COLUMN mac BYTEA"
                                      : "ALTER TABLE kms_app_policy ADD COLUMN mac BLOB"));
    }
    // Stores made before audit rows carried a MAC chain: add its columns (the old rows then list
    // as unauthenticated).
    PML_ASSIGN_OR_RETURN(bool audit_mac, HasColumn(*db, "kms_audit", "mac"));
    if (!audit_mac) {
      PML_RETURN_IF_ERROR(db->Exec(
          pg ? "ALTER TABLE kms_audit ADD COLUMN node TEXT, ADD COLUMN node_seq BIGINT, "
               "ADD COLUMN mac BYTEA"
             : "ALTER TABLE kms_audit ADD COLUMN node TEXT; "
               "ALTER TABLE kms_audit ADD COLUMN node_seq INTEGER; "
               "ALTER TABLE kms_audit ADD COLUMN mac BLOB"));
    }
    // One row per chain position: two nodes of one name cannot interleave a chain.
    PML_RETURN_IF_ERROR(db->Exec(
        "CREATE UNIQUE INDEX IF NOT EXISTS kms_audit_chain ON kms_audit (node, node_seq)"));
    PML_RETURN_IF_ERROR(tx.Commit());
  }
  return std::unique_ptr<KmsStore>(new KmsStore(std::move(db), std::move(reader), kind));
}

absl::StatusOr<std::optional<std::string>> KmsStore::GetMeta(const std::string& key) {
  absl::MutexLock l(&mu_);
  PML_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT v FROM kms_meta WHERE k = ?", {key}));
  if (rows.empty())
    return std::optional<std::string>();
  return std::optional<std::string>(Bytes(rows[0][0]));
}

absl::StatusOr<uint32_t> KmsStore::CurrentEpoch() {
  return Read([](store::SqlDb& db) { return ReadCurrentEpoch(db); });
}

absl::StatusOr<std::vector<EpochRow>> KmsStore::ListEpochs() {
  absl::MutexLock l(&mu_);
  PML_ASSIGN_OR_RETURN(
      auto rows,
      db_->Query("SELECT epoch, create_unix, ca_cert, k256_public, sealed FROM kms_epochs "
                 "ORDER BY epoch"));
  std::vector<EpochRow> out;
  for (const auto& r : rows) {
    out.push_back({static_cast<uint32_t>(Int(r[0])), Int(r[1]), Bytes(r[2]), Bytes(r[3]),
                   Bytes(r[4])});
  }
  return out;
}

absl::Status KmsStore::InsertEpoch(const EpochRow& row, std::optional<uint32_t> expected_current,
                                   const std::vector<std::pair<std::string, std::string>>& meta,
                                   v1::AuditEvent audit) {
  absl::MutexLock l(&mu_);
  PML_ASSIGN_OR_RETURN(ChainHead head, ChainHeadLocked());
  PML_ASSIGN_OR_RETURN(store::SqlTransaction tx, store::SqlTransaction::Start(*db_));
  PML_ASSIGN_OR_RETURN(uint32_t current, ReadCurrentEpoch(*db_));
  if (expected_current.has_value() && *expected_current != current) {
    return absl::AbortedError(absl::StrCat("the current epoch is ", current, ", not ",
                                           *expected_current, " (another rotation happened)"));
  }
  if (row.epoch != current + 1) {
    return absl::AbortedError(
        absl::StrCat("epoch ", row.epoch, " does not follow the current epoch ", current));
  }
  for (const auto& [k, v] : meta) {
    PML_ASSIGN_OR_RETURN(auto existing, db_->Query("SELECT v FROM kms_meta WHERE k = ?", {k}));
    if (existing.empty()) {
      PML_RETURN_IF_ERROR(
          db_->Query("INSERT INTO kms_meta (k, v) VALUES (?, ?)", {k, Blob{v}}).status());
    }
  }
  absl::Status inserted =
      db_->Query("INSERT INTO kms_epochs (epoch, create_unix, ca_cert, k256_public, sealed) "
                 "VALUES (?, ?, ?, ?, ?)",
                 {int64_t{row.epoch}, row.create_unix, Blob{row.ca_cert_der},
                  Blob{row.k256_public_key}, Blob{row.sealed_secrets}})
          .status();
  if (absl::IsAlreadyExists(inserted)) {
    return absl::AbortedError(
        absl::StrCat("epoch ", row.epoch, " was created by another KMS node first"));
  }
  PML_RETURN_IF_ERROR(inserted);
  audit.set_epoch(row.epoch);
  PML_RETURN_IF_ERROR(AppendAuditLocked(std::move(audit), head).status());
  absl::Status committed = CommitChained(tx, head);
  if (absl::IsAlreadyExists(committed) || absl::IsAborted(committed)) {
    return absl::AbortedError(
        absl::StrCat("epoch ", row.epoch, " conflicts with another KMS node's change; retry"));
  }
  return committed;
}

absl::Status KmsStore::ImportEpochs(const std::vector<EpochRow>& rows,
                                    const std::vector<std::pair<std::string, std::string>>& meta,
                                    v1::AuditEvent audit) {
  absl::MutexLock l(&mu_);
  PML_ASSIGN_OR_RETURN(ChainHead head, ChainHeadLocked());
  PML_ASSIGN_OR_RETURN(store::SqlTransaction tx, store::SqlTransaction::Start(*db_));
  PML_ASSIGN_OR_RETURN(uint32_t current, ReadCurrentEpoch(*db_));
  for (const auto& [k, v] : meta) {
    PML_ASSIGN_OR_RETURN(auto existing, db_->Query("SELECT v FROM kms_meta WHERE k = ?", {k}));
    if (existing.empty()) {
      PML_RETURN_IF_ERROR(
          db_->Query("INSERT INTO kms_meta (k, v) VALUES (?, ?)", {k, Blob{v}}).status());
    }
  }
  for (const EpochRow& row : rows) {
    if (row.epoch <= current)
      continue;
    if (row.epoch != current + 1)
      return absl::InvalidArgumentError(absl::StrCat("epoch ", row.epoch, " skips an epoch"));
    PML_RETURN_IF_ERROR(
        db_->Query("INSERT INTO kms_epochs (epoch, create_unix, ca_cert, k256_public, sealed) "
                   "VALUES (?, ?, ?, ?, ?)",
                   {int64_t{row.epoch}, row.create_unix, Blob{row.ca_cert_der},
                    Blob{row.k256_public_key}, Blob{row.sealed_secrets}})
            .status());
    current = row.epoch;
  }
  audit.set_epoch(current);
  PML_RETURN_IF_ERROR(AppendAuditLocked(std::move(audit), head).status());
  return CommitChained(tx, head);
}

absl::StatusOr<v1::AppPolicy> KmsStore::PutAppPolicy(v1::AppPolicy policy,
                                                     uint32_t expected_version,
                                                     const std::string& caller) {
  absl::MutexLock l(&mu_);
  PML_ASSIGN_OR_RETURN(ChainHead head, ChainHeadLocked());
  PML_ASSIGN_OR_RETURN(store::SqlTransaction tx, store::SqlTransaction::Start(*db_));
  const std::string app_id = policy.app_id();
  PML_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT version FROM kms_app_policy WHERE app_id = ?",
                                             {Blob{app_id}}));
  const uint32_t current = rows.empty() ? 0 : static_cast<uint32_t>(Int(rows[0][0]));
  if (expected_version != 0 && expected_version != current) {
    return absl::AbortedError(absl::StrCat("app policy is at version ", current, ", not ",
                                           expected_version));
  }
  policy.set_version(current + 1);
  policy.mutable_update_time()->set_seconds(absl::ToUnixSeconds(absl::Now()));
  policy.set_updated_by(caller);
  const std::string body = policy.SerializeAsString();
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const crypto::SecretBytes> key, PolicyMacKey());
  const std::string mac = PolicyMac(*key, app_id, body);
  if (rows.empty()) {
    PML_RETURN_IF_ERROR(db_->Query("INSERT INTO kms_app_policy (app_id, version, body, mac) "
                                   "VALUES (?, ?, ?, ?)",
                                   {Blob{app_id}, int64_t{policy.version()}, Blob{body}, Blob{mac}})
                            .status());
  } else {
    PML_RETURN_IF_ERROR(db_->Query("UPDATE kms_app_policy SET version = ?, body = ?, mac = ? "
                                   "WHERE app_id = ?",
                                   {int64_t{policy.version()}, Blob{body}, Blob{mac}, Blob{app_id}})
                            .status());
  }
  v1::AuditEvent a;
  a.set_action(v1::AUDIT_ACTION_POLICY_PUT);
  a.set_outcome(v1::AUDIT_OUTCOME_ALLOWED);
  a.set_caller(caller);
  a.set_app_id(app_id);
  a.set_policy_id(policy.has_verifier_policy_id()
                      ? policy.verifier_policy_id()
                      : absl::StrCat("inline:", core::HexEncode(crypto::Sha256(
                                                    policy.inline_policy_json()))));
  a.set_policy_version(policy.verifier_policy_version());
  a.set_reason(absl::StrCat("app policy version ", policy.version()));
  PML_RETURN_IF_ERROR(AppendAuditLocked(std::move(a), head).status());
  absl::Status committed = CommitChained(tx, head);
  if (absl::IsAborted(committed))
    return absl::AbortedError("the app policy changed concurrently; retry");
  PML_RETURN_IF_ERROR(committed);
  return policy;
}

void KmsStore::SetAuditChain(const crypto::SecretBytes& cluster_key, const std::string& node) {
  auto chain = std::make_shared<const AuditChain>(
      AuditChain{MacKey(cluster_key, "pml-kms-audit-mac-key:v1"), node});
  absl::MutexLock l(&mac_mu_);
  audit_chain_ = std::move(chain);
}

void KmsStore::ClearAuditChain() {
  absl::MutexLock l(&mac_mu_);
  audit_chain_ = nullptr;
}

std::shared_ptr<const KmsStore::AuditChain> KmsStore::GetAuditChain() {
  absl::MutexLock l(&mac_mu_);
  return audit_chain_;
}

void KmsStore::SetPolicyMacKey(const crypto::SecretBytes& cluster_key) {
  auto key = std::make_shared<const crypto::SecretBytes>(
      MacKey(cluster_key, "pml-kms-app-policy-mac-key:v1"));
  absl::MutexLock l(&mac_mu_);
  policy_mac_key_ = std::move(key);
}

absl::StatusOr<std::shared_ptr<const crypto::SecretBytes>> KmsStore::PolicyMacKey() {
  absl::MutexLock l(&mac_mu_);
  if (policy_mac_key_ == nullptr) {
    return absl::FailedPreconditionError(
        "app policies need the cluster key (the KMS's root keys are not loaded yet)");
  }
  return policy_mac_key_;
}

absl::StatusOr<v1::AppPolicy> KmsStore::PolicyFromRow(const std::string& app_id,
                                                      const SqlValue& body, const SqlValue& mac) {
  PML_ASSIGN_OR_RETURN(std::shared_ptr<const crypto::SecretBytes> key, PolicyMacKey());
  const std::string b = Bytes(body), m = Bytes(mac);
  const std::string want = PolicyMac(*key, app_id, b);
  const std::string hex_app = core::HexEncode(core::AsBytes(app_id));
  if (m.size() != want.size() || CRYPTO_memcmp(m.data(), want.data(), want.size()) != 0) {
    return absl::DataLossError(absl::StrCat(
        "the key-release policy row of app ", hex_app,
        " does not carry this cluster's MAC (written outside pml-kms, or before rows were "
        "authenticated): it is not used; put the policy again (pmlctl kms policy put)"));
  }
  v1::AppPolicy p;
  if (!p.ParseFromString(b) || p.app_id() != app_id)
    return Corrupt("an app policy");
  return p;
}

absl::StatusOr<v1::AppPolicy> KmsStore::GetAppPolicy(const std::string& app_id) {
  PML_ASSIGN_OR_RETURN(auto rows, Read([&](store::SqlDb& db) {
                         return db.Query("SELECT body, mac FROM kms_app_policy WHERE app_id = ?",
                                         {Blob{app_id}});
                       }));
  if (rows.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no key-release policy for app ", core::HexEncode(core::AsBytes(app_id))));
  }
  return PolicyFromRow(app_id, rows[0][0], rows[0][1]);
}

absl::StatusOr<std::pair<std::vector<v1::AppPolicy>, std::string>> KmsStore::ListAppPolicies(
    int page_size, const std::string& page_token) {
  const int n = page_size <= 0 ? kDefaultPage : std::min(page_size, kMaxPage);
  std::string after;
  if (!page_token.empty()) {
    auto b = core::HexDecode(page_token);
    if (!b.ok() || b->size() != 20)
      return absl::InvalidArgumentError("page_token: not a token this server issued");
    after = core::ToString(*b);
  }
  absl::MutexLock l(&mu_);
  PML_ASSIGN_OR_RETURN(auto rows,
                       db_->Query("SELECT app_id, body, mac FROM kms_app_policy WHERE app_id > ? "
                                  "ORDER BY app_id LIMIT ?",
                                  {Blob{after}, int64_t{n + 1}}));
  std::pair<std::vector<v1::AppPolicy>, std::string> out;
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < n; ++i) {
    const std::string app_id = Bytes(rows[i][0]);
    absl::StatusOr<v1::AppPolicy> p = PolicyFromRow(app_id, rows[i][1], rows[i][2]);
    if (absl::IsDataLoss(p.status())) {
      // Listed, so that operators see which apps to put again; nothing of the row is trusted.
      p = v1::AppPolicy();
      p->set_app_id(app_id);
      p->set_unauthenticated(true);
    }
    PML_RETURN_IF_ERROR(p.status());
    out.first.push_back(*std::move(p));
  }
  if (static_cast<int>(rows.size()) > n)
    out.second = core::HexEncode(core::AsBytes(out.first.back().app_id()));
  return out;
}

absl::Status KmsStore::DeleteAppPolicy(const std::string& app_id, const std::string& caller) {
  absl::MutexLock l(&mu_);
  PML_ASSIGN_OR_RETURN(ChainHead head, ChainHeadLocked());
  PML_ASSIGN_OR_RETURN(store::SqlTransaction tx, store::SqlTransaction::Start(*db_));
  PML_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT version FROM kms_app_policy WHERE app_id = ?",
                                             {Blob{app_id}}));
  if (rows.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no key-release policy for app ", core::HexEncode(core::AsBytes(app_id))));
  }
  PML_RETURN_IF_ERROR(
      db_->Query("DELETE FROM kms_app_policy WHERE app_id = ?", {Blob{app_id}}).status());
  v1::AuditEvent a;
  a.set_action(v1::AUDIT_ACTION_POLICY_DELETE);
  a.set_outcome(v1::AUDIT_OUTCOME_ALLOWED);
  a.set_caller(caller);
  a.set_app_id(app_id);
  a.set_reason("app policy removed: the app gets no keys until a new one is put");
  PML_RETURN_IF_ERROR(AppendAuditLocked(std::move(a), head).status());
  return CommitChained(tx, head);
}

absl::StatusOr<uint64_t> KmsStore::AppendAudit(v1::AuditEvent event) {
  PendingAudit mine;
  mine.event = std::move(event);
  absl::MutexLock l(&group_mu_);
  pending_audit_.push_back(&mine);
  while (!mine.done) {
    if (!audit_committing_) {
      // Lead: take everything queued so far (this event included) and commit it as one group.
      audit_committing_ = true;
      std::vector<PendingAudit*> group;
      group.swap(pending_audit_);
      group_mu_.Unlock();
      {
        // Also if the commit throws (bad_alloc): relock, and release every waiter (whose result
        // then stays "not committed").
        absl::Cleanup relock = [&] {
          group_mu_.Lock();
          for (PendingAudit* p : group)
            p->done = true;
          audit_committing_ = false;
        };
        CommitAuditGroup(group);
      }
    } else {
      // Follow: wait until a leader committed this event, or none is committing (then lead).
      struct Wait {
        const PendingAudit* mine;
        const bool* committing;
      } w{&mine, &audit_committing_};
      group_mu_.Await(absl::Condition(
          +[](Wait* w) { return w->mine->done || !*w->committing; }, &w));
    }
  }
  return std::move(mine.result);
}

void KmsStore::CommitAuditGroup(const std::vector<PendingAudit*>& group) {
  absl::MutexLock l(&mu_);
  if (group.size() > 1) {
    bool inserted = false;  // every INSERT went in: only the COMMIT remained
    absl::Status s = [&]() -> absl::Status {
      PML_ASSIGN_OR_RETURN(ChainHead head, ChainHeadLocked());
      PML_ASSIGN_OR_RETURN(store::SqlTransaction tx, store::SqlTransaction::Start(*db_));
      std::vector<uint64_t> seqs;
      for (const PendingAudit* p : group) {
        PML_ASSIGN_OR_RETURN(uint64_t seq, AppendAuditLocked(p->event, head));
        seqs.push_back(seq);
      }
      inserted = true;
      PML_RETURN_IF_ERROR(CommitChained(tx, head));
      for (size_t i = 0; i < group.size(); ++i)
        group[i]->result = seqs[i];
      return absl::OkStatus();
    }();
    if (s.ok())
      return;
    if (inserted && !absl::IsAborted(s)) {
      // The COMMIT itself failed. With PostgreSQL a connection lost mid-COMMIT leaves the outcome
      // unknown; writing the rows again could log them twice, so every caller gets the error
      // (and releases nothing). An aborted COMMIT (a serialization failure) committed nothing:
      // the rows are written one by one below.
      for (PendingAudit* p : group)
        p->result = s;
      return;
    }
  }
  // One event, or a group one of whose rows the database refused: each on its own (autocommit),
  // so a bad row fails only its caller.
  for (PendingAudit* p : group) {
    absl::StatusOr<ChainHead> head = ChainHeadLocked();
    if (!head.ok()) {
      p->result = head.status();
      continue;
    }
    p->result = AppendAuditLocked(p->event, *head);
    if (p->result.ok())
      chain_head_ = *std::move(head);  // autocommit: the row is durable
    else
      chain_head_.reset();  // the outcome may be unknown: read the head again next time
  }
}

absl::StatusOr<KmsStore::ChainHead> KmsStore::ChainHeadLocked() {
  ChainHead h;
  h.chain = GetAuditChain();
  if (h.chain == nullptr)
    return h;  // rows without a MAC until the cluster key is known
  if (chain_head_.has_value() && chain_head_->chain == h.chain)
    return *chain_head_;
  // Read outside any transaction (callers start theirs after this), so a SERIALIZABLE
  // transaction never reads the audit table and two nodes' appends cannot conflict. mu_ is held
  // and no other process writes this node's chain (node names are unique: the chain position
  // index enforces it), so the head cannot move until the caller's commit.
  PML_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT node_seq, mac FROM kms_audit WHERE node = ? "
                                             "ORDER BY node_seq DESC LIMIT 1",
                                             {h.chain->node}));
  if (!rows.empty()) {
    h.seq = Int(rows[0][0]);
    h.mac = Bytes(rows[0][1]);
    if (h.seq <= 0) {
      return absl::DataLossError(absl::StrCat("kms store: node ", h.chain->node,
                                              "'s newest audit row has chain position ", h.seq,
                                              " (written outside pml-kms)"));
    }
  }
  chain_head_ = h;
  return h;
}

absl::Status KmsStore::CommitChained(store::SqlTransaction& tx, const ChainHead& head) {
  absl::Status s = tx.Commit();
  if (s.ok())
    chain_head_ = head;
  else
    chain_head_.reset();  // committed or not may be unknown: read the head again next time
  return s;
}

absl::StatusOr<uint64_t> KmsStore::AppendAuditLocked(v1::AuditEvent event, ChainHead& head) {
  if (!event.has_time()) {
    const absl::Time now = absl::Now();
    event.mutable_time()->set_seconds(absl::ToUnixSeconds(now));
    event.mutable_time()->set_nanos(static_cast<int32_t>(
        absl::ToInt64Nanoseconds(now - absl::FromUnixSeconds(absl::ToUnixSeconds(now)))));
  }
  event.clear_sequence();
  // The listing-only fields are never stored inside the event.
  event.clear_node();
  event.clear_node_sequence();
  event.clear_unauthenticated();
  event.clear_unauthenticated_reason();
  const std::string body = event.SerializeAsString();
  const int64_t time_unix = event.time().seconds();
  const int64_t action = event.action(), outcome = event.outcome();
  SqlValue node, node_seq, mac;  // NULL without the chain key (SetAuditChain not called yet)
  if (head.chain != nullptr && head.seq == std::numeric_limits<int64_t>::max())
    return absl::DataLossError("kms store: audit chain position overflows");
  std::string new_mac;
  const int64_t next = head.seq + 1;
  if (head.chain != nullptr) {
    new_mac = AuditMac(head.chain->key, head.chain->node, next, head.mac, time_unix,
                       event.app_id(), action, outcome, body);
    node = head.chain->node;
    node_seq = next;
    mac = Blob{new_mac};
  }
  auto inserted =
      db_->Query("INSERT INTO kms_audit (time_unix, app_id, action, outcome, event, node, "
                 "node_seq, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
                 {time_unix, Blob{event.app_id()}, action, outcome, Blob{body}, node, node_seq,
                  mac});
  if (absl::IsAlreadyExists(inserted.status()) && head.chain != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat(
        "audit chain position #", next, " of node ", head.chain->node,
        " is taken: something else appended to this node's chain (a second KMS node of the same "
        "name, or a writer outside pml-kms); the next append continues after it"));
  }
  PML_RETURN_IF_ERROR(inserted.status());
  const auto& rows = *inserted;
  if (rows.empty())
    return absl::InternalError("kms store: audit insert returned no sequence");
  if (head.chain != nullptr) {
    head.seq = next;  // the caller's copy: it becomes the cached head only once committed
    head.mac = std::move(new_mac);
  }
  return static_cast<uint64_t>(Int(rows[0][0]));
}

absl::StatusOr<std::pair<std::vector<v1::AuditEvent>, std::string>> KmsStore::ListAudit(
    const v1::ListAuditEventsRequest& r) {
  const int n = r.page_size() <= 0 ? kDefaultPage : std::min(r.page_size(), kMaxPage);
  int64_t after = 0;
  if (!r.page_token().empty() && (!absl::SimpleAtoi(r.page_token(), &after) || after < 0))
    return absl::InvalidArgumentError("page_token: not a token this server issued");
  // Each row with its node's previous row's MAC (NULL when that row is missing).
  std::string sql =
      "SELECT a.seq, a.event, a.node, a.node_seq, a.mac, a.time_unix, a.app_id, a.action, "
      "a.outcome, p.mac, p.seq FROM kms_audit a LEFT JOIN kms_audit p ON p.node = a.node AND "
      "p.node_seq = a.node_seq - 1 WHERE a.seq > ?";
  std::vector<SqlValue> params{after};
  if (!r.app_id().empty()) {
    sql += " AND a.app_id = ?";
    params.push_back(Blob{r.app_id()});
  }
  if (r.has_start_time()) {
    sql += " AND a.time_unix >= ?";
    params.push_back(int64_t{r.start_time().seconds()});
  }
  if (r.has_end_time()) {
    sql += " AND a.time_unix < ?";
    params.push_back(int64_t{r.end_time().seconds()});
  }
  if (r.action() != v1::AUDIT_ACTION_UNSPECIFIED) {
    sql += " AND a.action = ?";
    params.push_back(int64_t{r.action()});
  }
  if (r.outcome() != v1::AUDIT_OUTCOME_UNSPECIFIED) {
    sql += " AND a.outcome = ?";
    params.push_back(int64_t{r.outcome()});
  }
  sql += " ORDER BY a.seq LIMIT ?";
  params.push_back(int64_t{n + 1});
  const std::shared_ptr<const AuditChain> chain = GetAuditChain();
  absl::StatusOr<std::vector<std::vector<SqlValue>>> queried = [&] {
    absl::MutexLock l(&mu_);  // the MACs are checked after, without holding up appends
    return db_->Query(sql, params);
  }();
  PML_RETURN_IF_ERROR(queried.status());
  const auto& rows = *queried;
  std::pair<std::vector<v1::AuditEvent>, std::string> out;
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < n; ++i) {
    const auto& row = rows[i];
    const std::string body = Bytes(row[1]);
    const bool has_chain = !std::holds_alternative<std::monostate>(row[2]) &&
                           !std::holds_alternative<std::monostate>(row[4]);
    // Columns as pml-kms writes them: a value of another type (e.g. an app id rewritten as TEXT,
    // which an app filter's BLOB never matches) is a change made outside pml-kms.
    const bool types_ok = std::holds_alternative<Blob>(row[1]) &&
                          std::holds_alternative<Blob>(row[6]) &&
                          std::holds_alternative<int64_t>(row[5]) &&
                          std::holds_alternative<int64_t>(row[7]) &&
                          std::holds_alternative<int64_t>(row[8]) &&
                          (!has_chain || (std::holds_alternative<std::string>(row[2]) &&
                                          std::holds_alternative<int64_t>(row[3]) &&
                                          std::holds_alternative<Blob>(row[4])));
    const std::string node = Bytes(row[2]);
    const int64_t node_seq = Int(row[3]);
    std::string why;  // empty: the row verifies
    if (!has_chain) {
      why = "no MAC: written before audit rows were authenticated, or outside pml-kms";
    } else if (!types_ok) {
      why = "a column holds a value of the wrong type: changed outside pml-kms";
    } else if (chain == nullptr) {
      why = "not checked: this KMS has not loaded the cluster key";
    } else if (node_seq > 1 && std::holds_alternative<std::monostate>(row[9])) {
      why = absl::StrCat("the row before it in node ", node, "'s chain (#", node_seq - 1,
                         ") is missing: audit rows were deleted");
    } else if (node_seq > 1 && Int(row[10]) >= Int(row[0])) {
      why = absl::StrCat("its sequence number is not after that of node ", node,
                         "'s previous row: rows were renumbered");
    } else if (!SameMac(Bytes(row[4]),
                        AuditMac(chain->key, node, node_seq, node_seq > 1 ? Bytes(row[9]) : "",
                                 Int(row[5]), Bytes(row[6]), Int(row[7]), Int(row[8]), body))) {
      why = "the MAC does not verify: the row (or the one before it) was changed or written "
            "outside this cluster";
    }
    v1::AuditEvent e;
    if (!e.ParseFromString(body)) {
      e.Clear();
      if (why.empty())
        why = "the event does not parse";  // cannot happen to a row this cluster wrote
    }
    e.set_sequence(static_cast<uint64_t>(Int(row[0])));
    e.set_node(node);
    e.set_node_sequence(static_cast<uint64_t>(node_seq));
    if (!why.empty()) {
      e.set_unauthenticated(true);
      e.set_unauthenticated_reason(why);
    } else {
      e.clear_unauthenticated();
      e.clear_unauthenticated_reason();
    }
    out.first.push_back(std::move(e));
  }
  if (static_cast<int>(rows.size()) > n)
    out.second = absl::StrCat(out.first.back().sequence());
  return out;
}

absl::Status KmsStore::UpsertReplica(const std::string& name, const std::string& url,
                                     int64_t join_unix, int64_t last_seen_unix) {
  absl::MutexLock l(&mu_);
  PML_ASSIGN_OR_RETURN(store::SqlTransaction tx, store::SqlTransaction::Start(*db_));
  PML_ASSIGN_OR_RETURN(auto rows,
                       db_->Query("SELECT join_unix FROM kms_replicas WHERE name = ?", {name}));
  if (rows.empty()) {
    PML_RETURN_IF_ERROR(db_->Query("INSERT INTO kms_replicas (name, url, join_unix, "
                                   "last_seen_unix) VALUES (?, ?, ?, ?)",
                                   {name, url, join_unix, last_seen_unix})
                            .status());
  } else {
    PML_RETURN_IF_ERROR(db_->Query("UPDATE kms_replicas SET url = ?, last_seen_unix = ? "
                                   "WHERE name = ?",
                                   {url, last_seen_unix, name})
                            .status());
  }
  return tx.Commit();
}

absl::StatusOr<std::vector<v1::ReplicaInfo>> KmsStore::ListReplicas() {
  absl::MutexLock l(&mu_);
  PML_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT name, url, join_unix, last_seen_unix FROM "
                                             "kms_replicas ORDER BY name"));
  std::vector<v1::ReplicaInfo> out;
  for (const auto& r : rows) {
    v1::ReplicaInfo i;
    i.set_node_name(Bytes(r[0]));
    i.set_url(Bytes(r[1]));
    i.mutable_join_time()->set_seconds(Int(r[2]));
    i.mutable_last_seen_time()->set_seconds(Int(r[3]));
    out.push_back(std::move(i));
  }
  return out;
}

}  // namespace pml::kms
