#include "services/attestation/gpu_core.h"

#include <utility>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/x509.h"
#include "lib/gpu/errors.h"
#include "lib/gpu/online.h"
#include "lib/gpu/report.h"
#include "lib/gpu/sources.h"

namespace pml::attestation {
namespace {

// Concatenated PEM is used as is; concatenated DER is re-encoded as PEM.
absl::StatusOr<std::string> ChainPem(absl::string_view chain) {
  if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(chain), "-----BEGIN"))
    return std::string(chain);
  PML_ASSIGN_OR_RETURN(std::vector<crypto::X509Ptr> certs,
                       crypto::ParseDerCertificates(core::AsBytes(chain)));
  std::string pem;
  for (const auto& c : certs) {
    PML_ASSIGN_OR_RETURN(std::string one, crypto::CertificateToPem(*c));
    pem += one;
  }
  return pem;
}

}  // namespace

struct GpuCore::Metrics {
  prometheus::Family<prometheus::Counter>* devices = nullptr;
  prometheus::Histogram* seconds = nullptr;
};

absl::StatusOr<std::unique_ptr<GpuCore>> GpuCore::Create(GpuCoreOptions options,
                                                         const core::Clock& clock,
                                                         prometheus::Registry* registry) {
  if (!options.rim_cache_dir.empty())
    PML_RETURN_IF_ERROR(core::MakeDirs(options.rim_cache_dir, 0700));
  return std::unique_ptr<GpuCore>(new GpuCore(std::move(options), clock, registry));
}

GpuCore::GpuCore(GpuCoreOptions options, const core::Clock& clock, prometheus::Registry* registry)
    : options_(std::move(options)),
      clock_(clock),
      verifier_(options_.anchors, options_.verifier),
      metrics_(std::make_unique<Metrics>()) {
  if (!options_.rim_cache_dir.empty())
    offline_rims_ = std::make_unique<gpu::DirectoryRimSource>(options_.rim_cache_dir);
  if (!options_.offline) {
    online_rims_ = std::make_unique<gpu::RimServiceSource>(
        gpu::MakeCurlHttpClient(), options_.rim_service_url, options_.rim_cache_dir);
    online_ocsp_ =
        std::make_unique<gpu::HttpOcspSource>(gpu::MakeCurlHttpClient(), options_.ocsp_url);
  }
  if (registry == nullptr)
    return;
  metrics_->devices = &prometheus::BuildCounter()
                           .Name("pml_verifier_gpu_verifications_total")
                           .Help(
                               "GPU/NVSwitch devices verified, by result: passed (verdict true), "
                               "failed (verified, verdict false: RIM, measurement or OCSP), "
                               "rejected (signature, chain, nonce, FWID or architecture).")
                           .Register(*registry);
  metrics_->seconds = &prometheus::BuildHistogram()
                           .Name("pml_verifier_gpu_verification_seconds")
                           .Help("Time to verify one VerifyGpuEvidence request (all devices).")
                           .Register(*registry)
                           .Add({}, prometheus::Histogram::BucketBoundaries{
                                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5, 1, 2.5, 5, 10});
}

GpuCore::~GpuCore() = default;

