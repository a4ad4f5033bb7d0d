#include "lib/store/testing/local_postgres.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/memory/memory.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/core/file.h"
#include "lib/core/status.h"

extern char** environ;

namespace pml::store {
namespace {

namespace fs = std::filesystem;

constexpr char kPreferredBinDir[] = "/usr/lib/postgresql/15/bin";
constexpr char kServerUser[] = "postgres";

std::string ErrnoText(int err) {
  char buf[128];
  return ::strerror_r(err, buf, sizeof(buf));
}

bool IsExecutable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

bool HasServerTools(const std::string& dir) {
  return IsExecutable(dir + "/initdb") && IsExecutable(dir + "/pg_ctl");
}

// $PML_POSTGRES_BINDIR, else version 15, else the newest /usr/lib/postgresql/<n>/bin.
absl::StatusOr<std::string> FindBinDir() {
  // Test support: nothing in a test process sets the environment concurrently.
  const char* env = std::getenv("PML_POSTGRES_BINDIR");  // NOLINT(concurrency-mt-unsafe)
  if (env != nullptr && *env != '\0') {
    if (HasServerTools(env)) {
      return std::string(env);
    }
    return absl::UnavailableError(
        absl::StrCat("local postgres: PML_POSTGRES_BINDIR=", env, " has no initdb and pg_ctl"));
  }
  if (HasServerTools(kPreferredBinDir)) {
    return std::string(kPreferredBinDir);
  }
  int best_version = -1;
  std::string best;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    int version = 0;
    const std::string bin = (entry.path() / "bin").string();
    if (absl::SimpleAtoi(entry.path().filename().string(), &version) && version > best_version &&
        HasServerTools(bin)) {
      best_version = version;
      best = bin;
    }
  }
  if (best_version < 0) {
    return absl::UnavailableError(
        "local postgres: no PostgreSQL server binaries (initdb, pg_ctl) in "
        "/usr/lib/postgresql/*/bin; install the `postgresql` package (scripts/install-deps.sh) "
        "or set PML_POSTGRES_BINDIR");
  }
  return best;
}

absl::StatusOr<std::string> FindRunuser() {
  for (const char* path : {"/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"}) {
    if (IsExecutable(path)) {
      return std::string(path);
    }
  }
  return absl::UnavailableError(
      "local postgres: running as root needs runuser (util-linux) to start the server as the "
      "postgres user");
}

// A port number nobody listens on now. The server listens only on its unix socket, whose name
// carries the port; a distinct number also keeps its System V shared memory key apart.
absl::StatusOr<int> PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("local postgres: socket: ", ErrnoText(errno)));
  }
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::InternalError(absl::StrCat("local postgres: bind: ", ErrnoText(errno)));
  }
  return static_cast<int>(ntohs(addr.sin_port));
}

// The last lines of a log, for error messages.
std::string LogTail(const std::string& path) {
  absl::StatusOr<std::string> text = core::ReadFile(path, 1 << 20);
  if (!text.ok()) {
    return absl::StrCat("(no log: ", text.status().message(), ")");
  }
  std::vector<absl::string_view> lines =
      absl::StrSplit(absl::StripTrailingAsciiWhitespace(*text), '\n');
  constexpr size_t kLines = 15;
  if (lines.size() > kLines) {
    lines.erase(lines.begin(), lines.end() - kLines);
  }
  return absl::StrJoin(lines, " | ");
}

absl::Status AppendToFile(const std::string& path, absl::string_view text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("local postgres: cannot open ", path, ": ", ErrnoText(errno)));
  }
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return absl::InternalError(
          absl::StrCat("local postgres: cannot write ", path, ": ", ErrnoText(errno)));
    }
    text.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Runs argv[0] (found through PATH when it has no slash) with stdin from /dev/null and
// stdout+stderr appended to `log`, in directory `cwd`; returns its exit status (-1 when killed by
// a signal). posix_spawn rather than fork: the test process has threads.
absl::StatusOr<int> Run(const std::vector<std::string>& argv, const std::string& log,
                        const std::string& cwd) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  if (posix_spawn_file_actions_init(&actions) != 0) {
    return absl::InternalError("local postgres: posix_spawn_file_actions_init failed");
  }
  absl::Cleanup destroy = [&actions] { posix_spawn_file_actions_destroy(&actions); };
  if (posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0) != 0 ||
      posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                       0644) != 0 ||
      posix_spawn_file_actions_adddup2(&actions, 1, 2) != 0 ||
      posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str()) != 0) {
    return absl::InternalError("local postgres: cannot set up posix_spawn file actions");
  }
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("local postgres: cannot run ", argv[0], ": ", ErrnoText(rc)));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return absl::InternalError(absl::StrCat("local postgres: waitpid: ", ErrnoText(errno)));
    }
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

