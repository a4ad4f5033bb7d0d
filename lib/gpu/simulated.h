#pragma once
// What a GPU verifier knows about lib/tee's simulated GPUs (DESIGN.md §4 "Simulated TEE"), without
// linking lib/tee (STYLE.md §1: verifiers never link device code):
//   * the simulated device root, identified by its public key (the certificate's signature bytes
//     differ between runs, so the key is pinned, as kSimulatedGpuRootSpkiSha256);
//   * the golden measurements that stand in for NVIDIA's driver and VBIOS RIMs, which NVIDIA signs
//     and which therefore cannot be simulated: SPDM block n (1..42) of a simulated GPU running
//     driver D and VBIOS V measures SHA-384("pml simulated gh100 measurement v1|D|V|n"); blocks
//     43..64 are zero and unused. lib/tee/simulated_gpu.h produces exactly these values; the round
//     trip test (lib/tee/simulated_gpu_roundtrip_test.cc) links both and checks they agree.
// A Verifier uses these only when its TrustAnchors were built WithSimulatedRoot(), and then only
// for chains that end at the simulated key; every such result says simulated.
//
// Thread-safety: pure functions.

#include <cstdint>

#include "absl/strings/string_view.h"
#include "lib/gpu/rim.h"

namespace pml::gpu {

// SHA-256 of the simulated GPU root's SubjectPublicKeyInfo (lib/tee
// kSimulatedGpuRootSpkiSha256Hex).
inline constexpr absl::string_view kSimulatedGpuRootSpkiSha256 =
    "dc51d5fed77feffb34e34b42faeb735672887861b15539b70284f59587ca0286";

// Measurement blocks a simulated GPU fills (1..kSimulatedGpuActiveBlocks).
inline constexpr uint32_t kSimulatedGpuActiveBlocks = 42;

// The id under which the stand-in appears in claims (it names no NVIDIA RIM).
inline constexpr absl::string_view kSimulatedGoldenRimId = "PML_SIMULATED_GOLDEN";

// An unsigned stand-in RIM holding the golden values of a simulated GPU with these versions:
// every block is in the driver stand-in (RIM index = block - 1); the VBIOS stand-in has none
// (`kind` selects which). colloquial_version is the matching version, so version matching works
// as for real RIMs. Pure.
Rim SimulatedGoldenRim(RimKind kind, absl::string_view driver_version,
                       absl::string_view vbios_version);

}  // namespace pml::gpu
