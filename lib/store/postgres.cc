#include "lib/store/postgres.h"

#include <array>
#include <climits>
#include <cstdint>
#include <cstring>
#include <utility>
#include <variant>
#include <vector>

#include <libpq-fe.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "lib/core/status.h"

namespace pml::store {
namespace internal {
namespace {

bool IsIdentChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' ||
         static_cast<unsigned char>(c) >= 0x80;
}

// Returns the index just past the literal or quoted identifier that opens at sql[i] (a quote
// char), or sql.size() when it is unterminated. A doubled quote is an escaped quote; with
// `backslash`, a backslash escapes the next character (PostgreSQL's E'...').
size_t SkipQuoted(absl::string_view sql, size_t i, char close, bool backslash) {
  size_t j = i + 1;
  while (j < sql.size()) {
    const char c = sql[j];
    if (backslash && c == '\\') {
      j += 2;
      continue;
    }
    if (c == close) {
      if (close != ']' && j + 1 < sql.size() && sql[j + 1] == close) {
        j += 2;
        continue;
      }
      return j + 1;
    }
    ++j;
  }
  return sql.size();
}

// PostgreSQL dollar quoting ($$...$$ or $tag$...$tag$, tag an identifier without `$`): when
// sql[i] opens one, returns the index just past its end (or sql.size() if unterminated);
// otherwise 0 (sql[i] is then an ordinary `$`, as in a `$1` parameter).
size_t SkipDollarQuoted(absl::string_view sql, size_t i) {
  if (i > 0 && IsIdentChar(sql[i - 1])) {
    return 0;  // `$` inside an identifier such as a$b
  }
  size_t j = i + 1;
  if (j < sql.size() && absl::ascii_isdigit(static_cast<unsigned char>(sql[j]))) {
    return 0;
  }
  while (j < sql.size() && sql[j] != '$' && IsIdentChar(sql[j])) {
    ++j;
  }
  if (j >= sql.size() || sql[j] != '$') {
    return 0;
  }
  const absl::string_view tag = sql.substr(i, j - i + 1);
  const size_t end = sql.find(tag, j + 1);
  return end == absl::string_view::npos ? sql.size() : end + tag.size();
}

// Returns the index just past the block comment opening at sql[i] ("/*"). PostgreSQL nests them;
// SQLite does not.
size_t SkipBlockComment(absl::string_view sql, size_t i, bool nested) {
  int depth = 1;
  size_t j = i + 2;
  while (j < sql.size() && depth > 0) {
    if (sql[j] == '*' && j + 1 < sql.size() && sql[j + 1] == '/') {
      --depth;
      j += 2;
    } else if (nested && sql[j] == '/' && j + 1 < sql.size() && sql[j + 1] == '*') {
      ++depth;
      j += 2;
    } else {
      ++j;
    }
  }
  return j;
}

}  // namespace

absl::StatusOr<ParsedStatement> ParseSqlStatement(absl::string_view sql, SqlDialect dialect) {
  const bool pg = dialect == SqlDialect::kPostgres;
  ParsedStatement out;
  out.sql.reserve(sql.size() + 16);
  bool has_content = false;      // the statement has a token (not only whitespace and comments)
  bool after_semicolon = false;  // a top-level `;` ended the statement
  size_t i = 0;
  while (i < sql.size()) {
    const char c = sql[i];
    const char next = i + 1 < sql.size() ? sql[i + 1] : '\0';
    // Whitespace and comments may follow the terminating `;`; they are dropped from `out.sql`.
    size_t skip_to = 0;
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      skip_to = i + 1;
    } else if (c == '-' && next == '-') {
      const size_t eol = sql.find('\n', i);
      skip_to = eol == absl::string_view::npos ? sql.size() : eol + 1;
    } else if (c == '/' && next == '*') {
      skip_to = SkipBlockComment(sql, i, pg);
    }
    if (skip_to != 0) {
      if (!after_semicolon) {
        absl::StrAppend(&out.sql, sql.substr(i, skip_to - i));
      }
      i = skip_to;
      continue;
    }
    if (c == ';') {
      after_semicolon = true;
      ++i;
      continue;
    }
    if (after_semicolon) {
      return absl::InvalidArgumentError(
          "sql: Query takes exactly one statement (use Exec for several)");
    }
    has_content = true;

    size_t end = 0;  // past a quoted span, copied verbatim
    if (c == '\'') {
      const bool escape_string = pg && i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e') &&
                                 (i < 2 || !IsIdentChar(sql[i - 2]));
      end = SkipQuoted(sql, i, '\'', escape_string);
    } else if (c == '"') {
      end = SkipQuoted(sql, i, '"', false);
    } else if (!pg && c == '`') {
      end = SkipQuoted(sql, i, '`', false);
    } else if (!pg && c == '[') {
      end = SkipQuoted(sql, i, ']', false);
    } else if (pg && c == '$') {
      end = SkipDollarQuoted(sql, i);
    }
    if (end != 0) {
      absl::StrAppend(&out.sql, sql.substr(i, end - i));
      i = end;
      continue;
    }
    if (c == '?') {
      ++out.placeholders;
      if (pg) {
        absl::StrAppend(&out.sql, "$", out.placeholders);
      } else {
        out.sql.push_back('?');
      }
    } else {
      out.sql.push_back(c);
    }
    ++i;
  }
  if (!has_content) {
    return absl::InvalidArgumentError("sql: no statement to run");
  }
  return out;
}

}  // namespace internal

