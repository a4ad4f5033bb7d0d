// pml-gpu-probe: asks NVML what the local GPUs are and whether they can attest, then tries to
// collect evidence for a nonce. Exit 0: evidence collected; 3: refused (CC off, unsupported GPU);
// 2: NVML unavailable or failed. Used on GPU hosts and inside CVMs to check the collector.

#include <cstdio>
#include <cstring>
#include <string>

#include "lib/core/hex.h"
#include "lib/tee/nvml_collector.h"

int main(int argc, char** argv) {
  std::string library = "libnvidia-ml.so.1";
  std::string nonce_hex(64, '0');
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: pml-gpu-probe [--library PATH] [--nonce HEX64]\n"
          "  Reports NVML's confidential-computing state and the GPUs (UUID, VBIOS, architecture),\n"
          "  then collects attestation evidence for the 32-byte nonce.\n"
          "  --library  NVML library to load (default libnvidia-ml.so.1)\n"
          "  --nonce    64 hex characters (default all zero)\n"
          "Exit: 0 evidence collected, 3 refused (CC off / unsupported GPU), 2 NVML unavailable.\n");
      return 0;
    }
    if (a == "--library" && i + 1 < argc) {
      library = argv[++i];
    } else if (a == "--nonce" && i + 1 < argc) {
      nonce_hex = argv[++i];
    } else {
      std::fprintf(stderr, "pml-gpu-probe: error: unknown argument %s (see --help)\n", a.c_str());
      return 2;
    }
  }
  auto nonce = pml::core::HexDecode(nonce_hex);
  if (!nonce.ok() || nonce->size() != 32) {
    std::fprintf(stderr, "pml-gpu-probe: error: --nonce must be 64 hex characters\n");
    return 2;
  }
  auto nvml = pml::tee::NvmlCollector::Open(library);
  if (!nvml.ok()) {
    std::printf("nvml: %s\n", std::string(nvml.status().ToString()).c_str());
    return 2;
  }
  auto state = (*nvml)->SystemState();
  if (!state.ok()) {
    std::printf("nvml system state: %s\n", std::string(state.status().ToString()).c_str());
    return 2;
  }
  std::printf("driver %s; confidential computing: %s (ccFeature=%u environment=%u devToolsMode=%u "
              "multiGpuMode=%u%s); ready state: %s\n",
              state->driver_version.c_str(), state->cc_enabled() ? "ON" : "OFF", state->cc_feature,
              state->environment, state->devtools_mode, state->multi_gpu_mode,
              state->settings_available ? "" : ", settings API unavailable",
              state->ready_known ? (state->ready ? "ready" : "not ready") : "unknown");
  auto gpus = (*nvml)->ListGpus();
  if (!gpus.ok()) {
    std::printf("gpus: %s\n", std::string(gpus.status().ToString()).c_str());
    return 2;
  }
  for (const auto& g : *gpus) {
    std::printf("gpu %u: uuid %s, vbios %s, architecture %s, board id 0x%x\n", g.index,
                g.uuid.c_str(), g.vbios_version.c_str(), g.architecture_name.c_str(), g.board_id);
  }
  auto evidence = (*nvml)->CollectEvidence(*nonce);
  if (!evidence.ok()) {
    std::printf("evidence: refused: %s\n", std::string(evidence.status().ToString()).c_str());
    return evidence.status().code() == absl::StatusCode::kFailedPrecondition ? 3 : 2;
  }
  for (const auto& e : *evidence) {
    std::printf("evidence gpu %u: report %zu bytes, certificate chain %zu bytes\n", e.gpu.index,
                e.report.size(), e.cert_chain_pem.size());
  }
  return 0;
}
