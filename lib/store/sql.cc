#include "lib/store/sql.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <variant>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"
#include "lib/core/status.h"
#include "lib/store/postgres.h"
#include "lib/store/sqlite.h"

namespace pml::store {
namespace {

// The SQLite backend, over sqlite.h's Database. It copies PostgreSQL's rule that a database error
// inside a transaction dooms it (see sql.h), so that code written against one backend behaves the
// same on the other.
class SqliteDb final : public SqlDb {
 public:
  explicit SqliteDb(Database db) : db_(std::move(db)) {}

  SqlDialect dialect() const override { return SqlDialect::kSqlite; }
  std::string kind() const override { return "sqlite"; }

  absl::StatusOr<std::vector<SqlRow>> Query(absl::string_view sql,
                                            const std::vector<SqlValue>& params) override;
  absl::Status Exec(absl::string_view sql) override;
  absl::Status Begin() override;
  absl::Status Commit() override;
  absl::Status Rollback() override;

 private:
  absl::StatusOr<std::vector<SqlRow>> Run(const std::string& sql,
                                          const std::vector<SqlValue>& params);
  absl::Status CheckNotDoomed() const;
  // Records a database error: inside a transaction, it dooms the transaction.
  template <typename T>
  T Track(T result) {
    if (!result.ok() && txn_open_) {
      txn_doomed_ = true;
    }
    return result;
  }

