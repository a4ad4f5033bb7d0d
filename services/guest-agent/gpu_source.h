#pragma once
// Where the guest agent gets GPU evidence: NVML on a real CVM (lib/tee/nvml_collector.h, loaded
// at run time so the agent runs without NVIDIA drivers) or lib/tee's simulated GPUs with the
// simulated TEE. The boot gate (gpu_gate.h) and /Attest use this interface only.
//
// Thread-safety: implementations are thread-safe.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace pml::guest {

// One GPU as its driver describes it (unauthenticated context; only the signed report counts).
struct GpuDeviceInfo {
  uint32_t index = 0;
  std::string uuid;
  std::string name;            // "NVIDIA H100 80GB HBM3", "PML simulated GH100"
  std::string arch = "HOPPER";  // NVIDIA's arch string
  std::string driver_version;
  std::string vbios_version;
  bool cc_on = false;     // CC mode on (or protected PCIe)
  bool ppcie = false;     // protected PCIe
  bool devtools = false;  // CC DEVTOOLS mode: debuggable, refused by the boot gate
  bool simulated = false;
};

struct GpuDeviceEvidence {
  GpuDeviceInfo info;
  std::vector<uint8_t> report;  // SPDM GET_MEASUREMENTS request ‖ response
  std::string chain_pem;        // device chain, leaf first
};

class GpuSource {
 public:
  virtual ~GpuSource() = default;
  // The GPUs attached, in index order (empty: none).
  virtual absl::StatusOr<std::vector<GpuDeviceInfo>> List() = 0;
  // Evidence of every GPU for `nonce` (32 bytes). kFailedPrecondition when a GPU has CC off.
  virtual absl::StatusOr<std::vector<GpuDeviceEvidence>> Collect(
      absl::Span<const uint8_t> nonce) = 0;
  // Tells the driver the GPUs may run CUDA work (after their evidence verified).
  virtual absl::Status SetReady(bool ready) = 0;
  virtual bool simulated() const = 0;
};

// `count` simulated Hopper GPUs (lib/tee/simulated_gpu.h), CC on, sharing one simulated PKI.
// `cc_off` simulates GPUs whose CC mode is off (the boot gate must refuse them).
absl::StatusOr<std::unique_ptr<GpuSource>> MakeSimulatedGpus(int count, bool cc_off = false);

// NVML through `library` (default libnvidia-ml.so.1). kUnavailable naming the library when it
// cannot be loaded.
absl::StatusOr<std::unique_ptr<GpuSource>> MakeNvmlGpus(
    const std::string& library = "libnvidia-ml.so.1");

}  // namespace pml::guest
