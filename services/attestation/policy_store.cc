#include "services/attestation/policy_store.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "services/attestation/policy.h"

namespace pml::attestation {
namespace {

// Schema versions (store::Migrate). Append steps; never edit a released one.
constexpr absl::string_view kSchema[] = {
    // 1: policies (one row per id ever written), their versions, and the audit log.
    R"sql(
CREATE TABLE policies (
  id TEXT NOT NULL PRIMARY KEY,
  latest_version INTEGER NOT NULL CHECK (latest_version >= 1),
  live INTEGER NOT NULL CHECK (live IN (0, 1))
) STRICT;
CREATE TABLE policy_versions (
  id TEXT NOT NULL REFERENCES policies (id),
  version INTEGER NOT NULL CHECK (version >= 1),
  json TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  created_at_us INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  PRIMARY KEY (id, version)
) STRICT;
CREATE TABLE policy_audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  time_us INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL CHECK (action IN ('put', 'delete')),
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  sha256 TEXT NOT NULL
) STRICT;
)sql",
};

absl::Status CheckId(absl::string_view id) {
  if (IsValidPolicyId(id)) {
    return absl::OkStatus();
  }
  // An invalid id is untrusted text: give its length, not its bytes.
  return absl::InvalidArgumentError(
      absl::StrCat("policy id (", id.size(), " bytes): want [a-z0-9][a-z0-9._-]{0,62}"));
}

absl::Status CheckActor(absl::string_view actor) {
  const bool ok =
      !actor.empty() && actor.size() <= kMaxPolicyActorBytes &&
      std::all_of(actor.begin(), actor.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
  if (ok) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("actor (", actor.size(),
                                                 " bytes): want printable ASCII, 1 to ",
                                                 kMaxPolicyActorBytes, " bytes"));
}

absl::Status CheckTime(absl::Time now) {
  if (now == absl::InfinitePast() || now == absl::InfiniteFuture()) {
    return absl::InvalidArgumentError("time: want a finite time");
  }
  return absl::OkStatus();
}

std::string NotFoundMessage(absl::string_view id, std::optional<int64_t> version) {
  if (version.has_value()) {
    return absl::StrCat("policy \"", id, "\" version ", *version, " not found");
  }
  return absl::StrCat("policy \"", id, "\" not found");
}

// Columns version, json, sha256, created_at_us, created_by starting at `first`.
PolicyRecord ReadRecord(const store::Statement& stmt, absl::string_view id, int first) {
  PolicyRecord r;
  r.id = std::string{id};
  r.version = stmt.ColumnInt64(first);
  r.json = stmt.ColumnText(first + 1);
  r.sha256 = stmt.ColumnText(first + 2);
  r.created_at = absl::FromUnixMicros(stmt.ColumnInt64(first + 3));
  r.created_by = stmt.ColumnText(first + 4);
  return r;
}

// The live row of `id`: latest version and whether it is live. nullopt when never written.
struct IdState {
  int64_t latest_version = 0;
  bool live = false;
};
absl::StatusOr<std::optional<IdState>> ReadIdState(store::Database& db, absl::string_view id) {
  PML_ASSIGN_OR_RETURN(store::Statement stmt,
                       db.Prepare("SELECT latest_version, live FROM policies WHERE id = ?1"));
  PML_RETURN_IF_ERROR(stmt.Bind(1, id));
  PML_ASSIGN_OR_RETURN(const bool row, stmt.Step());
  if (!row) {
    return std::optional<IdState>();
  }
  return std::optional<IdState>(IdState{stmt.ColumnInt64(0), stmt.ColumnInt64(1) != 0});
}

constexpr absl::string_view kSelectVersion =
    "SELECT version, json, sha256, created_at_us, created_by FROM policy_versions "
    "WHERE id = ?1 AND version = ?2";

absl::StatusOr<PolicyRecord> ReadVersion(store::Database& db, absl::string_view id,
                                         int64_t version) {
  PML_ASSIGN_OR_RETURN(store::Statement stmt, db.Prepare(kSelectVersion));
  PML_RETURN_IF_ERROR(stmt.Bind(1, id));
  PML_RETURN_IF_ERROR(stmt.Bind(2, version));
  PML_ASSIGN_OR_RETURN(const bool row, stmt.Step());
  // policies.latest_version always has its row (same transaction): its absence is damage.
  if (!row) {
    return absl::DataLossError(absl::StrCat(NotFoundMessage(id, version), " in history"));
  }
  return ReadRecord(stmt, id, 0);
}

