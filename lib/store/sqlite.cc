#include "lib/store/sqlite.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <sqlite3.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/core/status.h"

namespace pml::store {

void SqliteCloser::operator()(sqlite3* db) const { sqlite3_close_v2(db); }
void SqliteStmtFinalizer::operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }

namespace internal {

struct StatementCache {
  // Bounds: idle statements kept per SQL text, and distinct texts. Our stores use a few dozen
  // fixed texts; dynamic ones (list filters) come in a handful of shapes.
  static constexpr size_t kPerText = 4;
  static constexpr size_t kTexts = 256;
  absl::flat_hash_map<std::string, std::vector<SqliteStmtPtr>> idle;
};

}  // namespace internal

namespace {

// Maps an extended result code to the canonical code documented in sqlite.h.
absl::StatusCode CodeFor(int rc) {
  if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
    return absl::StatusCode::kAlreadyExists;
  }
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_FULL:
      return absl::StatusCode::kResourceExhausted;
    default:
      return absl::StatusCode::kInternal;
  }
}

// `rc` must come from the latest call on `db` so that sqlite3_errmsg describes it. SQLite's
// messages name tables, columns and constraints, never bound values.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return absl::Status(CodeFor(rc), absl::StrCat("sqlite: ", what, ": ", msg));
}

// strerror is not thread-safe; GNU strerror_r returns the message (in `buf` or static).
std::string ErrnoText(int err) {
  char buf[128];
  return ::strerror_r(err, buf, sizeof(buf));
}

absl::Status ExecRaw(sqlite3* db, const char* sql, absl::string_view what) {
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    return SqliteError(db, rc, what);
  }
  return absl::OkStatus();
}

// Creates `path` with exactly `mode` when it does not exist, so that SQLite (which creates files
// 0644 less the umask) and its -wal/-shm files (which copy the database's bits) stay private.
absl::Status CreateFileIfMissing(const std::string& path, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    const int err = errno;
    if (err == EEXIST) {
      return absl::OkStatus();
    }
    const absl::StatusCode code = err == ENOENT   ? absl::StatusCode::kNotFound
                                  : err == EACCES ? absl::StatusCode::kPermissionDenied
                                                  : absl::StatusCode::kInternal;
    return absl::Status(code, absl::StrCat("sqlite: cannot create ", path, ": ", ErrnoText(err)));
  }
  // The umask may have cleared bits of `mode`; set exactly what was asked.
  const int chmod_rc = ::fchmod(fd, mode);
  const int err = errno;
  ::close(fd);
  if (chmod_rc != 0) {
    return absl::InternalError(absl::StrCat("sqlite: cannot chmod ", path, ": ", ErrnoText(err)));
  }
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Database

Database::Database(SqlitePtr db, std::string path)
    : db_(std::move(db)),
      path_(std::move(path)),
      cache_(std::make_shared<internal::StatementCache>()) {}
Database::Database(Database&&) noexcept = default;
Database& Database::operator=(Database&&) noexcept = default;
Database::~Database() = default;

absl::StatusOr<Database> Database::Open(absl::string_view path, const OpenOptions& options) {
  if (path.empty()) {
    return absl::InvalidArgumentError("sqlite: empty database path");
  }
  if (absl::StrContains(path, '\0')) {
    return absl::InvalidArgumentError("sqlite: database path contains a NUL byte");
  }
  if (options.busy_timeout < absl::ZeroDuration() || options.busy_timeout > absl::Hours(24)) {
    return absl::InvalidArgumentError("sqlite: busy_timeout must be within [0, 24h]");
  }
  const std::string p(path);
  const bool in_memory = path == kInMemory;
  if (!in_memory) {
    if (options.create) {
      PML_RETURN_IF_ERROR(CreateFileIfMissing(p, options.mode));
    } else {
      struct stat st {};
      if (::stat(p.c_str(), &st) != 0 && errno == ENOENT) {
        return absl::NotFoundError(absl::StrCat("sqlite: database ", p, " does not exist"));
      }
    }
  }

  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  if (options.create) {
    flags |= SQLITE_OPEN_CREATE;
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(p.c_str(), &raw, flags, nullptr);
  SqlitePtr db(raw);  // owns the handle even when the open failed
  if (rc != SQLITE_OK) {
    return SqliteError(db.get(), rc, absl::StrCat("cannot open ", p));
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), static_cast<int>(absl::ToInt64Milliseconds(options.busy_timeout)));
  // Defensive mode: SQL cannot corrupt the file on purpose (writable_schema and the like).
  sqlite3_db_config(db.get(), SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);

  const std::string what = absl::StrCat("cannot set up ", p);
  PML_RETURN_IF_ERROR(ExecRaw(db.get(), "PRAGMA foreign_keys = ON", what));
  if (!in_memory) {
    // journal_mode answers with the mode now in effect; WAL can be refused (e.g. no mmap).
    sqlite3_stmt* raw_stmt = nullptr;
    int prc = sqlite3_prepare_v2(db.get(), "PRAGMA journal_mode = WAL", -1, &raw_stmt, nullptr);
    SqliteStmtPtr stmt(raw_stmt);
    if (prc != SQLITE_OK) {
      return SqliteError(db.get(), prc, what);
    }
    prc = sqlite3_step(stmt.get());
    if (prc != SQLITE_ROW) {
      return SqliteError(db.get(), prc, what);
    }
    const unsigned char* mode = sqlite3_column_text(stmt.get(), 0);
    if (mode == nullptr || !absl::EqualsIgnoreCase(reinterpret_cast<const char*>(mode), "wal")) {
      return absl::InternalError(absl::StrCat("sqlite: ", what, ": WAL journal mode refused"));
    }
    stmt.reset();
    PML_RETURN_IF_ERROR(ExecRaw(db.get(), "PRAGMA synchronous = FULL", what));
  }
  return Database(std::move(db), p);
}

