#include "lib/store/testing/local_postgres.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/memory/memory.h"
#include "absl/strings/ascii.h"
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

// Where the cluster goes: /dev/shm when it is a tmpfs with room (initdb there takes a third of
// the time it takes on a disk), else $TMPDIR, else /tmp. Unix socket paths are limited to 107
// bytes, so a long $TMPDIR is passed over too.
std::string BaseDir() {
  constexpr uint64_t kMinFreeBytes = 512ull << 20;  // a cluster is ~40 MB, WAL grows in 16 MB
  struct statvfs vfs {};
  if (::access("/dev/shm", W_OK | X_OK) == 0 && ::statvfs("/dev/shm", &vfs) == 0 &&
      static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize >= kMinFreeBytes) {
    return "/dev/shm";
  }
  std::error_code ec;
  std::string base = fs::temp_directory_path(ec).string();
  if (ec || base.size() > 64) {
    base = "/tmp";
  }
  return base;
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

// Starts argv[0] (found through PATH when it has no slash) in directory `cwd`, with stdin from
// `stdin_fd` (/dev/null when -1) and stdout+stderr appended to `log`, and no other descriptor
// of ours (a server must not hold, say, ctest's output pipe). posix_spawn rather than fork: the
// test process has threads.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, int stdin_fd,
                            const std::string& log, const std::string& cwd) {
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
  const bool stdin_ok =
      stdin_fd >= 0 ? posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0) == 0
                    : posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0) == 0;
  if (!stdin_ok ||
      posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                       0644) != 0 ||
      posix_spawn_file_actions_adddup2(&actions, 1, 2) != 0 ||
      posix_spawn_file_actions_addclosefrom_np(&actions, 3) != 0 ||
      posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str()) != 0) {
    return absl::InternalError("local postgres: cannot set up posix_spawn file actions");
  }
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("local postgres: cannot run ", argv[0], ": ", ErrnoText(rc)));
  }
  return pid;
}

// Waits for `pid`; returns its exit status (-1 when a signal ended it).
absl::StatusOr<int> Wait(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return absl::InternalError(absl::StrCat("local postgres: waitpid: ", ErrnoText(errno)));
    }
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

absl::StatusOr<int> LocalPostgres::RunAsServerUser(std::vector<std::string> argv,
                                                   const std::string& log) const {
  if (server_.as_root) {
    PML_ASSIGN_OR_RETURN(std::string runuser, FindRunuser());
    argv.insert(argv.begin(), {runuser, "-u", kServerUser, "--"});
  }
  // The server user may not be allowed into our working directory; the temp dir is its own.
  PML_ASSIGN_OR_RETURN(const pid_t pid, Spawn(argv, -1, log, dir_));
  return Wait(pid);
}

absl::StatusOr<int> LocalPostgres::RunTool(absl::string_view tool,
                                           const std::vector<std::string>& args,
                                           const std::string& log) const {
  std::vector<std::string> argv = {absl::StrCat(server_.bindir, "/", tool)};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunAsServerUser(std::move(argv), log);
}