  Database db_;
  bool txn_open_ = false;    // Begin succeeded and neither Commit nor Rollback has ended it
  bool txn_doomed_ = false;  // a statement of the open transaction failed
};

absl::Status SqliteDb::CheckNotDoomed() const {
  if (txn_doomed_) {
    return absl::FailedPreconditionError(
        "sqlite: transaction aborted by an earlier error; roll back");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SqlRow>> SqliteDb::Query(absl::string_view sql,
                                                    const std::vector<SqlValue>& params) {
  PML_ASSIGN_OR_RETURN(internal::ParsedStatement parsed,
                       internal::ParseSqlStatement(sql, SqlDialect::kSqlite));
  if (static_cast<size_t>(parsed.placeholders) != params.size()) {
    return absl::InvalidArgumentError(absl::StrCat("sqlite: query has ", parsed.placeholders,
                                                   " placeholders but ", params.size(),
                                                   " parameters were given"));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    const auto* s = std::get_if<std::string>(&params[i]);
    if (s != nullptr && absl::StrContains(*s, '\0')) {
      // PostgreSQL cannot store it; refuse it here too so that both backends agree.
      return absl::InvalidArgumentError(absl::StrCat(
          "sqlite: text parameter ", i + 1, " contains a NUL byte (bind bytes as a Blob)"));
    }
  }
  PML_RETURN_IF_ERROR(CheckNotDoomed());
  return Track(Run(parsed.sql, params));
}

absl::StatusOr<std::vector<SqlRow>> SqliteDb::Run(const std::string& sql,
                                                  const std::vector<SqlValue>& params) {
  PML_ASSIGN_OR_RETURN(Statement stmt, db_.Prepare(sql));
  for (size_t i = 0; i < params.size(); ++i) {
    const int index = static_cast<int>(i) + 1;
    const SqlValue& p = params[i];
    absl::Status st;
    if (const auto* v = std::get_if<int64_t>(&p)) {
      st = stmt.Bind(index, *v);
    } else if (const auto* s = std::get_if<std::string>(&p)) {
      st = stmt.Bind(index, absl::string_view(*s));
    } else if (const auto* b = std::get_if<Blob>(&p)) {
      // std::string's data() is never null, so an empty Blob binds as an empty blob, not NULL.
      st =
          stmt.Bind(index, absl::Span<const uint8_t>(
                               reinterpret_cast<const uint8_t*>(b->bytes.data()), b->bytes.size()));
    } else {
      st = stmt.Bind(index, nullptr);
    }
    PML_RETURN_IF_ERROR(st);
  }
  std::vector<SqlRow> rows;
  for (;;) {
    PML_ASSIGN_OR_RETURN(const bool has_row, stmt.Step());
    if (!has_row) {
      return rows;
    }
    const int ncols = stmt.ColumnCount();
    SqlRow row;
    row.reserve(static_cast<size_t>(ncols));
    for (int c = 0; c < ncols; ++c) {
      switch (stmt.ColumnTypeOf(c)) {
        case Statement::ColumnType::kNull:
          row.emplace_back(std::monostate());
          break;
        case Statement::ColumnType::kInteger:
          row.emplace_back(stmt.ColumnInt64(c));
          break;
        case Statement::ColumnType::kText:
          row.emplace_back(stmt.ColumnText(c));
          break;
        case Statement::ColumnType::kBlob: {
          const std::vector<uint8_t> blob = stmt.ColumnBlob(c);
          row.emplace_back(Blob{std::string(blob.begin(), blob.end())});
          break;
        }
        case Statement::ColumnType::kFloat:
          return absl::InternalError(
              absl::StrCat("sqlite: column ", c,
                           " holds a REAL value, which SqlValue cannot hold; cast it to INTEGER "
                           "or TEXT in the query"));
      }
    }
    rows.push_back(std::move(row));
  }
}

absl::Status SqliteDb::Exec(absl::string_view sql) {
  PML_RETURN_IF_ERROR(CheckNotDoomed());
  return Track(db_.Exec(sql));
}

absl::Status SqliteDb::Begin() {
  if (txn_open_) {
    return absl::FailedPreconditionError(
        "sqlite: a transaction is already open (transactions do not nest)");
  }
  PML_RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
  txn_open_ = true;
  txn_doomed_ = false;
  return absl::OkStatus();
}

absl::Status SqliteDb::Commit() {
  if (!txn_open_) {
    return absl::FailedPreconditionError("sqlite: commit without an open transaction");
  }
  if (txn_doomed_ || !db_.InTransaction()) {
    // Some errors (SQLITE_FULL, I/O errors) make SQLite roll back by itself.
    const bool doomed = txn_doomed_;
    PML_RETURN_IF_ERROR(Rollback());
    return absl::FailedPreconditionError(
        doomed ? "sqlite: transaction aborted by an earlier error; rolled back"
               : "sqlite: the transaction was rolled back by an earlier error");
  }
  absl::Status st = db_.Exec("COMMIT");
  // A busy COMMIT leaves the transaction open (Commit again or Rollback); other failures end it.
  if (st.ok() || !db_.InTransaction()) {
    txn_open_ = false;
  }
  return st;
}

absl::Status SqliteDb::Rollback() {
  txn_open_ = false;
  txn_doomed_ = false;
  if (!db_.InTransaction()) {
    return absl::OkStatus();
  }
  return db_.Exec("ROLLBACK");
}

// "scheme:" at the start of `url` (RFC 3986 characters), lower-cased; empty when there is none.
std::string SchemeOf(absl::string_view url) {
  const size_t colon = url.find(':');
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::ascii_isalpha(static_cast<unsigned char>(url[0]))) {
    return "";
  }
  for (const char c : url.substr(0, colon)) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return "";
    }
  }
  return absl::AsciiStrToLower(url.substr(0, colon));
}

// True for a libpq keyword/value connection string ("host=db user=kms ..."): taking it for a
// SQLite path would silently give a replica its own private database.
bool LooksLikeKeywordValue(absl::string_view text) {
  text = absl::StripLeadingAsciiWhitespace(text);
  size_t i = 0;
  while (i < text.size() &&
         (absl::ascii_isalpha(static_cast<unsigned char>(text[i])) || text[i] == '_')) {
    ++i;
  }
  if (i == 0) {
    return false;
  }
  return absl::StartsWith(absl::StripLeadingAsciiWhitespace(text.substr(i)), "=");
}

int HexDigit(char c) {
  if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
    return c - '0';
  }
  return absl::ascii_tolower(static_cast<unsigned char>(c)) - 'a' + 10;
}

