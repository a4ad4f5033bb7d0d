#pragma once
// The TDX runtime measurement registers as Linux exposes them (Linux ≥ 6.16,
// Documentation/ABI/testing/sysfs-devices-virtual-misc-tdx_guest):
// /sys/devices/virtual/misc/tdx_guest/measurements/rtmr[0-3]:sha384, also reachable as
// /sys/class/misc/tdx_guest/measurements. Each is a 48-byte binary attribute: a read returns the
// register's current value; a write of exactly 48 bytes at offset 0 extends the register with them
// (TDG.MR.RTMR.EXTEND, drivers/virt/coco/guest/tsm-mr.c); partial writes fail with EINVAL.
//
// File access sits behind RtmrRegisters so tests can drive a temp directory tree and play the
// kernel's part (lib/tee/testing/fake_tdx.h).

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "lib/tee/tee_provider.h"

namespace pml::tee {

// "rtmr<index>:sha384", the attribute name of RTMR[index].
std::string RtmrAttributeName(int index);

// Reads and extends RTMR0-3. Implementations are thread-safe (each call opens its own file; the
// kernel serializes extensions and reports).
class RtmrRegisters {
 public:
  virtual ~RtmrRegisters() = default;

  // RTMR[index]. kInvalidArgument when index is outside 0..3; kNotFound when the attribute is
  // missing; kInternal when it does not hold exactly 48 bytes or on another I/O error.
  virtual absl::StatusOr<Measurement> Read(int index) = 0;

  // Extends RTMR[index] with `digest` (one 48-byte write at offset 0). kInvalidArgument when
  // index is outside 0..3 or digest is not 48 bytes; kPermissionDenied when the kernel or the TDX
  // module refuses (EACCES, EPERM); kNotFound when the attribute is missing; kInternal otherwise.
  virtual absl::Status Extend(int index, absl::Span<const uint8_t> digest) = 0;

  // The measurements directory, for messages. Valid as long as this object.
  virtual const std::string& dir() const = 0;
};

// The real RtmrRegisters on `<dir>/rtmr<N>:sha384`. Opens nothing until used.
std::unique_ptr<RtmrRegisters> MakeSysfsRtmrRegisters(std::string dir);

}  // namespace pml::tee
