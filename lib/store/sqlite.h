#pragma once
// A thin RAII layer over libsqlite3: a connection (Database), its prepared statements
// (Statement), an IMMEDIATE transaction that rolls back unless committed (Transaction), and a
// user_version-based schema migration helper (Migrate).
//
// Every failure is an absl::Status carrying SQLite's message (never a bound value, never the SQL
// text), with the code chosen from SQLite's extended result code:
//   SQLITE_BUSY, SQLITE_LOCKED (another connection holds the lock)   -> kUnavailable (retry safe)
//   SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY           -> kAlreadyExists
//   SQLITE_CORRUPT, SQLITE_NOTADB (the file is damaged or not SQLite) -> kDataLoss
//   SQLITE_FULL (disk or database full)                               -> kResourceExhausted
//   anything else (syntax errors, other constraints, I/O errors)      -> kInternal
//
// Threading: a Database and the Statements prepared on it form one unit that one thread uses at
// a time (the connection is opened in SQLite's multi-thread mode); callers that share it guard
// it with a mutex. Different Database objects, also on the same file, may be used concurrently:
// SQLite's file locks serialize writers (and busy_timeout makes them wait).
//
// Lifetimes: Statements and Transactions borrow their Database's connection, which must outlive
// them (moving the Database object is fine; destroying it is not).

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

// SQLite's handle types, forward-declared so that <sqlite3.h> stays out of this header
// (sqlite3.h declares them as `typedef struct sqlite3 sqlite3;`).
struct sqlite3;
struct sqlite3_stmt;

namespace pml::store {

// Deleters for the two SQLite handle types (defined in sqlite.cc, where <sqlite3.h> is known).
struct SqliteCloser {
  void operator()(sqlite3* db) const;  // sqlite3_close_v2
};
struct SqliteStmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const;  // sqlite3_finalize
};
using SqlitePtr = std::unique_ptr<sqlite3, SqliteCloser>;
using SqliteStmtPtr = std::unique_ptr<sqlite3_stmt, SqliteStmtFinalizer>;

namespace internal {
// Integer types other than int64_t and bool (see Statement::Bind).
template <typename T>
concept OtherInteger =
    std::is_integral_v<T> && !std::is_same_v<T, int64_t> && !std::is_same_v<T, bool>;
}  // namespace internal

// The path that opens a private, in-memory database (gone when the Database closes).
inline constexpr absl::string_view kInMemory = ":memory:";

struct OpenOptions {
  // Create the file when it does not exist. When false, a missing file is kNotFound.
  bool create = true;
  // Permission bits of a file this call creates (applied exactly, regardless of the umask).
  // SQLite gives its -wal and -shm side files the same bits. An existing file is not changed.
  mode_t mode = 0600;
  // How long a statement waits for another connection's lock before failing with kUnavailable.
  absl::Duration busy_timeout = absl::Seconds(5);
};

class Statement;

namespace internal {
// Compiled statements of one connection kept for reuse (see Database::Prepare). Defined in
// sqlite.cc.
struct StatementCache;
}  // namespace internal

// One SQLite connection. Files are opened with journal_mode=WAL, synchronous=FULL (a committed
// transaction survives power loss) and foreign_keys=ON; ":memory:" gets foreign_keys=ON.
// Movable, not copyable; closing happens in the destructor.
class Database {
 public:
  // Opens (and with options.create, creates) the database at `path`, or kInMemory.
  // Errors: kNotFound when the file is missing and !options.create; kInvalidArgument for an empty
  // path or a busy_timeout that is negative or over 24 hours; kDataLoss when the file is not a
  // SQLite database; kUnavailable when it is locked; kInternal (naming the path) otherwise.
  static absl::StatusOr<Database> Open(absl::string_view path, const OpenOptions& options = {});

  Database(Database&&) noexcept;
  Database& operator=(Database&&) noexcept;
  ~Database();

  // Runs one or more `;`-separated statements that take no parameters and whose rows, if any,
  // are discarded (DDL, PRAGMAs). Errors per the table at the top of this file.
  absl::Status Exec(absl::string_view sql);

  // Compiles exactly one statement. kInvalidArgument when `sql` holds no statement or more than
  // one; otherwise errors per the table at the top (a syntax error is kInternal: SQL is ours).
  // A statement handed back (the Statement destroyed) is reset, unbound and kept, and the next
  // Prepare of the same text reuses it instead of compiling again (a few idle statements per
  // text, a bounded number of texts).
  absl::StatusOr<Statement> Prepare(absl::string_view sql);

  // Rowid of the last successful INSERT on this connection (0 if none).
  int64_t LastInsertRowId() const;
  // Rows changed by the most recent INSERT/UPDATE/DELETE on this connection.
  int64_t Changes() const;
  // True while a transaction is open on this connection.
  bool InTransaction() const;
  // The path this database was opened with.
  const std::string& path() const { return path_; }

