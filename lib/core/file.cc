#include "lib/core/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"

namespace pml::core {
namespace {

absl::Status ErrnoStatus(int err, absl::string_view what, absl::string_view path) {
  // strerror is not thread-safe; the error category's message (the same text) is.
  const std::string msg = absl::StrCat(what, " ", path, ": ", std::generic_category().message(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// Reads `fd` (opened from `path`) to its end, refusing more than `max_bytes`.
absl::StatusOr<std::string> ReadAll(int fd, absl::string_view path, size_t max_bytes) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "cannot read", path);
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("file ", path, " is larger than ", max_bytes, " bytes"));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> ReadFile(absl::string_view path, size_t max_bytes) {
  const std::string p(path);
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoStatus(errno, "cannot open", path);
  }
  absl::Cleanup closer = [fd] { ::close(fd); };
  return ReadAll(fd, path, max_bytes);
}

absl::StatusOr<std::string> ReadRegularFile(absl::string_view path, size_t max_bytes) {
  const std::string p(path);
  // O_NONBLOCK: opening a FIFO must not wait for a writer. O_NOCTTY: a terminal device must not
  // become the controlling terminal.
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    return ErrnoStatus(errno, "cannot open", path);
  }
  absl::Cleanup closer = [fd] { ::close(fd); };
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return ErrnoStatus(errno, "cannot stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file"));
  }
  return ReadAll(fd, path, max_bytes);
}

absl::StatusOr<std::vector<uint8_t>> ReadFileBytes(absl::string_view path, size_t max_bytes) {
  auto s = ReadFile(path, max_bytes);
  if (!s.ok()) return s.status();
  return std::vector<uint8_t>(s->begin(), s->end());
}

absl::Status WriteFileAtomic(absl::string_view path, absl::string_view data, mode_t mode) {
  const std::filesystem::path target{std::string(path)};
  std::filesystem::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  std::string tmpl = (dir / ("." + target.filename().string() + ".tmpXXXXXX")).string();
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0) return ErrnoStatus(errno, "cannot create temp file for", path);
  bool renamed = false;
  absl::Cleanup cleanup = [&] {
    if (!renamed) ::unlink(tmpl.c_str());
  };
  {
    absl::Cleanup closer = [fd] { ::close(fd); };
    if (::fchmod(fd, mode) != 0) return ErrnoStatus(errno, "cannot chmod", tmpl);
    size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "cannot write", tmpl);
      }
      off += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0) return ErrnoStatus(errno, "cannot fsync", tmpl);
  }
  if (::rename(tmpl.c_str(), target.c_str()) != 0) {
    return ErrnoStatus(errno, "cannot rename into", path);
  }
  renamed = true;
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::Status MakeDirs(absl::string_view path, mode_t mode) {
  std::error_code ec;
  const std::filesystem::path p{std::string(path)};
  if (std::filesystem::is_directory(p, ec)) return absl::OkStatus();
  std::filesystem::path cur;
  for (const auto& part : p) {
    cur /= part;
    if (std::filesystem::is_directory(cur, ec)) continue;
    if (::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) {
      return ErrnoStatus(errno, "cannot create directory", cur.string());
    }
  }
  return absl::OkStatus();
}

bool PathExists(absl::string_view path) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::path{std::string(path)}, ec);
}

}  // namespace pml::core
