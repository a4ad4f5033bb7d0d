#pragma once
// The boot-time GPU gate (DESIGN.md §7, dstack-compat.md §6.2): before the app gets keys, every
// attached GPU must be in CC mode (not DEVTOOLS) and its evidence, taken with a fresh nonce, must
// verify locally (device chain to NVIDIA's pinned root, report signature and nonce, measurements
// against NVIDIA's RIMs, OCSP) with lib/gpu, the code pml-verifier runs. Only then are the GPUs marked ready for CUDA work. The result is
// recorded in RTMR3 as the `gpu-attestation` event, so every relying party sees what was checked.
//
// Simulated GPUs verify only against lib/tee's simulated root, offline, and say so everywhere.
//
// Thread-safety: RunGpuGate is called once, at boot.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/guest-agent/gpu_source.h"

namespace pml::guest {

struct GpuGateOptions {
  // NVIDIA's services (or a Trust Outpost / attestation proxy); used unless offline.
  std::string rim_service_url = "https://rim.attestation.nvidia.com/v1/rim/";
  std::string ocsp_url = "http://ocsp.ndis.nvidia.com";
  std::string rim_cache_dir;  // "" = none
  bool offline = false;       // verify from the RIM cache only
  bool allow_devtools = false;
};

struct GpuGateResult {
  std::vector<GpuDeviceInfo> devices;  // verified, in index order
  // The `gpu-attestation` event payload: compact JSON
  // {"version":1,"provider":"nvidia","simulated":b,"devices":[{"index","uuid","arch",
  //  "driver_version","vbios_version"}],"cc_mode":"on"|"ppcie","nonce":hex,
  //  "evidence_sha256":hex of SHA-256(evidence_json)}.
  std::string event_payload;
  // The evidence as verified: {"nonce":hex,"arch":...,"evidence_list":[{"evidence":base64 report,
  // "certificate":base64 PEM chain}]} (NVIDIA's NRAS request shape), so a relying party can re-check
  // it and compare its hash with the event.
  std::string evidence_json;
};

// Runs the gate for `source`'s GPUs with `nonce` (32 bytes). kFailedPrecondition naming the GPU
// and the reason when one has CC off, is in DEVTOOLS mode (unless allowed) or fails verification
// (with the failed checks); errors of the source pass through. With no GPUs attached: an empty
// result (no event is emitted).
absl::StatusOr<GpuGateResult> RunGpuGate(GpuSource& source, const GpuGateOptions& options,
                                         absl::Span<const uint8_t> nonce);

}  // namespace pml::guest
