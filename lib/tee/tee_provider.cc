#include "lib/tee/tee_provider.h"

#include <memory>

#include "lib/core/status.h"
#include "lib/tee/simulator.h"

namespace pml::tee {

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
  switch (kind) {
    case TeeKind::kSimulated: {
      PML_ASSIGN_OR_RETURN(std::unique_ptr<TdxSimulator> sim,
                           TdxSimulator::Create(options.simulator));
      return std::unique_ptr<TeeProvider>(std::move(sim));
    }
    case TeeKind::kConfigfsTsm:
    case TeeKind::kTdxGuestDevice:
      // TODO(guest-agent): hardware providers, issue 6 (guest agent).
      return absl::UnimplementedError(absl::StrCat(
          "tee provider ", TeeKindName(kind), " is not implemented yet (guest agent, issue 6)"));
  }
  return absl::InvalidArgumentError("unknown tee kind");
}

}  // namespace pml::tee
