#include "lib/tee/tdx_guest_device.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>

#if __has_include(<linux/tdx-guest.h>)
#include <linux/tdx-guest.h>
#define PML_HAVE_LINUX_TDX_GUEST_H 1
#endif

#include "absl/strings/str_cat.h"
#include "lib/core/byte_reader.h"
#include "lib/core/status.h"
#include "lib/tee/internal/errno_status.h"

namespace pml::tee {
namespace {

// struct tdx_report_req and TDX_CMD_GET_REPORT0 of include/uapi/linux/tdx-guest.h (Linux ≥ 6.2):
//   struct tdx_report_req { __u8 reportdata[64]; __u8 tdreport[1024]; };
//   #define TDX_CMD_GET_REPORT0 _IOWR('T', 1, struct tdx_report_req)
// Debian 12's linux-libc-dev (6.1) has no such header, so they are spelled out here; where the
// header exists, the static_asserts below hold this copy to it.
struct TdxReportReq {
  uint8_t reportdata[kReportDataSize];
  uint8_t tdreport[kTdReportSize];
};
constexpr unsigned long kTdxCmdGetReport0 = _IOWR('T', 1, TdxReportReq);
static_assert(sizeof(TdxReportReq) == 1088, "tdx_report_req is 64 + 1024 bytes");
static_assert(kTdxCmdGetReport0 == 0xC4405401, "_IOWR('T', 1, 1088 bytes)");
#ifdef PML_HAVE_LINUX_TDX_GUEST_H
static_assert(kTdxCmdGetReport0 == TDX_CMD_GET_REPORT0, "matches linux/tdx-guest.h");
static_assert(sizeof(TdxReportReq) == sizeof(struct tdx_report_req), "matches linux/tdx-guest.h");
#endif

class LinuxTdxGuestDevice final : public TdxGuestDevice {
 public:
  LinuxTdxGuestDevice(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~LinuxTdxGuestDevice() override { ::close(fd_); }
  LinuxTdxGuestDevice(const LinuxTdxGuestDevice&) = delete;
  LinuxTdxGuestDevice& operator=(const LinuxTdxGuestDevice&) = delete;

  absl::StatusOr<TdReportBytes> GetReport0(absl::Span<const uint8_t> report_data) override {
    if (report_data.size() != kReportDataSize) {
      return absl::InvalidArgumentError(absl::StrCat("report_data must be ", kReportDataSize,
                                                     " bytes, got ", report_data.size()));
    }
    TdxReportReq req{};
    std::copy(report_data.begin(), report_data.end(), req.reportdata);
    while (::ioctl(fd_, kTdxCmdGetReport0, &req) != 0) {
      const int err = errno;
      if (err == EINTR) {
        continue;
      }
      if (err == EIO) {
        // The driver's "TDCALL execution failure" (tdx-guest.h): not something a retry fixes.
        return absl::InternalError(
            absl::StrCat("TDG.MR.REPORT failed (ioctl TDX_CMD_GET_REPORT0 on ", path_, ": EIO)"));
      }
      absl::Status status = internal::ErrnoToStatus(err, "ioctl TDX_CMD_GET_REPORT0 on", path_);
      if (err == ENOTTY || err == EINVAL) {
        return absl::FailedPreconditionError(
            absl::StrCat(status.message(), " (not a tdx_guest device?)"));
      }
      return status;
    }
    TdReportBytes out{};
    std::copy(std::begin(req.tdreport), std::end(req.tdreport), out.begin());
    return out;
  }

  const std::string& path() const override { return path_; }

 private:
  const std::string path_;
  const int fd_;
};

template <size_t N>
absl::Status ReadInto(core::ByteReader& r, std::array<uint8_t, N>& out, absl::string_view field) {
  PML_ASSIGN_OR_RETURN(absl::Span<const uint8_t> bytes, r.Bytes(N, field));
  std::copy(bytes.begin(), bytes.end(), out.begin());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TdxGuestDevice>> OpenTdxGuestDevice(std::string path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    absl::Status status = internal::ErrnoToStatus(err, "cannot open", path);
    if (absl::IsNotFound(status)) {
      return absl::FailedPreconditionError(absl::StrCat(
          status.message(), " (no TDX guest driver: needs Linux >= 6.2 inside a TDX guest)"));
    }
    return status;
  }
  return std::make_unique<LinuxTdxGuestDevice>(std::move(path), fd);
}

absl::StatusOr<TdReportFields> ParseTdReport(absl::Span<const uint8_t> bytes) {
  if (bytes.size() != kTdReportSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("tdreport must be ", kTdReportSize, " bytes, got ", bytes.size()));
  }
  // TDREPORT_STRUCT, Intel TDX Module ABI spec; the offsets are those of the TDREPORT_* enum in
  // Linux's drivers/virt/coco/tdx-guest/tdx-guest.c (v6.16: reportdata 128, tee_tcb_info 256,
  // tdinfo 512, then attributes, xfam, mrtd, mrconfigid, mrowner, mrownerconfig, rtmr0-3,
  // servtd_hash), and the field sizes match Freax13/mushroom common/tdx-types/src/report.rs.
  core::ByteReader r(bytes, "tdreport");
  TdReportFields out;
  // REPORTMACSTRUCT, 256 bytes at 0.
  PML_ASSIGN_OR_RETURN(out.report_type, r.U8("REPORTTYPE.TYPE"));  // 0
  PML_ASSIGN_OR_RETURN(out.report_subtype, r.U8("REPORTTYPE.SUBTYPE"));
  PML_ASSIGN_OR_RETURN(out.report_version, r.U8("REPORTTYPE.VERSION"));
  PML_RETURN_IF_ERROR(r.Skip(1 + 12, "reserved"));
  PML_RETURN_IF_ERROR(ReadInto(r, out.cpusvn, "CPUSVN"));                    // 16
  PML_RETURN_IF_ERROR(r.Skip(48 + 48, "TEE_TCB_INFO_HASH, TEE_INFO_HASH"));  // 32, 80
  PML_RETURN_IF_ERROR(ReadInto(r, out.report_data, "REPORTDATA"));           // 128
  PML_RETURN_IF_ERROR(r.Skip(32 + 32, "reserved, MAC"));                     // 192, 224
  // TEE_TCB_INFO, 239 bytes at 256, then 17 reserved.
  PML_CHECK(r.offset() == 256);
  PML_RETURN_IF_ERROR(r.Skip(8, "TEE_TCB_INFO.VALID"));
  PML_RETURN_IF_ERROR(ReadInto(r, out.tee_tcb_svn, "TEE_TCB_SVN"));  // 264
  PML_RETURN_IF_ERROR(ReadInto(r, out.mrseam, "MRSEAM"));            // 280
  PML_RETURN_IF_ERROR(r.Skip(48 + 8 + 16 + 95 + 17, "MRSIGNERSEAM..reserved"));
  // TDINFO, 512 bytes at 512.
  PML_CHECK(r.offset() == 512);
  PML_ASSIGN_OR_RETURN(out.td_attributes, r.U64("ATTRIBUTES"));          // 512
  PML_ASSIGN_OR_RETURN(out.xfam, r.U64("XFAM"));                         // 520
  PML_RETURN_IF_ERROR(ReadInto(r, out.mrtd, "MRTD"));                    // 528
  PML_RETURN_IF_ERROR(ReadInto(r, out.mrconfigid, "MRCONFIGID"));        // 576
  PML_RETURN_IF_ERROR(ReadInto(r, out.mrowner, "MROWNER"));              // 624
  PML_RETURN_IF_ERROR(ReadInto(r, out.mrownerconfig, "MROWNERCONFIG"));  // 672
  for (int i = 0; i < kRtmrCount; ++i) {                                 // 720 + 48 i
    PML_RETURN_IF_ERROR(ReadInto(r, out.rtmrs[static_cast<size_t>(i)], "RTMR"));
  }
  PML_RETURN_IF_ERROR(ReadInto(r, out.servtd_hash, "SERVTD_HASH"));  // 912
  PML_RETURN_IF_ERROR(r.Skip(64, "reserved"));                       // 960
  PML_CHECK(r.remaining() == 0);
  if (out.report_type != kTdReportTypeTdx) {
    return absl::InvalidArgumentError(absl::StrCat("tdreport REPORTTYPE.TYPE is 0x",
                                                   absl::Hex(out.report_type), ", not TDX (0x81)"));
  }
  return out;
}

}  // namespace pml::tee
