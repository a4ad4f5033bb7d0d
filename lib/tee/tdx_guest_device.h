#pragma once
// The Linux TDX guest device, /dev/tdx_guest (drivers/virt/coco/tdx-guest, Linux ≥ 6.2). Its
// only ioctl upstream is TDX_CMD_GET_REPORT0 (include/uapi/linux/tdx-guest.h), which runs
// TDG.MR.REPORT and returns the 1024-byte TDREPORT_STRUCT: the TD's measurements (MRTD, RTMR0-3,
// …) MACed for the local quoting enclave. A TDREPORT is not a quote; upstream Linux never had a
// quote ioctl (Intel's out-of-tree drivers had one), so quotes come from configfs-tsm
// (lib/tee/configfs_tsm.h).
//
// The ioctl sits behind TdxGuestDevice so tests inject a fake (lib/tee/testing/fake_tdx.h).

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "lib/tee/tee_provider.h"

namespace pml::tee {

inline constexpr size_t kTdReportSize = 1024;  // TDX_REPORT_LEN
using TdReportBytes = std::array<uint8_t, kTdReportSize>;

// REPORTTYPE.TYPE of a TDX TDREPORT (0x00 is SGX).
inline constexpr uint8_t kTdReportTypeTdx = 0x81;

// One TDREPORT call. Implementations are thread-safe (the kernel serializes TDG.MR.REPORT).
class TdxGuestDevice {
 public:
  virtual ~TdxGuestDevice() = default;

  // TDREPORT_STRUCT with REPORTDATA = `report_data`. kInvalidArgument unless report_data is 64
  // bytes; kFailedPrecondition when the device does not take TDX_CMD_GET_REPORT0 (ENOTTY or
  // EINVAL: not a tdx_guest device); kUnavailable when busy (EINTR is retried); kInternal when
  // TDG.MR.REPORT failed (EIO) or on another error.
  virtual absl::StatusOr<TdReportBytes> GetReport0(absl::Span<const uint8_t> report_data) = 0;

  // The device path, for messages. Valid as long as this object.
  virtual const std::string& path() const = 0;
};

// Opens `path` (read-write, close-on-exec) and keeps it open for the object's life.
// kFailedPrecondition when it does not exist (no TDX guest driver), kPermissionDenied when the
// process may not open it, kInternal otherwise. The message names the path.
absl::StatusOr<std::unique_ptr<TdxGuestDevice>> OpenTdxGuestDevice(std::string path);

// The fields of a TDREPORT_STRUCT this library uses (Intel TDX Module ABI; offsets in the .cc).
struct TdReportFields {
  uint8_t report_type = 0;  // REPORTTYPE.TYPE: 0x81 for TDX
  uint8_t report_subtype = 0;
  uint8_t report_version = 0;
  std::array<uint8_t, 16> cpusvn{};
  std::array<uint8_t, kReportDataSize> report_data{};
  std::array<uint8_t, 16> tee_tcb_svn{};
  Measurement mrseam{};
  uint64_t td_attributes = 0;
  uint64_t xfam = 0;
  Measurement mrtd{};
  Measurement mrconfigid{};
  Measurement mrowner{};
  Measurement mrownerconfig{};
  RtmrValues rtmrs{};
  Measurement servtd_hash{};
};

// Parses a TDREPORT_STRUCT. Structure only: the MAC is for the quoting enclave and not checked.
// kInvalidArgument when `bytes` is not 1024 bytes or REPORTTYPE.TYPE is not TDX (0x81). Pure and
// thread-safe.
absl::StatusOr<TdReportFields> ParseTdReport(absl::Span<const uint8_t> bytes);

}  // namespace pml::tee
