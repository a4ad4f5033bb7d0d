#pragma once
// A throwaway PostgreSQL server for tests: a fresh cluster in a temp dir, reachable only through a
// unix socket in that dir, torn down (and the dir removed) by the destructor. Uses the server
// binaries of Debian's `postgresql` package (/usr/lib/postgresql/<version>/bin, version 15
// preferred, or $PML_POSTGRES_BINDIR). PostgreSQL refuses to run as root, so under euid 0 the
// server runs as the `postgres` user (via runuser) and the temp dir is chowned to it.
//
// Typical use, one server per test suite (initdb takes about a second):
//   static void SetUpTestSuite() {
//     auto pg = LocalPostgres::Start();
//     if (pg.status().code() == absl::StatusCode::kUnavailable) -> GTEST_SKIP() << pg.status();
//   }
// then OpenSqlDb(pg->url()). The database is `postgres`, the superuser `postgres` (trust auth).

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pml::store {

class LocalPostgres {
 public:
  // initdb + pg_ctl start (fsync off: the data is disposable). Errors: kUnavailable when the
  // server binaries (or, as root, the postgres user or runuser) are missing, with what to install;
  // kInternal when initdb or the server fails, with the tail of its log. Blocks until the server
  // accepts connections. Thread-safe.
  static absl::StatusOr<std::unique_ptr<LocalPostgres>> Start();

  // "postgresql:///postgres?host=<dir>&port=<n>&user=postgres": for OpenSqlDb, or psql.
  const std::string& url() const { return url_; }
  // The temp dir holding the cluster (data/), the socket and the logs.
  const std::string& dir() const { return dir_; }

  // Stops the server (pg_ctl stop -m immediate) and removes the temp dir. Open connections
  // then fail with kUnavailable.
  ~LocalPostgres();

  LocalPostgres(const LocalPostgres&) = delete;
  LocalPostgres& operator=(const LocalPostgres&) = delete;

 private:
  LocalPostgres(std::string bindir, std::string dir, bool as_postgres_user)
      : bindir_(std::move(bindir)), dir_(std::move(dir)), as_postgres_user_(as_postgres_user) {}

  // Runs one of the server binaries (as the postgres user when root), output to `log`.
  absl::StatusOr<int> RunTool(absl::string_view tool, const std::vector<std::string>& args,
                              const std::string& log) const;

  std::string bindir_;
  std::string dir_;
  bool as_postgres_user_;
  bool started_ = false;  // pg_ctl start ran (perhaps partly): the destructor stops the server
  std::string url_;
};

}  // namespace pml::store