// Percent-decodes `s` (libpq decodes URI query keys too); a bad escape stays as it is.
std::string PercentDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() &&
        absl::ascii_isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        absl::ascii_isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(HexDigit(s[i + 1]) * 16 + HexDigit(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool IsPasswordKey(absl::string_view key) {
  const std::string k = absl::AsciiStrToLower(PercentDecode(absl::StripAsciiWhitespace(key)));
  return k == "password" || k == "sslpassword";
}

std::string RedactKeywordValue(absl::string_view text) {
  // keyword = value pairs separated by whitespace; a value may be '...' with \' escapes.
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const size_t eq = text.find('=', i);
    if (eq == absl::string_view::npos) {
      absl::StrAppend(&out, text.substr(i));
      break;
    }
    const absl::string_view key = text.substr(i, eq - i);
    absl::StrAppend(&out, key, "=");
    size_t v = eq + 1;
    while (v < text.size() && absl::ascii_isspace(static_cast<unsigned char>(text[v]))) {
      out.push_back(text[v++]);
    }
    size_t end = v;
    if (end < text.size() && text[end] == '\'') {
      ++end;
      while (end < text.size() && text[end] != '\'') {
        end += text[end] == '\\' ? 2 : 1;
      }
      end = std::min(end + 1, text.size());
    } else {
      while (end < text.size() && !absl::ascii_isspace(static_cast<unsigned char>(text[end]))) {
        ++end;
      }
    }
    absl::StrAppend(&out, IsPasswordKey(key) ? "***" : text.substr(v, end - v));
    i = end;
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SqlTransaction

absl::StatusOr<SqlTransaction> SqlTransaction::Start(SqlDb& db) {
  PML_RETURN_IF_ERROR(db.Begin());
  return SqlTransaction(&db);
}

SqlTransaction::SqlTransaction(SqlTransaction&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)) {}

SqlTransaction::~SqlTransaction() {
  if (db_ != nullptr) {
    // Nothing can report a failure from here; a rollback that could not be sent happens on the
    // server when the connection closes.
    db_->Rollback().IgnoreError();
  }
}

absl::Status SqlTransaction::Commit() {
  if (db_ == nullptr) {
    return absl::FailedPreconditionError("sql: transaction already committed");
  }
  PML_RETURN_IF_ERROR(db_->Commit());
  db_ = nullptr;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// OpenSqlDb, RedactDbUrl

absl::StatusOr<std::unique_ptr<SqlDb>> OpenSqlDb(absl::string_view url) {
  const std::string scheme = SchemeOf(url);
  absl::string_view path = url;
  if (scheme == "postgres" || scheme == "postgresql") {
    return OpenPostgresDb(url);
  }
  if (scheme == "sqlite") {
    path = url.substr(scheme.size() + 1);
  } else if (!scheme.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sql: unknown database URL scheme \"", scheme.substr(0, 32),
                     "\" (want sqlite:PATH, a path, or postgres://)"));
  } else if (LooksLikeKeywordValue(url)) {
    return absl::InvalidArgumentError(
        "sql: the database URL looks like a libpq keyword=value string; write a postgres:// URI "
        "(or sqlite:PATH for a file with `=` in its name)");
  }
  PML_ASSIGN_OR_RETURN(Database db, Database::Open(path));
  return std::make_unique<SqliteDb>(std::move(db));
}

std::string RedactDbUrl(absl::string_view url) {
  const size_t sep = url.find("://");
  if (sep == absl::string_view::npos || SchemeOf(url).empty() || SchemeOf(url).size() != sep) {
    if (LooksLikeKeywordValue(url)) {
      return RedactKeywordValue(url);
    }
    std::string unchanged(url);
    return unchanged;
  }
  const size_t auth = sep + 3;
  std::string out(url.substr(0, auth));
  absl::string_view rest = url.substr(auth);
  // libpq ends user:password@ at the first `@` before any `/`; a password with an unencoded `@`
  // or `/` is then misparsed, but must still not be logged: redact up to the last `@` before the
  // query string.
  const size_t at = rest.substr(0, rest.find('?')).rfind('@');
  if (at != absl::string_view::npos) {
    const absl::string_view userinfo = rest.substr(0, at);
    const size_t colon = userinfo.find(':');
    if (colon != absl::string_view::npos) {
      absl::StrAppend(&out, userinfo.substr(0, colon), ":***@");
    } else {
      absl::StrAppend(&out, userinfo, "@");
    }
    rest.remove_prefix(at + 1);
  }
  const size_t q = rest.find('?');
  if (q == absl::string_view::npos) {
    absl::StrAppend(&out, rest);
    return out;
  }
  absl::StrAppend(&out, rest.substr(0, q + 1));
  bool first = true;
  for (const absl::string_view param : absl::StrSplit(rest.substr(q + 1), '&')) {
    if (!first) {
      out.push_back('&');
    }
    first = false;
    const size_t eq = param.find('=');
    if (eq != absl::string_view::npos && IsPasswordKey(param.substr(0, eq))) {
      absl::StrAppend(&out, param.substr(0, eq), "=***");
    } else {
      absl::StrAppend(&out, param);
    }
  }
  return out;
}

}  // namespace pml::store
