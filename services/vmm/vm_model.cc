#include "services/vmm/vm_model.h"

namespace pml::vmm {

const char* VmStateName(VmState state) {
  switch (state) {
    case VmState::kCreating:
      return "creating";
    case VmState::kStopped:
      return "stopped";
    case VmState::kStarting:
      return "starting";
    case VmState::kRunning:
      return "running";
    case VmState::kStopping:
      return "stopping";
    case VmState::kPaused:
      return "paused";
    case VmState::kFailed:
      return "failed";
    case VmState::kRemoving:
      return "removing";
    case VmState::kUnspecified:
      break;
  }
  // Also reached for a value outside the enum (e.g. a number read from storage).
  return "unspecified";
}

}  // namespace pml::vmm
