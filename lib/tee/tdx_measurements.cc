#include "lib/tee/tdx_measurements.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "lib/core/status.h"
#include "lib/tee/internal/errno_status.h"

namespace pml::tee {
namespace {

absl::Status CheckIndex(int index) {
  if (index < 0 || index >= kRtmrCount) {
    return absl::InvalidArgumentError(
        absl::StrCat("rtmr index ", index, " is outside 0..", kRtmrCount - 1));
  }
  return absl::OkStatus();
}

class SysfsRtmrRegisters final : public RtmrRegisters {
 public:
  explicit SysfsRtmrRegisters(std::string dir) : dir_(std::move(dir)) {}

  absl::StatusOr<Measurement> Read(int index) override {
    PML_RETURN_IF_ERROR(CheckIndex(index));
    const std::string path = absl::StrCat(dir_, "/", RtmrAttributeName(index));
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return internal::ErrnoToStatus(errno, "cannot open", path);
    }
    absl::Cleanup closer = [fd] { ::close(fd); };
    // One byte of room past the register tells a longer file from an exact one.
    uint8_t buf[kMeasurementSize + 1];
    size_t got = 0;
    while (got < sizeof(buf)) {
      const ssize_t n = ::read(fd, buf + got, sizeof(buf) - got);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return internal::ErrnoToStatus(errno, "cannot read", path);
      }
      if (n == 0) {
        break;
      }
      got += static_cast<size_t>(n);
    }
    if (got > kMeasurementSize) {
      return absl::InternalError(
          absl::StrCat(path, " holds more than ", kMeasurementSize, " bytes"));
    }
    if (got < kMeasurementSize) {
      return absl::InternalError(
          absl::StrCat(path, " holds ", got, " bytes, want ", kMeasurementSize));
    }
    Measurement out{};
    std::copy(buf, buf + kMeasurementSize, out.begin());
    return out;
  }

  absl::Status Extend(int index, absl::Span<const uint8_t> digest) override {
    PML_RETURN_IF_ERROR(CheckIndex(index));
    if (digest.size() != kMeasurementSize) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rtmr extension digest must be ", kMeasurementSize, " bytes, got ", digest.size()));
    }
    const std::string path = absl::StrCat(dir_, "/", RtmrAttributeName(index));
    // No O_CREAT, no O_TRUNC: the attribute exists, and sysfs takes one whole 48-byte write at
    // offset 0 (tsm-mr.c tm_digest_write rejects anything else with EINVAL).
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      return internal::ErrnoToStatus(errno, "cannot open", path);
    }
    absl::Cleanup closer = [fd] { ::close(fd); };
    ssize_t n;
    do {
      n = ::pwrite(fd, digest.data(), digest.size(), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      return internal::ErrnoToStatus(errno, "cannot extend through", path);
    }
    if (static_cast<size_t>(n) != digest.size()) {
      return absl::InternalError(absl::StrCat("short write to ", path, ": ", n, " of ",
                                              digest.size(),
                                              " bytes; the register may be "
                                              "unchanged"));
    }
    return absl::OkStatus();
  }

  const std::string& dir() const override { return dir_; }

 private:
  const std::string dir_;
};

}  // namespace

std::string RtmrAttributeName(int index) { return absl::StrCat("rtmr", index, ":sha384"); }

std::unique_ptr<RtmrRegisters> MakeSysfsRtmrRegisters(std::string dir) {
  return std::make_unique<SysfsRtmrRegisters>(std::move(dir));
}

}  // namespace pml::tee
