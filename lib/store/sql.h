#pragma once
// A small SQL interface over two backends: SQLite (the default: one process owns a local file)
// and PostgreSQL (several replicas share one store). Callers write one SQL text with `?`
// placeholders and branch on dialect() only where the dialects differ (DDL types, autoincrement).
//
// Values: SqlValue is NULL, a 64-bit integer, UTF-8 text or a blob. Parameters bind as
//   int64_t -> INTEGER (SQLite) / int8 (PostgreSQL)
//   string  -> TEXT / text (must not contain a NUL byte: use Blob for bytes)
//   Blob    -> BLOB / bytea
//   monostate -> NULL (PostgreSQL infers the type from the context)
// and results come back by type: integer columns (SQLite INTEGER values; PostgreSQL int2, int4,
// int8, oid, and bool as 0/1) -> int64_t; text (SQLite TEXT; PostgreSQL text, varchar, bpchar,
// name) -> std::string; blobs (SQLite BLOB, PostgreSQL bytea) -> Blob; NULL -> monostate. Any
// other type (SQLite REAL; PostgreSQL numeric, timestamptz, json, ...) is kInternal naming the
// column: cast it in the SQL (`SUM(x)::bigint`, `extract(epoch from t)::bigint`).
//
// Errors, the same codes for both backends (messages carry the backend's message, never a bound
// value and never a connection password):
//   UNIQUE / PRIMARY KEY violation                                   -> kAlreadyExists
//   PostgreSQL serialization failure or deadlock (40001, 40P01)      -> kAborted: retry the whole
//                                                                       transaction
//   SQLite busy/locked past its 5 s busy timeout, PostgreSQL lock_not_available (55P03), a lost
//   or unreachable connection, a server shutting down                -> kUnavailable
//   a statement in a transaction that an earlier error aborted       -> kFailedPrecondition
//   a bad call (placeholder/parameter count mismatch, not exactly one statement in Query, a NUL
//   in a text parameter)                                             -> kInvalidArgument
//   PostgreSQL statement_timeout (57014, when the URL sets one)      -> kDeadlineExceeded
//   SQLite corrupt file / PostgreSQL data_corrupted                  -> kDataLoss
//   disk full                                                        -> kResourceExhausted
//   anything else (syntax errors, other constraints, unsupported result types) -> kInternal
//
// Transactions behave the same on both backends: after any error from the database inside a
// transaction, the transaction is doomed (PostgreSQL's rule, which the SQLite backend copies):
// later statements fail with kFailedPrecondition and Commit rolls back and fails with
// kFailedPrecondition. So do not catch kAlreadyExists inside a transaction and carry on; use
// `INSERT ... ON CONFLICT DO NOTHING` (both dialects) instead. Use Begin/Commit/Rollback (or
// SqlTransaction), never BEGIN/COMMIT text through Exec or Query.
//
// Portable SQL: both dialects take BIGINT and TEXT columns, `INSERT ... ON CONFLICT (...) DO
// NOTHING / DO UPDATE SET x = excluded.x`, RETURNING, CAST(x AS BIGINT) and `||`. Branch on
// dialect() for blob columns (BLOB vs BYTEA) and generated keys (INTEGER PRIMARY KEY vs BIGINT
// GENERATED ALWAYS AS IDENTITY). Bind flags as integers into BIGINT/INTEGER columns (PostgreSQL
// has no int8 -> boolean cast); SUM() of bigint is numeric in PostgreSQL: cast it to BIGINT.
//
// Threading: a SqlDb is one connection that one thread uses at a time; callers guard it with a
// mutex or open one per thread. Different SqlDb objects may be used concurrently.

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pml::store {

// Binary data (a bytea/BLOB value). Any bytes, NUL and 0xff included; may be empty (an empty
// blob is not NULL).
struct Blob {
  std::string bytes;
  friend bool operator==(const Blob&, const Blob&) = default;
};

// NULL, INTEGER (64-bit), TEXT (UTF-8), BLOB/BYTEA.
using SqlValue = std::variant<std::monostate, int64_t, std::string, Blob>;
using SqlRow = std::vector<SqlValue>;

enum class SqlDialect { kSqlite, kPostgres };

// One connection. Not thread-safe: one thread at a time (callers guard it with a mutex or use one
// per thread). The PostgreSQL backend reconnects on the next call after a lost connection, except
// inside a transaction, which fails with kUnavailable until Rollback.
class SqlDb {
 public:
  virtual ~SqlDb() = default;

  virtual SqlDialect dialect() const = 0;

  // "sqlite" or "postgres" (never the connection string, which may hold a password).
  virtual std::string kind() const = 0;

  // Runs exactly one statement (a trailing `;` is allowed) with `?` placeholders, bound in order
  // to `params`; returns every row (none for a statement without results; use RETURNING, which
  // both dialects support, to read back what a write did). Placeholders are `?` outside quoted
  // literals, identifiers and comments; for PostgreSQL they are rewritten to $1, $2, ... (so
  // PostgreSQL's jsonb `?` operators cannot be written: use jsonb_exists()). Other placeholder
  // forms (?NNN, :name, $1) are not supported. Column values come back as: integer columns ->
  // int64_t, text -> std::string, blob/bytea -> Blob, NULL -> monostate (see the top of this
  // file). Errors: kInvalidArgument when the number of `?` differs from params.size(), when `sql`
  // holds no statement or more than one, or a text parameter contains a NUL byte (the message
  // names the parameter's 1-based index, never its value); otherwise per the table at the top.
  virtual absl::StatusOr<std::vector<SqlRow>> Query(absl::string_view sql,
                                                    const std::vector<SqlValue>& params = {}) = 0;

  // Runs several `;`-separated statements without parameters (DDL); rows are discarded. `?` is not
  // rewritten. Outside a transaction PostgreSQL runs them atomically and SQLite one by one: wrap
  // them in Begin/Commit (DDL is transactional in both) when that matters. Errors per the table.
  virtual absl::Status Exec(absl::string_view sql) = 0;

  // Starts a transaction. SQLite: BEGIN IMMEDIATE (takes the write lock now, waiting up to 5 s:
  // kUnavailable when another connection keeps it). PostgreSQL: BEGIN ISOLATION LEVEL
  // SERIALIZABLE (any statement or the Commit may then fail with kAborted: run the whole
  // transaction again). kFailedPrecondition when a transaction is already open (they do not nest).
  virtual absl::Status Begin() = 0;

  // Commits the open transaction. kFailedPrecondition when none is open, or when an earlier error
  // doomed it (it is rolled back); kAborted for a PostgreSQL serialization failure at commit (the
  // transaction is rolled back); kUnavailable when the connection was lost (for PostgreSQL, a
  // connection lost while COMMIT was in flight leaves the outcome unknown: make retried writes
  // idempotent). Once Commit returns, the transaction is over, except that a SQLite busy COMMIT
  // (kUnavailable) leaves it open for Commit again or Rollback.
  virtual absl::Status Commit() = 0;

  // Rolls back the open transaction. A no-op (OK) when none is open, also when the server already
  // ended it (error, lost connection). An error here means the rollback could not be sent; the
  // server rolls back when the connection closes.
  virtual absl::Status Rollback() = 0;
};

// RAII transaction: Start calls db.Begin(); the destructor calls db.Rollback() unless Commit
// succeeded. Borrows `db`, which must outlive it. Movable (the moved-from object does nothing),
// not copyable. Same thread rules as the SqlDb.
class SqlTransaction {
 public:
  // Errors: those of SqlDb::Begin.
  static absl::StatusOr<SqlTransaction> Start(SqlDb& db);

  // Errors: those of SqlDb::Commit; kFailedPrecondition when this transaction already committed
  // (or was moved from). After a failed Commit the destructor still rolls back.
  absl::Status Commit();

  SqlTransaction(SqlTransaction&& other) noexcept;
  SqlTransaction& operator=(SqlTransaction&&) = delete;
  SqlTransaction(const SqlTransaction&) = delete;
  SqlTransaction& operator=(const SqlTransaction&) = delete;
  ~SqlTransaction();

 private:
  explicit SqlTransaction(SqlDb* db) : db_(db) {}

  SqlDb* db_;  // borrowed; nullptr once committed or moved from
};

// Opens a connection:
//   "sqlite:PATH" or a bare PATH (also ":memory:") -> SQLite, through lib/store/sqlite.h's
//       Database (file created 0600 when missing, WAL, synchronous=FULL, foreign keys on, 5 s
//       busy timeout);
//   "postgres://..." or "postgresql://..." -> PostgreSQL, a libpq connection URI
//       (https://www.postgresql.org/docs/15/libpq-connect.html#LIBPQ-CONNSTRING), e.g.
//       "postgresql://kms@db.internal:5432/kms?sslmode=verify-full" with the password from
//       ~/.pgpass or PGPASSFILE (or inline, though it then sits in a flag). Unless the URI says
//       otherwise, connect_timeout is 10 s; client_encoding is always UTF8.
// A bare path must not start with `word:` (write "sqlite:" or "./" in front).
// Errors: kInvalidArgument for an unknown scheme (named in the message), an empty path or a
// malformed PostgreSQL URI; kUnavailable when the PostgreSQL server cannot be reached or refuses
// the connection (also for bad credentials: the message names host and port and carries libpq's
// reason, never the password); SQLite's open errors as documented in sqlite.h.
// Thread-safe.
absl::StatusOr<std::unique_ptr<SqlDb>> OpenSqlDb(absl::string_view url);

// The same `url` with any password (the `user:PASSWORD@` part of a URI, and the value of
// `password=` or `sslpassword=` query parameters) replaced by "***", for logs. Other input is
// returned unchanged. Pure and thread-safe.
std::string RedactDbUrl(absl::string_view url);

}  // namespace pml::store