namespace {

template <auto kFree>
struct CDeleter {
  template <typename T>
  void operator()(T* p) const {
    kFree(p);
  }
};
using PgConnPtr = std::unique_ptr<PGconn, CDeleter<PQfinish>>;
using PgResultPtr = std::unique_ptr<PGresult, CDeleter<PQclear>>;
using PgConninfoPtr = std::unique_ptr<PQconninfoOption, CDeleter<PQconninfoFree>>;
using PgMemPtr = std::unique_ptr<char, CDeleter<PQfreemem>>;

// Type OIDs from PostgreSQL's src/include/catalog/pg_type.dat (stable across versions).
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kCharOid = 18;
constexpr Oid kNameOid = 19;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kTextOid = 25;
constexpr Oid kOidOid = 26;
constexpr Oid kUnknownOid = 705;
constexpr Oid kBpcharOid = 1042;
constexpr Oid kVarcharOid = 1043;

// Binary format is "network byte order" (big-endian) for the integer types.
constexpr int kBinaryFormat = 1;

absl::StatusCode CodeForSqlState(absl::string_view state) {
  if (state == "23505") {  // unique_violation
    return absl::StatusCode::kAlreadyExists;
  }
  if (state == "40001" || state == "40P01") {  // serialization_failure, deadlock_detected
    return absl::StatusCode::kAborted;
  }
  if (state == "25P02") {  // in_failed_sql_transaction
    return absl::StatusCode::kFailedPrecondition;
  }
  if (absl::StartsWith(state, "08") ||                             // connection_exception
      state == "55P03" ||                                          // lock_not_available
      state == "57P01" || state == "57P02" || state == "57P03" ||  // shutdown, cannot connect now
      state == "53300") {                                          // too_many_connections
    return absl::StatusCode::kUnavailable;
  }
  if (state == "57014") {  // query_canceled (statement_timeout)
    return absl::StatusCode::kDeadlineExceeded;
  }
  if (absl::StartsWith(state, "53")) {  // insufficient_resources: disk full, out of memory
    return absl::StatusCode::kResourceExhausted;
  }
  if (state == "XX001" || state == "XX002") {  // data_corrupted, index_corrupted
    return absl::StatusCode::kDataLoss;
  }
  return absl::StatusCode::kInternal;
}

// libpq's messages end in newlines and sometimes span lines ("...failed: FATAL:  role ...").
std::string OneLine(absl::string_view text) {
  std::string s(absl::StripAsciiWhitespace(text));
  absl::RemoveExtraAsciiWhitespace(&s);
  return s;
}

// libpq's URI parse errors quote the offending token ("invalid percent-encoded token: "..."),
// which may be (part of) the password: drop what is quoted.
std::string ElideQuoted(absl::string_view text) {
  std::string out;
  bool quoted = false;
  for (const char c : text) {
    if (c == '"') {
      quoted = !quoted;
      absl::StrAppend(&out, quoted ? "\"..." : "\"");
    } else if (!quoted) {
      out.push_back(c);
    }
  }
  return out;
}

// Where a connection goes and what must never appear in a message, from libpq's own parse of
// the URI.
struct Target {
  std::string where;                 // "host=H port=P" for messages
  std::vector<std::string> secrets;  // password, sslpassword (non-empty ones)

