#include "services/guest-agent/gpu_gate.h"

#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/core/clock.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/gpu/verify.h"
#include "services/attestation/gpu_core.h"

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

  attestation::GpuCoreOptions co;
  co.rim_cache_dir = options.rim_cache_dir;
  co.offline = options.offline || source.simulated();
  co.rim_service_url = options.rim_service_url;
  co.ocsp_url = options.ocsp_url;
  if (source.simulated())
    co.anchors = gpu::TrustAnchors::NvidiaDefault().WithSimulatedRoot();
  static const core::RealClock clock;
  PML_ASSIGN_OR_RETURN(auto verifier, attestation::GpuCore::Create(co, clock, nullptr));
  attestation::GpuVerifyInput in;
  std::copy(nonce.begin(), nonce.end(), in.nonce.begin());
  for (const GpuDeviceEvidence& e : evidence) {
    attestation::GpuDeviceInput d;
    d.index = e.info.index;
    d.uuid = e.info.uuid;
    d.report = e.report;
    d.certificate_chain = e.chain_pem;
    in.devices.push_back(std::move(d));
  }
  absl::StatusOr<attestation::GpuVerification> verified = verifier->Verify(in);
  if (!verified.ok()) {
    // Evidence the verifier cannot even read is a failed GPU, not a bad request of ours.
    return absl::FailedPreconditionError(absl::StrCat(
        "GPU evidence failed verification: ", verified.status().message(), "; refusing to boot"));
  }
  attestation::GpuVerification& v = *verified;
  for (size_t i = 0; i < v.devices.size(); ++i) {
    const auto& out = v.devices[i];
    const GpuDeviceInfo& g = evidence[i].info;
    if (!out.result.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("GPU ", g.index, " (", g.uuid,
                                                        "): evidence failed verification: ",
                                                        out.result.status().message()));
    }
    if (!out.result->Passed()) {
      return absl::FailedPreconditionError(
          absl::StrCat("GPU ", g.index, " (", g.uuid, "): evidence failed verification: ",
                       absl::StrJoin(out.result->Failures(), "; ")));
    }
  }
  if (!v.overall) {
    return absl::FailedPreconditionError(absl::StrCat(
        "GPU evidence failed verification",
        v.topology.has_value() ? absl::StrCat(": ", v.topology->message()) : std::string()));
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
