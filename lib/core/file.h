#pragma once
// File helpers: bounded reads and crash-safe atomic writes.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pml::core {

// Default cap for ReadFile: evidence, certificates and configs are far smaller.
inline constexpr size_t kDefaultMaxFileBytes = 64 << 20;

// Reads the whole file. kNotFound when it does not exist, kPermissionDenied when unreadable,
// kInvalidArgument when larger than `max_bytes`, kInternal on other I/O errors. The message
// names the path. Thread-safe.
absl::StatusOr<std::string> ReadFile(absl::string_view path,
                                     size_t max_bytes = kDefaultMaxFileBytes);
absl::StatusOr<std::vector<uint8_t>> ReadFileBytes(absl::string_view path,
                                                   size_t max_bytes = kDefaultMaxFileBytes);

// ReadFile for trees that may hold planted entries (sysfs, fake sysfs in tests, an image
// directory): opens non-blocking and refuses anything but a regular file, so a FIFO or device
// cannot hang or flood the reader. ReadFile's errors, plus kFailedPrecondition ("<path> is not a
// regular file"). Symlinks are followed (sysfs is made of them). Thread-safe.
absl::StatusOr<std::string> ReadRegularFile(absl::string_view path, size_t max_bytes);

// Writes `data` to `path` so that a crash at any point leaves either the old file or the new
// one, never a mix: write to a temp file in the same directory (created with `mode`), fsync,
// rename over `path`, fsync the directory. kInternal (with the path) on I/O failure.
absl::Status WriteFileAtomic(absl::string_view path, absl::string_view data, mode_t mode = 0644);

// Creates `path` and its parents (like mkdir -p) with `mode` for directories it creates.
absl::Status MakeDirs(absl::string_view path, mode_t mode = 0755);

// True when `path` exists (any type).
bool PathExists(absl::string_view path);

}  // namespace pml::core