  std::string Scrub(absl::string_view text) const {
    std::string s = OneLine(text);
    for (const std::string& secret : secrets) {
      absl::StrReplaceAll({{secret, "***"}}, &s);
    }
    return s;
  }
};

class PostgresDb final : public SqlDb {
 public:
  PostgresDb(PgConnPtr conn, Target target) : conn_(std::move(conn)), target_(std::move(target)) {}

  SqlDialect dialect() const override { return SqlDialect::kPostgres; }
  std::string kind() const override { return "postgres"; }

  absl::StatusOr<std::vector<SqlRow>> Query(absl::string_view sql,
                                            const std::vector<SqlValue>& params) override;
  absl::Status Exec(absl::string_view sql) override;
  absl::Status Begin() override;
  absl::Status Commit() override;
  absl::Status Rollback() override;

 private:
  bool Connected() const { return PQstatus(conn_.get()) == CONNECTION_OK; }
  absl::Status EnsureConnected();
  // The Status for a failed command (`res` may be null), per the table in sql.h.
  absl::Status Error(const PGresult* res, absl::string_view what) const;
  absl::Status Lost(absl::string_view what, absl::string_view detail) const;

  PgConnPtr conn_;
  Target target_;
  bool txn_open_ = false;  // Begin succeeded and neither Commit nor Rollback has run since
};

absl::Status PostgresDb::Lost(absl::string_view what, absl::string_view detail) const {
  return absl::UnavailableError(absl::StrCat("postgres: ", what, ": connection to ", target_.where,
                                             " lost: ", target_.Scrub(detail)));
}

absl::Status PostgresDb::EnsureConnected() {
  if (Connected()) {
    return absl::OkStatus();
  }
  if (txn_open_) {
    // Reconnecting would run the rest of the transaction's statements outside it.
    return absl::UnavailableError(absl::StrCat("postgres: connection to ", target_.where,
                                               " lost during a transaction; roll back and retry"));
  }
  PQreset(conn_.get());
  if (!Connected()) {
    return absl::UnavailableError(absl::StrCat("postgres: cannot reconnect to ", target_.where,
                                               ": ", target_.Scrub(PQerrorMessage(conn_.get()))));
  }
  return absl::OkStatus();
}

absl::Status PostgresDb::Error(const PGresult* res, absl::string_view what) const {
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  if (state == nullptr) {
    // No SQLSTATE: libpq failed on its side, typically because the connection dropped.
    const char* detail = res != nullptr ? PQresultErrorMessage(res) : PQerrorMessage(conn_.get());
    if (!Connected()) {
      return Lost(what, detail);
    }
    return absl::InternalError(absl::StrCat("postgres: ", what, ": ", target_.Scrub(detail)));
  }
  const absl::StatusCode code = CodeForSqlState(state);
  if (code == absl::StatusCode::kUnavailable && !Connected()) {
    return Lost(what, PQresultErrorMessage(res));
  }
  if (absl::StartsWith(state, "22")) {
    // Data exceptions ("invalid input syntax for type integer: "..."") quote the offending value,
    // which may be a bound parameter.
    return absl::Status(code, absl::StrCat("postgres: ", what,
                                           ": invalid value for a parameter or column (SQLSTATE ",
                                           state, "; the server's message may quote the value)"));
  }
  // The primary message names tables, columns and constraints; the DETAIL line, which quotes
  // key values ("Key (id)=(42) already exists."), is left out.
  const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  return absl::Status(
      code, absl::StrCat("postgres: ", what, ": ", target_.Scrub(primary != nullptr ? primary : ""),
                         " (SQLSTATE ", state, ")"));
}

// Decodes one binary-format value of type `type` (checked by SupportedType).
absl::StatusOr<SqlValue> DecodeValue(Oid type, const char* data, int len, int column) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(data);
  auto be = [&](int width) -> absl::StatusOr<uint64_t> {
    if (len != width) {
      return absl::InternalError(absl::StrCat("postgres: column ", column, " of type OID ", type,
                                              " has ", len, " bytes, want ", width));
    }
    uint64_t v = 0;
    for (int k = 0; k < width; ++k) {
      v = (v << 8) | bytes[k];
    }
    return v;
  };
  switch (type) {
    case kInt8Oid: {
      PML_ASSIGN_OR_RETURN(const uint64_t v, be(8));
      return SqlValue(static_cast<int64_t>(v));
    }
    case kInt4Oid: {
      PML_ASSIGN_OR_RETURN(const uint64_t v, be(4));
      return SqlValue(static_cast<int64_t>(static_cast<int32_t>(static_cast<uint32_t>(v))));
    }
    case kInt2Oid: {
      PML_ASSIGN_OR_RETURN(const uint64_t v, be(2));
      return SqlValue(static_cast<int64_t>(static_cast<int16_t>(static_cast<uint16_t>(v))));
    }
    case kOidOid: {
      PML_ASSIGN_OR_RETURN(const uint64_t v, be(4));
      return SqlValue(static_cast<int64_t>(v));
    }
    case kBoolOid: {
      PML_ASSIGN_OR_RETURN(const uint64_t v, be(1));
      return SqlValue(static_cast<int64_t>(v != 0 ? 1 : 0));
    }
    case kByteaOid:
      return SqlValue(Blob{std::string(data, static_cast<size_t>(len))});
    default:  // the text types: their binary form is the text itself
      return SqlValue(std::string(data, static_cast<size_t>(len)));
  }
}