absl::Status Database::Exec(absl::string_view sql) {
  const std::string text(sql);  // sqlite3_exec wants a NUL-terminated string
  return ExecRaw(db_.get(), text.c_str(), "exec failed");
}

absl::StatusOr<Statement> Database::Prepare(absl::string_view sql) {
  if (cache_ != nullptr) {
    auto it = cache_->idle.find(sql);
    if (it != cache_->idle.end() && !it->second.empty()) {
      SqliteStmtPtr stmt = std::move(it->second.back());
      it->second.pop_back();
      return Statement(std::move(stmt), db_.get(), cache_, std::string(sql));
    }
  }
  if (sql.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError("sqlite: statement too long");
  }
  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  const int rc =
      sqlite3_prepare_v2(db_.get(), sql.data(), static_cast<int>(sql.size()), &raw, &tail);
  SqliteStmtPtr stmt(raw);
  if (rc != SQLITE_OK) {
    return SqliteError(db_.get(), rc, "prepare failed");
  }
  if (stmt == nullptr) {
    return absl::InvalidArgumentError("sqlite: no statement to prepare");
  }
  const absl::string_view rest(tail, static_cast<size_t>(sql.data() + sql.size() - tail));
  if (!absl::StripAsciiWhitespace(rest).empty()) {
    return absl::InvalidArgumentError("sqlite: Prepare takes exactly one statement");
  }
  return Statement(std::move(stmt), db_.get(), cache_, std::string(sql));
}

int64_t Database::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_.get()); }
int64_t Database::Changes() const { return sqlite3_changes64(db_.get()); }
bool Database::InTransaction() const { return sqlite3_get_autocommit(db_.get()) == 0; }

// ---------------------------------------------------------------------------------------------
// Statement

Statement::Statement(SqliteStmtPtr stmt, sqlite3* db,
                     std::weak_ptr<internal::StatementCache> cache, std::string sql)
    : stmt_(std::move(stmt)), db_(db), cache_(std::move(cache)), sql_(std::move(sql)) {}
Statement::Statement(Statement&&) noexcept = default;
Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    Release();
    stmt_ = std::move(other.stmt_);
    db_ = other.db_;
    cache_ = std::move(other.cache_);
    sql_ = std::move(other.sql_);
  }
  return *this;
}
Statement::~Statement() { Release(); }

void Statement::Release() {
  if (stmt_ == nullptr)
    return;
  // A statement left mid-way holds a read snapshot (WAL) until reset: always reset.
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
  std::shared_ptr<internal::StatementCache> cache = cache_.lock();
  if (cache == nullptr)
    return;  // the connection is gone; stmt_ finalizes
  auto it = cache->idle.find(sql_);
  if (it == cache->idle.end()) {
    if (cache->idle.size() >= internal::StatementCache::kTexts)
      return;
    it = cache->idle.emplace(std::move(sql_), std::vector<SqliteStmtPtr>()).first;
  }
  if (it->second.size() < internal::StatementCache::kPerText)
    it->second.push_back(std::move(stmt_));
}

absl::Status Statement::OutOfRange(int index) const {
  return absl::InvalidArgumentError(
      absl::StrCat("sqlite: value for parameter ", index, " does not fit int64"));
}

namespace {
absl::Status BindResult(sqlite3* db, int rc, int index) {
  if (rc == SQLITE_OK) {
    return absl::OkStatus();
  }
  return SqliteError(db, rc, absl::StrCat("cannot bind parameter ", index));
}
}  // namespace

absl::Status Statement::Bind(int index, int64_t value) {
  return BindResult(db_, sqlite3_bind_int64(stmt_.get(), index, value), index);
}

