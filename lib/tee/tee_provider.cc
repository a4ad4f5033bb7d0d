#include "lib/tee/tee_provider.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/core/file.h"
#include "lib/core/status.h"
#include "lib/tee/configfs_tsm.h"
#include "lib/tee/simulator.h"
#include "lib/tee/tdx_guest_device.h"
#include "lib/tee/tdx_measurements.h"
#include "lib/tee/tdx_provider.h"

namespace pml::tee {
namespace {

std::string ConfigfsTsmMissing(const std::string& root) {
  return absl::StrCat("configfs-tsm report interface not found at ", root,
                      " (needs Linux >= 6.7 with CONFIG_TSM_REPORTS inside a TDX guest, and "
                      "configfs mounted at /sys/kernel/config)");
}

// The optional back ends: each one whose path exists.
absl::StatusOr<TdxBackends> OpenPresentBackends(const HardwareTeeOptions& hw) {
  TdxBackends backends;
  if (core::PathExists(hw.configfs_tsm_root)) {
    backends.tsm = MakeTsmReportFs(hw.configfs_tsm_root);
  }
  if (core::PathExists(hw.tdx_guest_device)) {
    PML_ASSIGN_OR_RETURN(backends.device, OpenTdxGuestDevice(hw.tdx_guest_device));
  }
  // All four registers or none: a partial set is not an interface we know.
  bool all_rtmrs = true;
  for (int i = 0; i < kRtmrCount; ++i) {
    all_rtmrs = all_rtmrs &&
                core::PathExists(absl::StrCat(hw.tdx_measurements_dir, "/", RtmrAttributeName(i)));
  }
  if (all_rtmrs) {
    backends.rtmrs = MakeSysfsRtmrRegisters(hw.tdx_measurements_dir);
  }
  return backends;
}

}  // namespace

absl::string_view TeeKindName(TeeKind kind) {
  switch (kind) {
    case TeeKind::kSimulated:
      return "simulated";
    case TeeKind::kConfigfsTsm:
      return "configfs-tsm";
    case TeeKind::kTdxGuestDevice:
      return "tdx-guest-device";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<TeeProvider>> MakeTeeProvider(TeeKind kind,
                                                             const TeeOptions& options) {
  const HardwareTeeOptions& hw = options.hardware;
  switch (kind) {
    case TeeKind::kSimulated: {
      PML_ASSIGN_OR_RETURN(std::unique_ptr<TdxSimulator> sim,
                           TdxSimulator::Create(options.simulator));
      return std::unique_ptr<TeeProvider>(std::move(sim));
    }
    case TeeKind::kConfigfsTsm:
      if (!core::PathExists(hw.configfs_tsm_root)) {
        return absl::FailedPreconditionError(ConfigfsTsmMissing(hw.configfs_tsm_root));
      }
      break;
    case TeeKind::kTdxGuestDevice:
      if (!core::PathExists(hw.tdx_guest_device)) {
        return absl::FailedPreconditionError(
            absl::StrCat("TDX guest device ", hw.tdx_guest_device,
                         " not found (needs the tdx_guest driver, Linux >= 6.2, inside a TDX "
                         "guest)"));
      }
      break;
    default:
      return absl::InvalidArgumentError("unknown tee kind");
  }
  PML_ASSIGN_OR_RETURN(TdxBackends backends, OpenPresentBackends(hw));
  return MakeTdxProvider(kind, std::move(backends), hw.quote_attempts);
}

absl::StatusOr<TeeKind> DetectTeeKind(const DetectOptions& options) {
  std::vector<std::string> looked;
  std::unique_ptr<TsmReportFs> owned;
  TsmReportFs* fs = options.tsm_fs;
  if (fs == nullptr && core::PathExists(options.configfs_tsm_root)) {
    owned = MakeTsmReportFs(options.configfs_tsm_root);
    fs = owned.get();
  }
  if (fs == nullptr) {
    looked.push_back(absl::StrCat(options.configfs_tsm_root, " (absent)"));
  } else {
    absl::StatusOr<std::string> provider = ReadTsmProvider(*fs);
    if (provider.ok() && *provider == kTsmProviderTdx) {
      return TeeKind::kConfigfsTsm;
    }
    looked.push_back(provider.ok()
                         ? absl::StrCat(fs->root(), " (provider \"",
                                        absl::CHexEscape(provider->substr(0, 64)), "\", not ",
                                        kTsmProviderTdx, ")")
                         : absl::StrCat(fs->root(), " (", provider.status().message(), ")"));
  }
  if (core::PathExists(options.tdx_guest_device)) {
    return TeeKind::kTdxGuestDevice;
  }
  looked.push_back(absl::StrCat(options.tdx_guest_device, " (absent)"));
  return absl::FailedPreconditionError(absl::StrCat("no TDX interface found (looked at ",
                                                    absl::StrJoin(looked, ", "),
                                                    "); use --tee=simulated for development"));
}

}  // namespace pml::tee
