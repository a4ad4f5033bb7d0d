#pragma once
// errno → absl::Status for the hardware TEE back ends (configfs-tsm, /dev/tdx_guest, the TDX
// measurement registers in sysfs). Only sibling files in lib/tee include this.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace pml::tee::internal {

// Maps the errno values those kernel interfaces return to canonical codes. The message is
// "<what> <path>: <strerror>" (path may be empty).
//   ENOENT, ENOTDIR                       kNotFound (callers turn a missing interface into
//                                         kFailedPrecondition with what is missing)
//   EBUSY, EAGAIN, EINTR, ETIMEDOUT, EIO  kUnavailable: the TSM is busy, or the quote service
//                                         (QGS) did not answer; a retry is safe
//   ENXIO, ENODEV, ENOTTY, EOPNOTSUPP     kFailedPrecondition: no TEE provider behind the path
//   EACCES, EPERM, EROFS                  kPermissionDenied
//   EEXIST                                kAlreadyExists
//   anything else (EINVAL, EFAULT, EFBIG) kInternal: our request was wrong or the kernel broke
absl::Status ErrnoToStatus(int err, absl::string_view what, absl::string_view path);

}  // namespace pml::tee::internal