absl::StatusOr<GpuVerification> GpuCore::Verify(const GpuVerifyInput& input) {
  const absl::Time started = absl::Now();
  if (input.devices.empty())
    return absl::InvalidArgumentError("evidence: no devices");
  if (input.devices.size() > gpu::kMaxEvidenceDevices) {
    return absl::InvalidArgumentError(absl::StrCat("evidence: ", input.devices.size(),
                                                   " devices, at most ", gpu::kMaxEvidenceDevices));
  }
  // Split into GPUs and switches, remembering request positions.
  std::vector<gpu::DeviceEvidence> gpus, switches;
  std::vector<size_t> gpu_pos, switch_pos;
  for (size_t i = 0; i < input.devices.size(); ++i) {
    const GpuDeviceInput& d = input.devices[i];
    if (d.report.empty())
      return absl::InvalidArgumentError(absl::StrCat("evidence[", i, "].spdm_report: empty"));
    auto pem = ChainPem(d.certificate_chain);
    if (!pem.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "evidence[", i, "].certificate_chain: CERT_CHAIN_MALFORMED: ", pem.status().message()));
    }
    gpu::DeviceEvidence e{d.arch, std::nullopt, d.report, *std::move(pem)};
    (d.is_switch ? switches : gpus).push_back(std::move(e));
    (d.is_switch ? switch_pos : gpu_pos).push_back(i);
  }

  gpu::StaticRimSource request_rims;
  for (size_t i = 0; i < input.rims.size(); ++i) {
    const GpuRimInput& r = input.rims[i];
    if (!gpu::IsValidRimId(r.id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("rims[", i, "].rim_id: not a RIM id (want [A-Za-z0-9._-], 1..128)"));
    }
    std::string xml = r.content;
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(xml), "{")) {
      auto decoded = gpu::DecodeRimServiceResponse(xml, r.id);
      if (!decoded.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("rims[", i, "].content: ", decoded.status().message()));
      }
      xml = *std::move(decoded);
    }
    request_rims.Add(r.id, std::move(xml));
  }
  const bool offline = input.offline || options_.offline;
  std::vector<gpu::RimSource*> rim_chain;
  if (!input.rims.empty())
    rim_chain.push_back(&request_rims);
  if (offline_rims_ != nullptr)
    rim_chain.push_back(offline_rims_.get());
  if (!offline && online_rims_ != nullptr)
    rim_chain.push_back(online_rims_.get());
  gpu::FirstOfRimSource rims(rim_chain);

  gpu::CachedOcspSource stored;
  for (size_t i = 0; i < input.ocsp_responses.size(); ++i) {
    absl::Status s = stored.Add(input.ocsp_responses[i]);
    if (!s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("ocsp_responses[", i, "]: ", s.message()));
    }
  }
  gpu::OcspSource* online = offline ? nullptr : online_ocsp_.get();
  gpu::StoredThenOnlineOcsp request_ocsp(&stored, online);

  gpu::VerifyOptions vo;
  vo.now = input.at.value_or(clock_.Now());
  vo.rims = rim_chain.empty() ? nullptr : &rims;
  if (!input.ocsp_responses.empty()) {
    vo.ocsp = &request_ocsp;
  } else {
    vo.ocsp = online;  // stable address: its failures and answers stay cached
  }
  vo.policy = options_.policy;

  gpu::SetOutcome set = verifier_.VerifyEach(gpus, switches, input.nonce, vo);

  GpuVerification out;
  out.verification_time = vo.now;
  out.devices.resize(input.devices.size());
  auto place = [&](std::vector<absl::StatusOr<gpu::VerifiedGpu>>& list,
                   const std::vector<size_t>& pos) -> absl::Status {
    for (size_t k = 0; k < list.size(); ++k) {
      const size_t i = pos[k];
      if (!list[k].ok() && absl::IsInvalidArgument(list[k].status())) {
        const std::string cls = gpu::ErrorClass(list[k].status());
        const absl::string_view field =
            absl::StartsWith(cls, "CERT_CHAIN") ? "certificate_chain" : "spdm_report";
        return absl::InvalidArgumentError(
            absl::StrCat("evidence[", i, "].", field, ": ", list[k].status().message()));
      }
      out.devices[i].input = &input.devices[i];
      out.devices[i].result = std::move(list[k]);
    }
    return absl::OkStatus();
  };
  out.overall = set.Passed();
  out.simulated = set.simulated();
  out.topology = set.topology;
  out.claims_json = set.Claims().dump();
  PML_RETURN_IF_ERROR(place(set.gpus, gpu_pos));
  PML_RETURN_IF_ERROR(place(set.switches, switch_pos));

  if (metrics_->devices != nullptr) {
    for (const auto& d : out.devices) {
      const char* result = !d.result.ok() ? "rejected" : d.result->Passed() ? "passed" : "failed";
      metrics_->devices->Add({{"result", result}}).Increment();
    }
    metrics_->seconds->Observe(absl::ToDoubleSeconds(absl::Now() - started));
  }
  return out;
}

}  // namespace pml::attestation
