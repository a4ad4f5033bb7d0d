#pragma once
// GPU evidence collection through NVML, loaded at run time with dlopen("libnvidia-ml.so.1") so
// the agent runs on hosts without NVIDIA drivers (DESIGN.md §7; shared/specs/
// gpu-evidence-verification.md §1). This is the producing side; lib/gpu verifies what it yields.
//
// Errors say plainly which of these it is:
//   kUnavailable         NVML is not there (no driver), or its init failed (message has NVML's text)
//   kFailedPrecondition  confidential computing is off, or a GPU architecture is not supported
//   kInvalidArgument     a nonce that is not 32 bytes
//   kPermissionDenied    setting the ready state without root
// Thread-safety: one NvmlCollector may be used from several threads; calls are serialized.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace pml::tee {

// What NVML says about the system. Unauthenticated context: only the signed report is evidence.
struct NvmlSystemState {
  std::string driver_version;
  uint32_t environment = 0;     // 0 unavailable, 1 SIM, 2 PROD
  uint32_t cc_feature = 0;      // 1 = confidential computing enabled
  uint32_t devtools_mode = 0;   // 1 = DEVTOOLS (must be refused by policy)
  uint32_t multi_gpu_mode = 0;  // 1 = protected PCIe (PPCIe)
  bool settings_available = false;  // nvmlSystemGetConfComputeSettings answered
  bool ready = false;               // nvmlSystemGetConfComputeGpusReadyState
  bool ready_known = false;

  bool cc_enabled() const { return cc_feature == 1 || multi_gpu_mode == 1; }
};

struct NvmlGpuInfo {
  uint32_t index = 0;
  std::string uuid;
  std::string vbios_version;
  uint32_t architecture = 0;  // NVML: 7 Ampere, 9 Hopper, 10 Blackwell
  std::string architecture_name;
  uint32_t board_id = 0;
};

struct NvmlGpuEvidence {
  NvmlGpuInfo gpu;
  std::vector<uint8_t> report;    // SPDM GET_MEASUREMENTS request || response
  std::string cert_chain_pem;     // attestation certificate chain (concatenated PEM)
};

// The NVML entry points, resolved by dlsym. Opaque outside the .cc.
struct NvmlApi;

class NvmlCollector {
 public:
  // Loads `library` (default libnvidia-ml.so.1) and calls nvmlInit_v2.
  static absl::StatusOr<std::unique_ptr<NvmlCollector>> Open(
      const std::string& library = "libnvidia-ml.so.1");
  ~NvmlCollector();  // nvmlShutdown, dlclose
  NvmlCollector(const NvmlCollector&) = delete;
  NvmlCollector& operator=(const NvmlCollector&) = delete;

  absl::StatusOr<NvmlSystemState> SystemState();
  absl::StatusOr<std::vector<NvmlGpuInfo>> ListGpus();

  // Evidence of every GPU for `nonce` (exactly 32 bytes; the same for all GPUs).
  // kFailedPrecondition when CC is off (naming the GPUs) or an architecture is not Hopper or
  // Blackwell.
  absl::StatusOr<std::vector<NvmlGpuEvidence>> CollectEvidence(absl::Span<const uint8_t> nonce);

  // nvmlSystemSetConfComputeGpusReadyState: call with true only after the evidence verified.
  absl::Status SetReadyState(bool ready);

 private:
  NvmlCollector(void* handle, std::unique_ptr<NvmlApi> api);
  absl::Status Check(int rc, const char* what);

  void* handle_;
  std::unique_ptr<NvmlApi> api_;
  absl::Mutex mu_;
};

// "Hopper", "Blackwell", ... for an NVML architecture number.
std::string NvmlArchitectureName(uint32_t arch);

}  // namespace pml::tee
