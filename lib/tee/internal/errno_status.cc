#include "lib/tee/internal/errno_status.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace pml::tee::internal {
namespace {

// strerror is not thread-safe; glibc's strerror_r (the GNU variant, g++ defines _GNU_SOURCE)
// returns a pointer to either `buf` or a static string.
std::string ErrnoText(int err) {
  char buf[128];
  return std::string(strerror_r(err, buf, sizeof(buf)));
}

}  // namespace

absl::Status ErrnoToStatus(int err, absl::string_view what, absl::string_view path) {
  const std::string msg = path.empty() ? absl::StrCat(what, ": ", ErrnoText(err))
                                       : absl::StrCat(what, " ", path, ": ", ErrnoText(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EBUSY:
    case EAGAIN:  // == EWOULDBLOCK on Linux
    case EINTR:
    case ETIMEDOUT:
    case EIO:
      return absl::UnavailableError(msg);
    case ENXIO:
    case ENODEV:
    case ENOTTY:
    case EOPNOTSUPP:
      return absl::FailedPreconditionError(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    case EEXIST:
      return absl::AlreadyExistsError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace pml::tee::internal