absl::StatusOr<int> LocalPostgres::RunTool(absl::string_view tool,
                                           const std::vector<std::string>& args,
                                           const std::string& log) const {
  std::vector<std::string> argv;
  if (as_postgres_user_) {
    PML_ASSIGN_OR_RETURN(std::string runuser, FindRunuser());
    argv = {runuser, "-u", kServerUser, "--"};
  }
  argv.push_back(absl::StrCat(bindir_, "/", tool));
  argv.insert(argv.end(), args.begin(), args.end());
  // The server user may not be allowed into our working directory; the temp dir is its own.
  return Run(argv, log, dir_);
}

absl::StatusOr<std::unique_ptr<LocalPostgres>> LocalPostgres::Start() {
  PML_ASSIGN_OR_RETURN(std::string bindir, FindBinDir());
  const bool as_root = ::geteuid() == 0;
  uid_t uid = 0;
  gid_t gid = 0;
  if (as_root) {
    PML_RETURN_IF_ERROR(FindRunuser().status());
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r(kServerUser, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
      return absl::UnavailableError(
          "local postgres: running as root, and there is no `postgres` user to run the server as "
          "(the postgresql package creates it)");
    }
    uid = pw.pw_uid;
    gid = pw.pw_gid;
  }

  // Unix socket paths are limited to 107 bytes: keep the dir short.
  std::error_code ec;
  std::string base = fs::temp_directory_path(ec).string();
  if (ec || base.size() > 64) {
    base = "/tmp";
  }
  std::string dir = absl::StrCat(base, "/pml_pg_XXXXXX");
  if (::mkdtemp(dir.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("local postgres: mkdtemp in ", base, ": ", ErrnoText(errno)));
  }
  // From here on the destructor removes the dir (and stops the server once started).
  // WrapUnique: the constructor is private.
  std::unique_ptr<LocalPostgres> pg =
      absl::WrapUnique(new LocalPostgres(std::move(bindir), dir, as_root));
  if (as_root && ::chown(dir.c_str(), uid, gid) != 0) {
    return absl::InternalError(
        absl::StrCat("local postgres: cannot chown ", dir, ": ", ErrnoText(errno)));
  }

  const std::string data = dir + "/data";
  const std::string initdb_log = dir + "/initdb.log";
  PML_ASSIGN_OR_RETURN(const int initdb_rc,
                       pg->RunTool("initdb",
                                   {"-D", data, "-U", kServerUser, "-A", "trust", "-E", "UTF8",
                                    "--locale=C", "--no-sync", "--no-instructions"},
                                   initdb_log));
  if (initdb_rc != 0) {
    return absl::InternalError(absl::StrCat("local postgres: initdb failed (exit ", initdb_rc,
                                            "): ", LogTail(initdb_log)));
  }

  PML_ASSIGN_OR_RETURN(const int port, PickFreePort());
  PML_RETURN_IF_ERROR(AppendToFile(
      data + "/postgresql.conf",
      absl::StrCat("\n# pml LocalPostgres: unix socket only, durability off (throwaway data)\n",
                   "listen_addresses = ''\n", "port = ", port, "\n", "unix_socket_directories = '",
                   dir, "'\n", "fsync = off\n", "synchronous_commit = off\n",
                   "full_page_writes = off\n", "shared_buffers = 16MB\n",
                   "max_connections = 30\n")));

  const std::string server_log = dir + "/server.log";
  pg->started_ = true;
  PML_ASSIGN_OR_RETURN(
      const int start_rc,
      pg->RunTool("pg_ctl", {"-D", data, "-l", server_log, "-w", "-t", "60", "-s", "start"},
                  dir + "/pg_ctl.log"));
  if (start_rc != 0) {
    return absl::InternalError(absl::StrCat("local postgres: pg_ctl start failed (exit ", start_rc,
                                            "): ", LogTail(dir + "/pg_ctl.log"), " | ",
                                            LogTail(server_log)));
  }
  pg->url_ =
      absl::StrCat("postgresql:///postgres?host=", dir, "&port=", port, "&user=", kServerUser);
  return pg;
}

LocalPostgres::~LocalPostgres() {
  if (started_) {
    const std::string data = dir_ + "/data";
    absl::StatusOr<int> rc =
        RunTool("pg_ctl", {"-D", data, "-m", "immediate", "-w", "-t", "30", "-s", "stop"},
                dir_ + "/pg_ctl.log");
    if (!rc.ok() || *rc != 0) {
      // Last resort, so that no server outlives the test: kill the postmaster named in its pid
      // file (its backends exit when they notice it is gone).
      absl::StatusOr<std::string> pid_file = core::ReadFile(data + "/postmaster.pid", 4096);
      int pid = 0;
      if (pid_file.ok()) {
        const absl::string_view first_line = *pid_file;
        if (absl::SimpleAtoi(first_line.substr(0, first_line.find('\n')), &pid) && pid > 1) {
          ::kill(pid, SIGKILL);
        }
      }
    }
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);  // best effort: a destructor cannot report
}

}  // namespace pml::store
