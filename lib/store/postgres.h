#pragma once
// The PostgreSQL backend of SqlDb (sql.h), over libpq. <libpq-fe.h> stays in postgres.cc: callers
// get a SqlDb. Use OpenSqlDb (sql.h), which calls OpenPostgresDb for postgres:// URLs.
//
// Wire details: every Query goes through PQexecParams with typed binary parameters (int8, text,
// bytea; NULL untyped) and binary results decoded by column type OID; Exec goes through PQexec.
// Notices (e.g. "relation already exists, skipping") are discarded, never printed.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/store/sql.h"

namespace pml::store {

// Connects to the PostgreSQL server named by `url` ("postgres://..." or "postgresql://...", a
// libpq connection URI) and returns the connection. connect_timeout defaults to 10 s unless the
// URI sets it; client_encoding is forced to UTF8. Errors: kInvalidArgument when `url` is not a
// well-formed postgres URI; kUnavailable when the server cannot be reached or refuses the
// connection (the message names host and port and gives libpq's reason, never the password).
// Thread-safe (each call makes its own connection).
absl::StatusOr<std::unique_ptr<SqlDb>> OpenPostgresDb(absl::string_view url);

namespace internal {

// Shared by both backends (sql.cc, postgres.cc); not for callers.
struct ParsedStatement {
  std::string sql;       // the input, with `?` rewritten to $1, $2, ... for kPostgres
  int placeholders = 0;  // how many `?` placeholders it holds
};

// Scans `sql` as `dialect` does: `?` outside string literals ('...', and for PostgreSQL E'...'
// and $tag$...$tag$), quoted identifiers ("...", and for SQLite `...` and [...]) and comments
// (-- and /* */, nested for PostgreSQL) is a placeholder. kInvalidArgument when `sql` holds no
// statement, or more than one (anything but whitespace and comments after a top-level `;`).
// An unterminated literal or comment is left for the database to report. Pure and thread-safe.
absl::StatusOr<ParsedStatement> ParseSqlStatement(absl::string_view sql, SqlDialect dialect);

}  // namespace internal
}  // namespace pml::store
