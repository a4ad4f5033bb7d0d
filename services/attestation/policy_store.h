#pragma once
// PolicyStore: the verifier's appraisal policies, versioned and audited, in SQLite (lib/store).
//
// Model: a policy id names a sequence of versions 1, 2, ...; each version is an immutable
// canonical policy JSON (policy.h) with its SHA-256, creation time and actor. The id is "live"
// from a Put until a Delete. Get and List see only live ids; Delete keeps the history, and a
// later Put of the same id makes it live again with the next version number (numbers are never
// reused). Every mutation (a new version, a delete) writes one audit entry in the same
// transaction, so the audit log and the policies can never disagree. A Put whose content equals
// the live latest version changes nothing and returns that version (no audit entry).
//
// Durability: a file database commits with synchronous=FULL (WAL); a returned Put or Delete
// survives a crash. store::kInMemory (":memory:") keeps everything in the process (tests, dry
// runs). Times are stored to the microsecond (truncated).
//
// Errors, common to every method:
//   kInvalidArgument  a malformed id (not IsValidPolicyId), actor, time, page size, page token or
//                     policy JSON (ParsePolicyJson's message, naming the JSON path).
//   kNotFound         the id (or the id's version) is absent or deleted; names the id/version.
//   kUnavailable      another process holds the database's write lock past the busy timeout;
//                     retry is safe.
//   kDataLoss         the database file is damaged; kInternal for other storage failures.
//
// Thread-safety: every method is thread-safe (one connection behind a mutex). Several processes
// may open the same file: writes serialize on SQLite's lock and versions stay consecutive.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lib/store/sqlite.h"

namespace pml::attestation {

inline constexpr int kDefaultPolicyPageSize = 50;
inline constexpr int kMaxPolicyPageSize = 500;
inline constexpr int kDefaultPolicyAuditLimit = 100;
inline constexpr int kMaxPolicyAuditLimit = 1000;
// Actors (who made a change, e.g. the caller's identity URI): printable ASCII, 1..256 bytes.
inline constexpr size_t kMaxPolicyActorBytes = 256;

// One stored version of a policy.
struct PolicyRecord {
  std::string id;
  int64_t version = 0;     // 1, 2, ...
  std::string json;        // canonical (PolicyToJson)
  std::string sha256;      // lower-case hex SHA-256 of `json` (PolicyDigest)
  absl::Time created_at;   // the `now` of the Put that wrote it
  std::string created_by;  // the `actor` of that Put

  bool operator==(const PolicyRecord&) const = default;
};

// One page of List: live policies, latest version each, ordered by id.
struct PolicyPage {
  std::vector<PolicyRecord> policies;
  // Pass to List for the next page; empty on the last page.
  std::string next_page_token;
};

// One audit entry. `action` is "put" (a new version) or "delete"; `version` and `sha256` are
// those of the version written, or of the latest version when deleted.
struct PolicyAuditEntry {
  absl::Time time;
  std::string actor;
  std::string action;
  std::string id;
  int64_t version = 0;
  std::string sha256;

  bool operator==(const PolicyAuditEntry&) const = default;
};

class PolicyStore {
 public:
  // Opens (creating if needed, mode 0600) the database at `path`, or store::kInMemory, and
  // brings its schema up to date. kFailedPrecondition when the file's schema is newer than this
  // binary's; otherwise the errors at the top of this file.
  static absl::StatusOr<std::unique_ptr<PolicyStore>> Open(absl::string_view path);

  // Parses `policy_json` (any valid policy JSON; the canonical form is what is stored) and
  // makes it the latest version of `id`, recorded as written by `actor` at `now`. Returns the
  // new version, or the live latest version unchanged when its content is identical. With
  // `expected_version` (optimistic concurrency; 0 = the id must not be live), kAborted unless the
  // live latest version is that one.
  absl::StatusOr<PolicyRecord> Put(absl::string_view id, absl::string_view policy_json,
                                   absl::string_view actor, absl::Time now,
                                   std::optional<int64_t> expected_version = std::nullopt);

  // The given version of a live id, or its latest version when `version` is absent.
  // kInvalidArgument when `version` < 1; kNotFound when the id is absent or deleted, or the
  // version does not exist.
  absl::StatusOr<PolicyRecord> Get(absl::string_view id,
                                   std::optional<int64_t> version = std::nullopt);

  // Live policies ordered by id, starting after `page_token` (empty: from the start).
  // `page_size` 0 means kDefaultPolicyPageSize; larger than kMaxPolicyPageSize means that
  // maximum; negative is kInvalidArgument, as is a token List did not produce.
  absl::StatusOr<PolicyPage> List(int page_size = 0, absl::string_view page_token = "");

  // Deletes the live id `id` (its history and audit entries stay). kNotFound when absent or
  // already deleted.
  absl::Status Delete(absl::string_view id, absl::string_view actor, absl::Time now);

  // The most recent `limit` audit entries, newest first. `limit` 0 means
  // kDefaultPolicyAuditLimit; above kMaxPolicyAuditLimit means that maximum; negative is
  // kInvalidArgument.
  absl::StatusOr<std::vector<PolicyAuditEntry>> AuditLog(int limit = 0);

 private:
  explicit PolicyStore(store::Database db) : db_(std::move(db)) {}

  absl::Mutex mu_;
  store::Database db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pml::attestation
