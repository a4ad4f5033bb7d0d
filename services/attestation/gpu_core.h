#pragma once
// pml-verifier's NVIDIA GPU / NVSwitch evidence verification, free of gRPC (STYLE.md §1): a
// gpu::Verifier with its caches (device chains, RIMs, OCSP results), where RIMs and OCSP
// responses come from when a request brings none, and the pml_verifier_gpu_* metrics.
// verifier_convert.h converts protos to the types here and back; tests drive this class directly.
//
// Sources, in order: the request's RIMs / OCSP responses; the RIM cache directory (NVAT's
// --rim-dir layout, also where fetched RIMs are stored); then, unless offline, NVIDIA's RIM
// service and OCSP responder (or the URLs configured). A RIM or OCSP response that cannot be had
// is a claim (fetched = false, ocsp status unknown), never an error.
//
// Results, not errors: a device whose report parses but fails a signature, chain, nonce, FWID or
// architecture check is an OK outcome with that device's error class; errors are reserved for
// unusable requests:
//   kInvalidArgument  no evidence, more than gpu::kMaxEvidenceDevices devices, a report or chain
//                     that does not parse ("evidence[2].spdm_report: REPORT_MALFORMED: ..."), a
//                     nonce that is not 32 bytes, a RIM whose id is not a RIM id.
//
// Simulated evidence (lib/tee's simulated GPUs) verifies only when the anchors trust the
// simulated root (--trust-simulated-tee); such devices say simulated everywhere.
//
// Thread-safety: Verify is thread-safe and runs concurrently.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/core/clock.h"
#include "lib/gpu/evidence.h"
#include "lib/gpu/rim.h"
#include "lib/gpu/verify.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace pml::attestation {

// One device of a request, as GpuEvidence carries it.
struct GpuDeviceInput {
  uint32_t index = 0;
  std::string uuid;
  bool is_switch = false;         // GpuEvidence.device_kind == NVSWITCH
  std::optional<gpu::Arch> arch;  // the collector's claim, checked against the leaf
  std::vector<uint8_t> report;    // raw SPDM report
  std::string certificate_chain;  // concatenated PEM, or concatenated DER
};

struct GpuRimInput {
  std::string id;
  std::string content;  // SWID XML or a RIM-service JSON response (detected)
};

struct GpuVerifyInput {
  std::vector<GpuDeviceInput> devices;
  gpu::Nonce nonce{};
  std::vector<GpuRimInput> rims;
  std::vector<std::vector<uint8_t>> ocsp_responses;  // DER
  std::optional<absl::Time> at;                      // absent: the core's clock
  bool offline = false;
};

// The outcome per device, in request order (GPUs and switches interleaved as given).
struct GpuDeviceOutcome {
  const GpuDeviceInput* input = nullptr;  // points into the GpuVerifyInput
  absl::StatusOr<gpu::VerifiedGpu> result = absl::UnknownError("not verified");
};

struct GpuVerification {
  absl::Time verification_time;
  bool overall = false;  // every device passed and the topology (when checked) holds
  bool simulated = false;
  std::vector<GpuDeviceOutcome> devices;
  std::optional<absl::Status> topology;  // see gpu::SetOutcome::topology
  std::string claims_json;               // NVAT-shaped (gpu::SetOutcome::Claims)
};

struct GpuCoreOptions {
  gpu::TrustAnchors anchors = gpu::TrustAnchors::NvidiaDefault();
  // RIM cache directory ("" = none); created 0700. Fetched RIMs are stored here.
  std::string rim_cache_dir;
  // Verifications never use the network.
  bool offline = false;
  // NVIDIA's services (or mirrors such as a Trust Outpost); used unless offline.
  std::string rim_service_url = "https://rim.attestation.nvidia.com/v1/rim/";
  std::string ocsp_url = "http://ocsp.ndis.nvidia.com";
  // NVAT's default verdict policy.
  gpu::Policy policy;
  gpu::Verifier::Options verifier;
};

class GpuCore {
 public:
  // `clock` must outlive the core; `registry` (may be null) receives pml_verifier_gpu_* metrics.
  // File errors when the RIM cache directory cannot be created.
  static absl::StatusOr<std::unique_ptr<GpuCore>> Create(GpuCoreOptions options,
                                                         const core::Clock& clock,
                                                         prometheus::Registry* registry);
  ~GpuCore();
  GpuCore(const GpuCore&) = delete;
  GpuCore& operator=(const GpuCore&) = delete;

  // See the top of this file. The outcome's `input` pointers refer into `input`.
  absl::StatusOr<GpuVerification> Verify(const GpuVerifyInput& input);

  gpu::Verifier::CacheStats cache_stats() const { return verifier_.stats(); }
  const gpu::TrustAnchors& anchors() const { return verifier_.anchors(); }

 private:
  struct Metrics;
  GpuCore(GpuCoreOptions options, const core::Clock& clock, prometheus::Registry* registry);

  const GpuCoreOptions options_;
  const core::Clock& clock_;
  gpu::Verifier verifier_;
  // Long-lived sources (stable addresses, so the verifier's per-source caches stay warm).
  std::unique_ptr<gpu::RimSource> offline_rims_;  // cache dir; may be null
  std::unique_ptr<gpu::RimSource> online_rims_;   // service (+ cache dir); null when offline
  std::unique_ptr<gpu::OcspSource> online_ocsp_;  // null when offline
  std::unique_ptr<Metrics> metrics_;
};

}  // namespace pml::attestation