namespace {

// initdb takes a second or more, a copy of its result a fraction of that, and ctest runs each
// test case in its own process: the first Start publishes a pristine cluster as a template in
// the temp dir (keyed by user and server version), and later ones copy it. Only a template
// owned by the server user and writable by no one else is used.
std::string TemplatePath(const std::string& bindir) {
  std::error_code ec;
  std::string base = fs::temp_directory_path(ec).string();
  if (ec) {
    base = "/tmp";
  }
  std::string key = bindir;  // e.g. /usr/lib/postgresql/15/bin -> _usr_lib_postgresql_15_bin
  std::replace_if(
      key.begin(), key.end(),
      [](char c) { return !absl::ascii_isalnum(static_cast<unsigned char>(c)); }, '_');
  return absl::StrCat(base, "/pml_pg_template_", ::geteuid(), key);
}

bool TemplateUsable(const std::string& path, uid_t server_uid) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == server_uid &&
         (st.st_mode & 022) == 0 && core::PathExists(path + "/complete");
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalPostgres>> LocalPostgres::Start() {
  PML_ASSIGN_OR_RETURN(std::string bindir, FindBinDir());
  ServerUser server{.bindir = std::move(bindir), .as_root = ::geteuid() == 0};
  server.uid = ::geteuid();
  server.gid = ::getegid();
  if (server.as_root) {
    PML_RETURN_IF_ERROR(FindRunuser().status());
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r(kServerUser, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
      return absl::UnavailableError(
          "local postgres: running as root, and there is no `postgres` user to run the server as "
          "(the postgresql package creates it)");
    }
    server.uid = pw.pw_uid;
    server.gid = pw.pw_gid;
  }
  const std::string template_path = TemplatePath(server.bindir);
  bool from_template = false;
  absl::StatusOr<std::unique_ptr<LocalPostgres>> pg =
      StartCluster(server, template_path, &from_template);
  if (!pg.ok() && from_template) {
    // A damaged template (say, a temp-dir cleaner took some of its files): drop it, start afresh.
    std::error_code ec;
    fs::remove_all(template_path, ec);
    pg = StartCluster(server, template_path, &from_template);
  }
  return pg;
}

absl::StatusOr<std::unique_ptr<LocalPostgres>> LocalPostgres::StartCluster(
    const ServerUser& server, const std::string& template_path, bool* from_template) {
  *from_template = false;
  const std::string base = BaseDir();
  std::string dir = absl::StrCat(base, "/pml_pg_XXXXXX");
  if (::mkdtemp(dir.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("local postgres: mkdtemp in ", base, ": ", ErrnoText(errno)));
  }
  // From here on the destructor removes the dir (and stops the server once started).
  // WrapUnique: the constructor is private.
  std::unique_ptr<LocalPostgres> pg = absl::WrapUnique(new LocalPostgres(server, dir));
  if (server.as_root && ::chown(dir.c_str(), server.uid, server.gid) != 0) {
    return absl::InternalError(
        absl::StrCat("local postgres: cannot chown ", dir, ": ", ErrnoText(errno)));
  }
  PML_RETURN_IF_ERROR(pg->StartWatcher());

  const std::string data = dir + "/data";
  if (!template_path.empty() && TemplateUsable(template_path, server.uid)) {
    absl::StatusOr<int> rc =
        pg->RunAsServerUser({"cp", "-a", template_path + "/data", data}, dir + "/cp.log");
    *from_template = rc.ok() && *rc == 0;
    if (!*from_template) {
      std::error_code ec;
      fs::remove_all(data, ec);
    }
  }
  if (!*from_template) {
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
    if (!template_path.empty()) {
      pg->PublishTemplate(data, template_path);
    }
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

void LocalPostgres::PublishTemplate(const std::string& data,
                                    const std::string& template_path) const {
  // Best effort: without a template, the next Start runs initdb again. Copy to a fresh dir, mark
  // it complete, and rename it into place, so no one ever sees half a template; when another
  // process published first, the rename fails and the copy is dropped.
  std::string tmp = template_path + "_tmp_XXXXXX";
  if (::mkdtemp(tmp.data()) == nullptr) {
    return;
  }
  bool published = false;
  if (!server_.as_root || ::chown(tmp.c_str(), server_.uid, server_.gid) == 0) {
    absl::StatusOr<int> rc = RunAsServerUser({"cp", "-a", data, tmp + "/data"}, dir_ + "/cp.log");
    published = rc.ok() && *rc == 0 && core::WriteFileAtomic(tmp + "/complete", "", 0600).ok() &&
                ::rename(tmp.c_str(), template_path.c_str()) == 0;
  }
  if (!published) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
  }
}

// The cleanup runs in a watcher process that waits for the end of a pipe only this process
// holds: the destructor closes it, and so does the kernel when a crash or a kill ends the test
// process, so no server outlives its test (which matters most for the tests that fail).
absl::Status LocalPostgres::StartWatcher() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("local postgres: pipe: ", ErrnoText(errno)));
  }
  absl::Cleanup close_read = [fd = fds[0]] { ::close(fd); };
  watch_fd_ = fds[1];
  // $1: the dir; the rest: the stop command. If the stop fails, kill the postmaster named in its
  // pid file (its backends exit when they notice it is gone).
  constexpr char kScript[] =
      "dir=$1; shift; cat >/dev/null; "
      "\"$@\" || { read -r pid < \"$dir/data/postmaster.pid\" && kill -9 \"$pid\"; }; "
      "rm -rf \"$dir\"";
  std::vector<std::string> argv = {"sh", "-c", kScript, "sh", dir_};
  if (server_.as_root) {
    PML_ASSIGN_OR_RETURN(std::string runuser, FindRunuser());
    argv.insert(argv.end(), {runuser, "-u", kServerUser, "--"});
  }
  argv.insert(argv.end(), {absl::StrCat(server_.bindir, "/pg_ctl"), "-D", dir_ + "/data", "-m",
                           "immediate", "-w", "-t", "30", "-s", "stop"});
  // cwd "/": the dir is removed under the watcher's feet.
  PML_ASSIGN_OR_RETURN(watcher_pid_, Spawn(argv, fds[0], "/dev/null", "/"));
  return absl::OkStatus();
}

LocalPostgres::~LocalPostgres() {
  if (watch_fd_ >= 0) {
    ::close(watch_fd_);
  }
  if (watcher_pid_ > 0) {
    // The watcher stops the server and removes the dir; a failure cannot be reported from here.
    Wait(watcher_pid_).IgnoreError();
  } else {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

}  // namespace pml::store