bool SupportedType(Oid type) {
  switch (type) {
    case kBoolOid:
    case kByteaOid:
    case kCharOid:
    case kNameOid:
    case kInt8Oid:
    case kInt2Oid:
    case kInt4Oid:
    case kTextOid:
    case kOidOid:
    case kUnknownOid:
    case kBpcharOid:
    case kVarcharOid:
      return true;
    default:
      return false;
  }
}

absl::StatusOr<std::vector<SqlRow>> DecodeRows(const PGresult* res) {
  const int ncols = PQnfields(res);
  for (int c = 0; c < ncols; ++c) {
    const Oid type = PQftype(res, c);
    if (!SupportedType(type)) {
      // Column names come from the SQL text (ours), never from values.
      return absl::InternalError(absl::StrCat(
          "postgres: column ", c, " (\"", PQfname(res, c), "\") has type OID ", type,
          ", which SqlValue cannot hold; cast it to bigint, text or bytea in the query"));
    }
  }
  const int nrows = PQntuples(res);
  std::vector<SqlRow> rows;
  rows.reserve(static_cast<size_t>(nrows));
  for (int r = 0; r < nrows; ++r) {
    SqlRow row;
    row.reserve(static_cast<size_t>(ncols));
    for (int c = 0; c < ncols; ++c) {
      if (PQgetisnull(res, r, c)) {
        row.emplace_back(std::monostate());
        continue;
      }
      PML_ASSIGN_OR_RETURN(SqlValue v, DecodeValue(PQftype(res, c), PQgetvalue(res, r, c),
                                                   PQgetlength(res, r, c), c));
      row.push_back(std::move(v));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::StatusOr<std::vector<SqlRow>> PostgresDb::Query(absl::string_view sql,
                                                      const std::vector<SqlValue>& params) {
  if (absl::StrContains(sql, '\0')) {
    return absl::InvalidArgumentError("postgres: query text contains a NUL byte");
  }
  PML_ASSIGN_OR_RETURN(internal::ParsedStatement parsed,
                       internal::ParseSqlStatement(sql, SqlDialect::kPostgres));
  if (static_cast<size_t>(parsed.placeholders) != params.size()) {
    return absl::InvalidArgumentError(absl::StrCat("postgres: query has ", parsed.placeholders,
                                                   " placeholders but ", params.size(),
                                                   " parameters were given"));
  }
  const size_t n = params.size();
  std::vector<Oid> types(n, 0);
  std::vector<const char*> values(n, nullptr);
  std::vector<int> lengths(n, 0);
  std::vector<int> formats(n, kBinaryFormat);
  std::vector<std::array<char, 8>> ints(n);  // big-endian int8 parameters
  for (size_t i = 0; i < n; ++i) {
    const SqlValue& p = params[i];
    if (const auto* v = std::get_if<int64_t>(&p)) {
      const auto u = static_cast<uint64_t>(*v);
      for (int k = 0; k < 8; ++k) {
        ints[i][k] = static_cast<char>((u >> (56 - 8 * k)) & 0xff);
      }
      types[i] = kInt8Oid;
      values[i] = ints[i].data();
      lengths[i] = 8;
      continue;
    }
    const std::string* bytes = nullptr;
    if (const auto* s = std::get_if<std::string>(&p)) {
      if (absl::StrContains(*s, '\0')) {
        return absl::InvalidArgumentError(absl::StrCat(
            "postgres: text parameter ", i + 1, " contains a NUL byte (bind bytes as a Blob)"));
      }
      types[i] = kTextOid;
      bytes = s;
    } else if (const auto* b = std::get_if<Blob>(&p)) {
      types[i] = kByteaOid;
      bytes = &b->bytes;
    } else {
      continue;  // NULL: no value, type left to the server
    }
    if (bytes->size() > static_cast<size_t>(INT_MAX)) {
      return absl::InvalidArgumentError(
          absl::StrCat("postgres: parameter ", i + 1, " is over 2 GiB"));
    }
    values[i] = bytes->data();  // never null, even when empty: null would mean SQL NULL
    lengths[i] = static_cast<int>(bytes->size());
  }

  PML_RETURN_IF_ERROR(EnsureConnected());
  PgResultPtr res(PQexecParams(conn_.get(), parsed.sql.c_str(), static_cast<int>(n), types.data(),
                               values.data(), lengths.data(), formats.data(), kBinaryFormat));
  switch (PQresultStatus(res.get())) {
    case PGRES_COMMAND_OK:
      return std::vector<SqlRow>();
    case PGRES_TUPLES_OK:
      return DecodeRows(res.get());
    default:
      return Error(res.get(), "query failed");
  }
}

absl::Status PostgresDb::Exec(absl::string_view sql) {
  if (absl::StrContains(sql, '\0')) {
    return absl::InvalidArgumentError("postgres: exec text contains a NUL byte");
  }
  PML_RETURN_IF_ERROR(EnsureConnected());
  const std::string text(sql);
  // PQexec returns the last statement's result, or the first error (later statements don't run).
  PgResultPtr res(PQexec(conn_.get(), text.c_str()));
  switch (PQresultStatus(res.get())) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
      return absl::OkStatus();
    default:
      return Error(res.get(), "exec failed");
  }
}

absl::Status PostgresDb::Begin() {
  if (txn_open_) {
    return absl::FailedPreconditionError(
        "postgres: a transaction is already open (transactions do not nest)");
  }
  PML_RETURN_IF_ERROR(EnsureConnected());
  PgResultPtr res(PQexec(conn_.get(), "BEGIN ISOLATION LEVEL SERIALIZABLE"));
  if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    return Error(res.get(), "cannot begin transaction");
  }
  txn_open_ = true;
  return absl::OkStatus();
}

absl::Status PostgresDb::Commit() {
  if (!txn_open_) {
    return absl::FailedPreconditionError("postgres: commit without an open transaction");
  }
  txn_open_ = false;  // COMMIT ends the transaction on the server, whether it succeeds or not
  if (!Connected()) {
    return absl::UnavailableError(absl::StrCat("postgres: connection to ", target_.where,
                                               " lost; the transaction was rolled back"));
  }
  switch (PQtransactionStatus(conn_.get())) {
    case PQTRANS_INTRANS:
      break;
    case PQTRANS_INERROR: {
      // COMMIT would answer "ROLLBACK" with success; say what happened instead.
      PgResultPtr res(PQexec(conn_.get(), "ROLLBACK"));
      // A failed ROLLBACK leaves the connection broken, and the server then rolls back itself.
      return absl::FailedPreconditionError(
          "postgres: transaction aborted by an earlier error; rolled back");
    }
    default:
      return absl::FailedPreconditionError(
          "postgres: the transaction was ended outside Commit/Rollback");
  }
  PgResultPtr res(PQexec(conn_.get(), "COMMIT"));
  if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    if (!Connected()) {
      return absl::UnavailableError(
          absl::StrCat("postgres: connection to ", target_.where,
                       " lost during COMMIT; whether the transaction committed is unknown: ",
                       target_.Scrub(PQresultErrorMessage(res.get()))));
    }
    return Error(res.get(), "cannot commit");
  }
  if (std::strcmp(PQcmdStatus(res.get()), "ROLLBACK") == 0) {
    return absl::FailedPreconditionError("postgres: the server rolled the transaction back");
  }
  return absl::OkStatus();
}

