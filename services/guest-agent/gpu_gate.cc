#include "services/guest-agent/gpu_gate.h"

#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/gpu/verify.h"
#include "lib/gpu/online.h"
#include "lib/gpu/rim.h"
#include "lib/gpu/sources.h"

namespace pml::guest {

absl::StatusOr<GpuGateResult> RunGpuGate(GpuSource& source, const GpuGateOptions& options,
                                         absl::Span<const uint8_t> nonce) {
  if (nonce.size() != 32)
    return absl::InvalidArgumentError("GPU nonce: want 32 bytes");
  GpuGateResult result;
  PML_ASSIGN_OR_RETURN(std::vector<GpuDeviceInfo> listed, source.List());
  if (listed.empty())
    return result;
  for (const GpuDeviceInfo& g : listed) {
    if (!g.cc_on) {
      return absl::FailedPreconditionError(absl::StrCat(
          "GPU ", g.index, " (", g.uuid, "): confidential computing is off; refusing to boot"));
    }
    if (g.devtools && !options.allow_devtools) {
      return absl::FailedPreconditionError(absl::StrCat(
          "GPU ", g.index, " (", g.uuid, "): CC DEVTOOLS mode (debuggable); refusing to boot"));
    }
  }
  PML_ASSIGN_OR_RETURN(std::vector<GpuDeviceEvidence> evidence, source.Collect(nonce));

  // Verification with lib/gpu (what pml-verifier's GPU core runs): NVIDIA's pinned roots (or only
  // the simulated root for simulated GPUs), RIMs from the cache dir and NVIDIA's RIM service, OCSP
  // from NVIDIA's responder; offline for simulated GPUs.
  const bool offline = options.offline || source.simulated();
  gpu::Verifier verifier(source.simulated() ? gpu::TrustAnchors::NvidiaDefault().WithSimulatedRoot()
                                            : gpu::TrustAnchors::NvidiaDefault(),
                         gpu::Verifier::Options{});
  std::unique_ptr<gpu::RimSource> cached_rims, online_rims;
  std::unique_ptr<gpu::OcspSource> online_ocsp;
  std::vector<gpu::RimSource*> rim_chain;
  if (!options.rim_cache_dir.empty()) {
    cached_rims = std::make_unique<gpu::DirectoryRimSource>(options.rim_cache_dir);
    rim_chain.push_back(cached_rims.get());
  }
  if (!offline) {
    online_rims = std::make_unique<gpu::RimServiceSource>(
        gpu::MakeCurlHttpClient(), options.rim_service_url, options.rim_cache_dir);
    online_ocsp = std::make_unique<gpu::HttpOcspSource>(gpu::MakeCurlHttpClient(),
                                                        options.ocsp_url);
    rim_chain.push_back(online_rims.get());
  }
  gpu::FirstOfRimSource rims(rim_chain);
  gpu::VerifyOptions vo;
  vo.now = absl::Now();
  vo.rims = rim_chain.empty() ? nullptr : &rims;
  vo.ocsp = online_ocsp.get();
  gpu::Nonce n{};
  std::copy(nonce.begin(), nonce.end(), n.begin());
  std::vector<gpu::DeviceEvidence> to_verify;
  for (const GpuDeviceEvidence& e : evidence)
    to_verify.push_back({std::nullopt, std::nullopt, e.report, e.chain_pem});
  gpu::SetOutcome set = verifier.VerifyEach(to_verify, {}, n, vo);
  for (size_t i = 0; i < set.gpus.size() && i < evidence.size(); ++i) {
    const GpuDeviceInfo& g = evidence[i].info;
    if (!set.gpus[i].ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "GPU ", g.index, " (", g.uuid, "): evidence failed verification: ",
          set.gpus[i].status().message(), "; refusing to boot"));
    }
    if (!set.gpus[i]->Passed()) {
      return absl::FailedPreconditionError(
          absl::StrCat("GPU ", g.index, " (", g.uuid, "): evidence failed verification: ",
                       absl::StrJoin(set.gpus[i]->Failures(), "; ")));
    }
  }
  if (set.gpus.size() != evidence.size() || !set.Passed()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "GPU evidence failed verification",
        set.topology.has_value() ? absl::StrCat(": ", set.topology->message()) : std::string()));
  }

  nlohmann::json list = nlohmann::json::array();
  nlohmann::json devices = nlohmann::json::array();
  bool ppcie = false;
  for (const GpuDeviceEvidence& e : evidence) {
    list.push_back({{"arch", e.info.arch},
                    {"evidence", absl::Base64Escape(std::string(e.report.begin(), e.report.end()))},
                    {"certificate", absl::Base64Escape(e.chain_pem)}});
    devices.push_back({{"index", e.info.index},
                       {"uuid", e.info.uuid},
                       {"arch", e.info.arch},
                       {"driver_version", e.info.driver_version},
                       {"vbios_version", e.info.vbios_version}});
    ppcie = ppcie || e.info.ppcie;
    result.devices.push_back(e.info);
  }
  const std::string nonce_hex = core::HexEncode(nonce);
  result.evidence_json =
      nlohmann::json{{"nonce", nonce_hex}, {"arch", evidence.front().info.arch},
                     {"evidence_list", list}}
          .dump();
  const auto digest = crypto::Sha256(result.evidence_json);
  result.event_payload = nlohmann::json{{"version", 1},
                                        {"provider", "nvidia"},
                                        {"simulated", source.simulated()},
                                        {"devices", devices},
                                        {"cc_mode", ppcie ? "ppcie" : "on"},
                                        {"nonce", nonce_hex},
                                        {"evidence_sha256", core::HexEncode(digest)}}
                             .dump();
  PML_RETURN_IF_ERROR(source.SetReady(true));
  return result;
}

}  // namespace pml::guest
