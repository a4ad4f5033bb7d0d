#pragma once
// The hardware TDX TeeProviders (kConfigfsTsm, kTdxGuestDevice), composed from the kernel
// interfaces a TDX guest may have, each behind its own small interface:
//   quotes        configfs-tsm (lib/tee/configfs_tsm.h). /dev/tdx_guest has no quote ioctl
//                 upstream, so the device provider borrows configfs-tsm for quotes too.
//   RTMR values   the TDREPORT of /dev/tdx_guest (lib/tee/tdx_guest_device.h): all four in one
//                 snapshot; else the sysfs measurement registers (lib/tee/tdx_measurements.h).
//   RTMR extend   the sysfs measurement registers (Linux ≥ 6.16); upstream has no extend ioctl.
// A missing piece fails only the calls that need it, with an error naming what is missing.
// MakeTeeProvider (tee_provider.h) builds the back ends from paths; tests pass fakes here.

#include <memory>

#include "absl/status/statusor.h"
#include "lib/tee/configfs_tsm.h"
#include "lib/tee/tdx_guest_device.h"
#include "lib/tee/tdx_measurements.h"
#include "lib/tee/tee_provider.h"

namespace pml::tee {

// The kernel interfaces one provider uses; null means "not on this machine".
struct TdxBackends {
  std::unique_ptr<TsmReportFs> tsm;        // configfs-tsm report root
  std::unique_ptr<TdxGuestDevice> device;  // /dev/tdx_guest
  std::unique_ptr<RtmrRegisters> rtmrs;    // .../tdx_guest/measurements
};

// A provider of `kind` over `backends`. kConfigfsTsm needs `tsm`, kTdxGuestDevice needs
// `device`; kFailedPrecondition names the one missing. kInvalidArgument for kSimulated (the
// simulator is built only by MakeTeeProvider). `quote_attempts` bounds the configfs-tsm retries
// after a generation race (ConfigfsTsmQuoter).
//
// The provider's calls (thread-safe, as TeeProvider requires):
//   GetQuote    through configfs-tsm; kFailedPrecondition when there is none ("/dev/tdx_guest
//               has no quote ioctl …"); otherwise ConfigfsTsmQuoter::GetQuote's errors.
//   GetRtmrs    TDREPORT's RTMRs when a device is present, else the four sysfs registers (read
//               under the provider's lock, so none of our own extensions lands in between);
//               kUnimplemented when neither exists; kInternal on a malformed TDREPORT.
//   ExtendRtmr  one 48-byte write to rtmr<N>:sha384; kUnimplemented when the kernel exposes no
//               measurement registers; kInvalidArgument, kPermissionDenied as RtmrRegisters.
absl::StatusOr<std::unique_ptr<TeeProvider>> MakeTdxProvider(TeeKind kind, TdxBackends backends,
                                                             int quote_attempts);

}  // namespace pml::tee