absl::Status InsertAudit(store::Database& db, absl::Time now, absl::string_view actor,
                         absl::string_view action, absl::string_view id, int64_t version,
                         absl::string_view sha256) {
  PML_ASSIGN_OR_RETURN(
      store::Statement stmt,
      db.Prepare("INSERT INTO policy_audit (time_us, actor, action, id, version, sha256) "
                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
  PML_RETURN_IF_ERROR(stmt.Bind(1, absl::ToUnixMicros(now)));
  PML_RETURN_IF_ERROR(stmt.Bind(2, actor));
  PML_RETURN_IF_ERROR(stmt.Bind(3, action));
  PML_RETURN_IF_ERROR(stmt.Bind(4, id));
  PML_RETURN_IF_ERROR(stmt.Bind(5, version));
  PML_RETURN_IF_ERROR(stmt.Bind(6, sha256));
  return stmt.Step().status();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PolicyStore>> PolicyStore::Open(absl::string_view path) {
  PML_ASSIGN_OR_RETURN(store::Database db, store::Database::Open(path));
  PML_RETURN_IF_ERROR(core::Annotate(store::Migrate(db, kSchema), "policy store schema"));
  return std::unique_ptr<PolicyStore>(new PolicyStore(std::move(db)));
}

absl::StatusOr<PolicyRecord> PolicyStore::Put(absl::string_view id, absl::string_view policy_json,
                                              absl::string_view actor, absl::Time now,
                                              std::optional<int64_t> expected_version) {
  PML_RETURN_IF_ERROR(CheckId(id));
  PML_RETURN_IF_ERROR(CheckActor(actor));
  PML_RETURN_IF_ERROR(CheckTime(now));
  PML_ASSIGN_OR_RETURN(const AppraisalPolicy policy, ParsePolicyJson(policy_json));
  const std::string canonical = PolicyToJson(policy);
  const std::string sha256 = core::HexEncode(crypto::Sha256(canonical));

  absl::MutexLock lock(&mu_);
  // The state is read inside the write transaction, so another process cannot take the same
  // version number between the read and the insert.
  PML_ASSIGN_OR_RETURN(store::Transaction txn, store::Transaction::Begin(db_));
  PML_ASSIGN_OR_RETURN(const std::optional<IdState> state, ReadIdState(db_, id));
  if (expected_version.has_value()) {
    const int64_t current = state.has_value() && state->live ? state->latest_version : 0;
    if (current != *expected_version) {
      return absl::AbortedError(absl::StrCat("policy ", id, ": latest version is ", current,
                                             ", not the expected ", *expected_version));
    }
  }
  if (state.has_value() && state->live) {
    PML_ASSIGN_OR_RETURN(PolicyRecord latest, ReadVersion(db_, id, state->latest_version));
    if (latest.sha256 == sha256) {
      return latest;  // identical: no new version, no audit entry
    }
  }
  const int64_t version = state.has_value() ? state->latest_version + 1 : 1;

  PML_ASSIGN_OR_RETURN(
      store::Statement upsert,
      db_.Prepare("INSERT INTO policies (id, latest_version, live) VALUES (?1, ?2, 1) "
                  "ON CONFLICT (id) DO UPDATE SET latest_version = excluded.latest_version, "
                  "live = 1"));
  PML_RETURN_IF_ERROR(upsert.Bind(1, id));
  PML_RETURN_IF_ERROR(upsert.Bind(2, version));
  PML_RETURN_IF_ERROR(upsert.Step().status());

  PolicyRecord record;
  record.id = std::string{id};
  record.version = version;
  record.json = canonical;
  record.sha256 = sha256;
  record.created_at = absl::FromUnixMicros(absl::ToUnixMicros(now));  // as stored
  record.created_by = std::string{actor};
  PML_ASSIGN_OR_RETURN(
      store::Statement insert,
      db_.Prepare("INSERT INTO policy_versions (id, version, json, sha256, created_at_us, "
                  "created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
  PML_RETURN_IF_ERROR(insert.Bind(1, id));
  PML_RETURN_IF_ERROR(insert.Bind(2, version));
  PML_RETURN_IF_ERROR(insert.Bind(3, record.json));
  PML_RETURN_IF_ERROR(insert.Bind(4, record.sha256));
  PML_RETURN_IF_ERROR(insert.Bind(5, absl::ToUnixMicros(record.created_at)));
  PML_RETURN_IF_ERROR(insert.Bind(6, record.created_by));
  PML_RETURN_IF_ERROR(insert.Step().status());

  PML_RETURN_IF_ERROR(InsertAudit(db_, now, actor, "put", id, version, sha256));
  PML_RETURN_IF_ERROR(txn.Commit());
  return record;
}

absl::StatusOr<PolicyRecord> PolicyStore::Get(absl::string_view id,
                                              std::optional<int64_t> version) {
  PML_RETURN_IF_ERROR(CheckId(id));
  if (version.has_value() && *version < 1) {
    return absl::InvalidArgumentError(absl::StrCat("version ", *version, ": want 1 or more"));
  }
  absl::MutexLock lock(&mu_);
  // One statement, so it reads one snapshot even while other processes write.
  PML_ASSIGN_OR_RETURN(
      store::Statement stmt,
      db_.Prepare("SELECT v.version, v.json, v.sha256, v.created_at_us, v.created_by "
                  "FROM policies p JOIN policy_versions v ON v.id = p.id "
                  "WHERE p.id = ?1 AND p.live = 1 AND v.version = COALESCE(?2, p.latest_version)"));
  PML_RETURN_IF_ERROR(stmt.Bind(1, id));
  if (version.has_value()) {
    PML_RETURN_IF_ERROR(stmt.Bind(2, *version));
  } else {
    PML_RETURN_IF_ERROR(stmt.Bind(2, nullptr));
  }
  PML_ASSIGN_OR_RETURN(const bool row, stmt.Step());
  if (!row) {
    return absl::NotFoundError(NotFoundMessage(id, version));
  }
  return ReadRecord(stmt, id, 0);
}

absl::StatusOr<PolicyPage> PolicyStore::List(int page_size, absl::string_view page_token) {
  if (page_size < 0) {
    return absl::InvalidArgumentError(absl::StrCat("page_size ", page_size, ": want 0 or more"));
  }
  if (page_size == 0) {
    page_size = kDefaultPolicyPageSize;
  }
  page_size = std::min(page_size, kMaxPolicyPageSize);
  // The token is the last id of the previous page, base64url-encoded.
  std::string after;
  if (!page_token.empty()) {
    absl::StatusOr<std::vector<uint8_t>> decoded = core::Base64UrlDecode(page_token);
    if (decoded.ok()) {
      after = core::ToString(*decoded);
    }
    if (!decoded.ok() || !IsValidPolicyId(after)) {
      return absl::InvalidArgumentError("page_token: not a token from List");
    }
  }

  absl::MutexLock lock(&mu_);
  PML_ASSIGN_OR_RETURN(
      store::Statement stmt,
      db_.Prepare("SELECT p.id, v.version, v.json, v.sha256, v.created_at_us, v.created_by "
                  "FROM policies p JOIN policy_versions v "
                  "ON v.id = p.id AND v.version = p.latest_version "
                  "WHERE p.live = 1 AND p.id > ?1 ORDER BY p.id LIMIT ?2"));
  PML_RETURN_IF_ERROR(stmt.Bind(1, after));
  PML_RETURN_IF_ERROR(stmt.Bind(2, page_size + 1));  // one more tells whether a page follows
  PolicyPage page;
  for (;;) {
    PML_ASSIGN_OR_RETURN(const bool row, stmt.Step());
    if (!row) {
      break;
    }
    if (page.policies.size() == static_cast<size_t>(page_size)) {
      page.next_page_token = core::Base64UrlEncode(page.policies.back().id);
      break;
    }
    page.policies.push_back(ReadRecord(stmt, stmt.ColumnText(0), 1));
  }
  return page;
}

absl::Status PolicyStore::Delete(absl::string_view id, absl::string_view actor, absl::Time now) {
  PML_RETURN_IF_ERROR(CheckId(id));
  PML_RETURN_IF_ERROR(CheckActor(actor));
  PML_RETURN_IF_ERROR(CheckTime(now));

  absl::MutexLock lock(&mu_);
  PML_ASSIGN_OR_RETURN(store::Transaction txn, store::Transaction::Begin(db_));
  PML_ASSIGN_OR_RETURN(const std::optional<IdState> state, ReadIdState(db_, id));
  if (!state.has_value() || !state->live) {
    return absl::NotFoundError(NotFoundMessage(id, std::nullopt));
  }
  PML_ASSIGN_OR_RETURN(const PolicyRecord latest, ReadVersion(db_, id, state->latest_version));
  PML_ASSIGN_OR_RETURN(store::Statement stmt,
                       db_.Prepare("UPDATE policies SET live = 0 WHERE id = ?1"));
  PML_RETURN_IF_ERROR(stmt.Bind(1, id));
  PML_RETURN_IF_ERROR(stmt.Step().status());
  PML_RETURN_IF_ERROR(InsertAudit(db_, now, actor, "delete", id, latest.version, latest.sha256));
  return txn.Commit();
}

absl::StatusOr<std::vector<PolicyAuditEntry>> PolicyStore::AuditLog(int limit) {
  if (limit < 0) {
    return absl::InvalidArgumentError(absl::StrCat("limit ", limit, ": want 0 or more"));
  }
  if (limit == 0) {
    limit = kDefaultPolicyAuditLimit;
  }
  limit = std::min(limit, kMaxPolicyAuditLimit);

  absl::MutexLock lock(&mu_);
  PML_ASSIGN_OR_RETURN(
      store::Statement stmt,
      db_.Prepare("SELECT time_us, actor, action, id, version, sha256 FROM policy_audit "
                  "ORDER BY seq DESC LIMIT ?1"));
  PML_RETURN_IF_ERROR(stmt.Bind(1, limit));
  std::vector<PolicyAuditEntry> entries;
  for (;;) {
    PML_ASSIGN_OR_RETURN(const bool row, stmt.Step());
    if (!row) {
      break;
    }
    entries.push_back(PolicyAuditEntry{absl::FromUnixMicros(stmt.ColumnInt64(0)),
                                       stmt.ColumnText(1), stmt.ColumnText(2), stmt.ColumnText(3),
                                       stmt.ColumnInt64(4), stmt.ColumnText(5)});
  }
  return entries;
}

}  // namespace pml::attestation
