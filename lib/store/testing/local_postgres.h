#pragma once
// A throwaway PostgreSQL server for tests: a fresh cluster in a temp dir, reachable only through a
// unix socket in that dir, torn down (and the dir removed) by the destructor. Uses the server
// binaries of Debian's `postgresql` package (/usr/lib/postgresql/<version>/bin, version 15
// preferred, or $PML_POSTGRES_BINDIR). PostgreSQL refuses to run as root, so under euid 0 the
// server runs as the `postgres` user (via runuser) and the temp dir is chowned to it.
//
// The cluster lives in /dev/shm when that is a tmpfs with room (else $TMPDIR): initdb is several
// times faster there. initdb runs once per machine and server version: its result is kept as a
// template, $TMPDIR/pml_pg_template_<euid>_<bindir> (about 40 MB, owned by the server user), that
// later Starts copy in a fraction of a second (ctest runs each test case in its own process).
// Deleting the template is always safe; a damaged one is replaced.
//
// Typical use, one server per test suite (initdb takes about a second):
//   static void SetUpTestSuite() {
//     auto pg = LocalPostgres::Start();
//     if (pg.status().code() == absl::StatusCode::kUnavailable) -> GTEST_SKIP() << pg.status();
//   }
// then OpenSqlDb(pg->url()). The database is `postgres`, the superuser `postgres` (trust auth).

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pml::store {

class LocalPostgres {
 public:
  // initdb (or a copy of the template) + pg_ctl start (fsync off: the data is disposable). Errors:
  // kUnavailable when the server binaries (or, as root, the postgres user or runuser) are missing,
  // with what to install; kInternal when initdb or the server fails, with the tail of its log.
  // Blocks until the server accepts connections. Thread-safe.
  static absl::StatusOr<std::unique_ptr<LocalPostgres>> Start();

  // "postgresql:///postgres?host=<dir>&port=<n>&user=postgres": for OpenSqlDb, or psql.
  const std::string& url() const { return url_; }
  // The temp dir holding the cluster (data/), the socket and the logs.
  const std::string& dir() const { return dir_; }

  // Stops the server (pg_ctl stop -m immediate) and removes the temp dir. Open connections
  // then fail with kUnavailable. A watcher process does the same if the test process dies
  // without running this (a crash, a ctest timeout that spares the process's children).
  ~LocalPostgres();

  LocalPostgres(const LocalPostgres&) = delete;
  LocalPostgres& operator=(const LocalPostgres&) = delete;

 private:
  struct ServerUser {
    std::string bindir;    // holds initdb, pg_ctl
    bool as_root = false;  // run the tools as the postgres user (via runuser)
    uid_t uid = 0;         // who owns the cluster
    gid_t gid = 0;
  };

  LocalPostgres(ServerUser server, std::string dir)
      : server_(std::move(server)), dir_(std::move(dir)) {}

  // One attempt of Start, using the template at `template_path` when there is a usable one
  // (sets *from_template) and publishing one after an initdb otherwise ("" for neither).
  static absl::StatusOr<std::unique_ptr<LocalPostgres>> StartCluster(
      const ServerUser& server, const std::string& template_path, bool* from_template);
  // Starts the process that stops the server and removes dir_ when this object or this process
  // goes away.
  absl::Status StartWatcher();
  void PublishTemplate(const std::string& data, const std::string& template_path) const;
  // Runs argv (as the postgres user when root) in dir_, output to `log`; returns the exit code.
  absl::StatusOr<int> RunAsServerUser(std::vector<std::string> argv, const std::string& log) const;
  // Runs one of the server binaries.
  absl::StatusOr<int> RunTool(absl::string_view tool, const std::vector<std::string>& args,
                              const std::string& log) const;

  ServerUser server_;
  std::string dir_;
  int watch_fd_ = -1;  // write end of the watcher's pipe: closing it triggers the cleanup
  pid_t watcher_pid_ = -1;
  std::string url_;
};

}  // namespace pml::store