absl::Status PostgresDb::Rollback() {
  txn_open_ = false;
  // A lost connection has no transaction left: the server rolled it back.
  if (!Connected() || PQtransactionStatus(conn_.get()) == PQTRANS_IDLE) {
    return absl::OkStatus();
  }
  PgResultPtr res(PQexec(conn_.get(), "ROLLBACK"));
  if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    return Error(res.get(), "cannot roll back");
  }
  return absl::OkStatus();
}

void DiscardNotice(void* /*arg*/, const char* /*message*/) {}

}  // namespace

absl::StatusOr<std::unique_ptr<SqlDb>> OpenPostgresDb(absl::string_view url) {
  if (!absl::StartsWith(url, "postgres://") && !absl::StartsWith(url, "postgresql://")) {
    return absl::InvalidArgumentError(
        "postgres: the URL must start with postgres:// or postgresql://");
  }
  if (absl::StrContains(url, '\0')) {
    return absl::InvalidArgumentError("postgres: the URL contains a NUL byte");
  }
  const std::string conninfo(url);

  // Parse first, so that a malformed URI is kInvalidArgument and messages can name the target.
  char* raw_err = nullptr;
  PgConninfoPtr options(PQconninfoParse(conninfo.c_str(), &raw_err));
  PgMemPtr err(raw_err);
  if (options == nullptr) {
    if (err == nullptr) {
      return absl::ResourceExhaustedError("postgres: out of memory parsing the URL");
    }
    return absl::InvalidArgumentError(absl::StrCat("postgres: malformed connection URI ",
                                                   RedactDbUrl(url), ": ",
                                                   ElideQuoted(OneLine(err.get()))));
  }
  std::string host, hostaddr, port;
  Target target;
  for (const PQconninfoOption* o = options.get(); o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0') {
      continue;
    }
    const absl::string_view key = o->keyword;
    if (key == "host") {
      host = o->val;
    } else if (key == "hostaddr") {
      hostaddr = o->val;
    } else if (key == "port") {
      port = o->val;
    } else if (key == "password" || key == "sslpassword") {
      target.secrets.emplace_back(o->val);
    }
  }
  target.where = absl::StrCat("host=",
                              !host.empty()       ? host
                              : !hostaddr.empty() ? hostaddr
                                                  : "(default)",
                              " port=", !port.empty() ? port : "5432");
  target.where = target.Scrub(target.where);

  // Keywords are applied in order and the URI (the expanded dbname) overrides the ones before it.
  const char* const keywords[] = {"fallback_application_name", "connect_timeout", "dbname",
                                  "client_encoding", nullptr};
  const char* const values[] = {"pml", "10", conninfo.c_str(), "UTF8", nullptr};
  PgConnPtr conn(PQconnectdbParams(keywords, values, /*expand_dbname=*/1));
  if (conn == nullptr) {
    return absl::ResourceExhaustedError("postgres: out of memory allocating a connection");
  }
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return absl::UnavailableError(absl::StrCat("postgres: cannot connect to ", target.where, ": ",
                                               target.Scrub(PQerrorMessage(conn.get()))));
  }
  PQsetNoticeProcessor(conn.get(), DiscardNotice, nullptr);
  return std::make_unique<PostgresDb>(std::move(conn), std::move(target));
}

}  // namespace pml::store