 private:
  friend class Transaction;
  Database(SqlitePtr db, std::string path);

  // Members are destroyed in reverse order: the cache (which finalizes its idle statements) goes
  // before the connection closes.
  SqlitePtr db_;
  std::string path_;
  std::shared_ptr<internal::StatementCache> cache_;
};

// A prepared statement. Parameters are 1-based (SQLite's convention); columns are 0-based.
// Movable, not copyable.
class Statement {
 public:
  Statement(Statement&&) noexcept;
  Statement& operator=(Statement&&) noexcept;
  ~Statement();

  // Binds parameter `index` (1-based). Text and blobs are copied, so the argument need not
  // outlive the call. kInternal when `index` is out of range (our bug); kInvalidArgument when an
  // unsigned value does not fit int64. The message names the index, never the value.
  absl::Status Bind(int index, int64_t value);
  absl::Status Bind(int index, absl::string_view text);
  absl::Status Bind(int index, absl::Span<const uint8_t> blob);
  absl::Status Bind(int index, std::nullptr_t);
  // Other integer types (int, uint32_t, size_t, ...) go through the int64 overload; this also
  // keeps `Bind(i, 0)` from being ambiguous with the nullptr overload.
  template <internal::OtherInteger T>
  absl::Status Bind(int index, T value) {
    if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(int64_t)) {
      if (value > static_cast<T>(std::numeric_limits<int64_t>::max())) {
        return OutOfRange(index);
      }
    }
    return Bind(index, static_cast<int64_t>(value));
  }

  // Runs the statement to its next row: true when a row is available (read it with Column*),
  // false when the statement is done (after which Step starts it again). Errors per the table at
  // the top of sqlite.h; a kAlreadyExists from Step is a UNIQUE/PRIMARY KEY violation.
  absl::StatusOr<bool> Step();

  // Column accessors for the current row; call only after Step returned true. Values are
  // converted by SQLite's rules (NULL reads as 0, "" or an empty blob). Text and blobs are
  // copied out, so the results outlive the next Step.
  int ColumnCount() const;
  // The storage class of the value in `column` of the current row (SQLite types values, not
  // columns: one column may hold values of several classes).
  enum class ColumnType { kNull, kInteger, kFloat, kText, kBlob };
  ColumnType ColumnTypeOf(int column) const;
  bool ColumnIsNull(int column) const;
  int64_t ColumnInt64(int column) const;
  std::string ColumnText(int column) const;
  std::vector<uint8_t> ColumnBlob(int column) const;

  // Rewinds the statement so that it can run again, and sets every parameter back to NULL.
  // Never fails: an error of the last Step was already returned by that Step.
  void Reset();

 private:
  friend class Database;
  Statement(SqliteStmtPtr stmt, sqlite3* db, std::weak_ptr<internal::StatementCache> cache,
            std::string sql);
  absl::Status OutOfRange(int index) const;
  // Hands the compiled statement back to its connection's cache (reset and unbound), or
  // finalizes it when the cache is gone or full.
  void Release();

  SqliteStmtPtr stmt_;
  sqlite3* db_;  // borrowed from the Database that prepared this statement
  std::weak_ptr<internal::StatementCache> cache_;
  std::string sql_;
};

// A write transaction: Begin runs BEGIN IMMEDIATE (takes the write lock now, so a later statement
// in it never fails for a lock upgrade); the destructor rolls back unless Commit succeeded.
// Movable, not copyable.
class Transaction {
 public:
  // kUnavailable when another connection holds the write lock past busy_timeout; kInternal when
  // a transaction is already open on `db` (transactions do not nest).
  static absl::StatusOr<Transaction> Begin(Database& db);

  Transaction(Transaction&&) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();

  // Commits. kFailedPrecondition when already committed. On failure the destructor still rolls
  // back whatever SQLite left open.
  absl::Status Commit();

 private:
  explicit Transaction(sqlite3* db) : db_(db) {}

  sqlite3* db_;  // borrowed; nullptr once committed or moved from
};

// Brings the schema up to date: `steps[i]` (one or more SQL statements) turns schema version i
// into version i + 1, where the version is PRAGMA user_version (0 for a new database). Steps
// already applied are skipped, so running Migrate again is a no-op. Each step runs in its own
// transaction together with the version bump, so a failure leaves the last complete version.
// Steps must not hold transaction statements (BEGIN/COMMIT). Not thread-safe (uses `db`).
// Errors: kFailedPrecondition when the database's version is newer than steps.size() (written by
// a newer binary) or negative; a failing step's error, same code, prefixed "migration step N: "
// (N = the version it was to produce, 1-based); kUnavailable when the file is locked.
absl::Status Migrate(Database& db, absl::Span<const absl::string_view> steps);

}  // namespace pml::store