absl::Status Statement::Bind(int index, absl::string_view text) {
  // A null pointer would bind NULL, not "".
  const char* data = text.data() != nullptr ? text.data() : "";
  return BindResult(
      db_,
      sqlite3_bind_text64(stmt_.get(), index, data, text.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
      index);
}

absl::Status Statement::Bind(int index, absl::Span<const uint8_t> blob) {
  // A null pointer would bind NULL, not an empty blob.
  if (blob.data() == nullptr) {
    return BindResult(db_, sqlite3_bind_zeroblob(stmt_.get(), index, 0), index);
  }
  return BindResult(
      db_, sqlite3_bind_blob64(stmt_.get(), index, blob.data(), blob.size(), SQLITE_TRANSIENT),
      index);
}

absl::Status Statement::Bind(int index, std::nullptr_t) {
  return BindResult(db_, sqlite3_bind_null(stmt_.get(), index), index);
}

absl::StatusOr<bool> Statement::Step() {
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  return SqliteError(db_, rc, "step failed");
}

int Statement::ColumnCount() const { return sqlite3_column_count(stmt_.get()); }

Statement::ColumnType Statement::ColumnTypeOf(int column) const {
  switch (sqlite3_column_type(stmt_.get(), column)) {
    case SQLITE_INTEGER:
      return ColumnType::kInteger;
    case SQLITE_FLOAT:
      return ColumnType::kFloat;
    case SQLITE_TEXT:
      return ColumnType::kText;
    case SQLITE_BLOB:
      return ColumnType::kBlob;
    default:
      return ColumnType::kNull;
  }
}

bool Statement::ColumnIsNull(int column) const {
  return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL;
}

int64_t Statement::ColumnInt64(int column) const {
  return sqlite3_column_int64(stmt_.get(), column);
}

std::string Statement::ColumnText(int column) const {
  // Text first, then its length (the order sqlite3_column_bytes documents).
  const unsigned char* text = sqlite3_column_text(stmt_.get(), column);
  if (text == nullptr) {
    return std::string();
  }
  const int n = sqlite3_column_bytes(stmt_.get(), column);
  return std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(n));
}

std::vector<uint8_t> Statement::ColumnBlob(int column) const {
  const auto* blob = static_cast<const uint8_t*>(sqlite3_column_blob(stmt_.get(), column));
  if (blob == nullptr) {
    return {};
  }
  const int n = sqlite3_column_bytes(stmt_.get(), column);
  return std::vector<uint8_t>(blob, blob + n);
}

void Statement::Reset() {
  // sqlite3_reset repeats the last Step's error, which that Step already returned.
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
}

// ---------------------------------------------------------------------------------------------
// Transaction

absl::StatusOr<Transaction> Transaction::Begin(Database& db) {
  PML_RETURN_IF_ERROR(ExecRaw(db.db_.get(), "BEGIN IMMEDIATE", "cannot begin transaction"));
  return Transaction(db.db_.get());
}

Transaction::Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

Transaction::~Transaction() {
  // A failed statement may already have rolled the transaction back (SQLite does so on some
  // errors), so roll back only what is still open. A failing ROLLBACK cannot be reported from a
  // destructor; SQLite then rolls back when the connection closes.
  if (db_ != nullptr && sqlite3_get_autocommit(db_) == 0) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
}

absl::Status Transaction::Commit() {
  if (db_ == nullptr) {
    return absl::FailedPreconditionError("sqlite: transaction already ended");
  }
  PML_RETURN_IF_ERROR(ExecRaw(db_, "COMMIT", "cannot commit"));
  db_ = nullptr;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Migrate

namespace {
absl::StatusOr<int64_t> UserVersion(Database& db) {
  PML_ASSIGN_OR_RETURN(Statement stmt, db.Prepare("PRAGMA user_version"));
  PML_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) {
    return absl::InternalError("sqlite: PRAGMA user_version returned no row");
  }
  return stmt.ColumnInt64(0);
}
}  // namespace

absl::Status Migrate(Database& db, absl::Span<const absl::string_view> steps) {
  for (;;) {
    // Read the version inside the write transaction so that two processes migrating the same
    // file cannot both apply a step.
    PML_ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(db));
    PML_ASSIGN_OR_RETURN(const int64_t version, UserVersion(db));
    if (version < 0 || static_cast<uint64_t>(version) > steps.size()) {
      return absl::FailedPreconditionError(
          absl::StrCat("sqlite: schema version ", version, " of ", db.path(),
                       " is not one this binary knows (0..", steps.size(), ")"));
    }
    if (static_cast<uint64_t>(version) == steps.size()) {
      return txn.Commit();
    }
    const std::string context = absl::StrCat("migration step ", version + 1);
    PML_RETURN_IF_ERROR(core::Annotate(db.Exec(steps[version]), context));
    PML_RETURN_IF_ERROR(
        core::Annotate(db.Exec(absl::StrCat("PRAGMA user_version = ", version + 1)), context));
    PML_RETURN_IF_ERROR(core::Annotate(txn.Commit(), context));
  }
}

}  // namespace pml::store
