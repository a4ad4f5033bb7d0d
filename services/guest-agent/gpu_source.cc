#include "services/guest-agent/gpu_source.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "lib/core/status.h"
#include "lib/tee/nvml_collector.h"
#include "lib/tee/simulated_gpu.h"

namespace pml::guest {
namespace {

class SimulatedGpus final : public GpuSource {
 public:
  SimulatedGpus(std::vector<std::unique_ptr<tee::SimulatedGpu>> gpus, bool cc_off)
      : gpus_(std::move(gpus)), cc_off_(cc_off) {}

  absl::StatusOr<std::vector<GpuDeviceInfo>> List() override {
    std::vector<GpuDeviceInfo> out;
    for (const auto& g : gpus_)
      out.push_back(Info(*g));
    return out;
  }

  absl::StatusOr<std::vector<GpuDeviceEvidence>> Collect(absl::Span<const uint8_t> nonce) override {
    std::vector<GpuDeviceEvidence> out;
    for (const auto& g : gpus_) {
      PML_ASSIGN_OR_RETURN(std::vector<uint8_t> report, g->GetReport(nonce));
      out.push_back({Info(*g), std::move(report), g->CertChainPem()});
    }
    return out;
  }

  absl::Status SetReady(bool ready) override {
    absl::MutexLock l(&mu_);
    ready_ = ready;
    return absl::OkStatus();
  }
  bool simulated() const override { return true; }

 private:
  GpuDeviceInfo Info(const tee::SimulatedGpu& g) const {
    GpuDeviceInfo i;
    i.index = g.options().index;
    i.uuid = absl::StrCat("GPU-00000000-0000-0000-0000-5113000000", g.options().index < 10 ? "0" : "",
                          g.options().index);
    i.name = "PML simulated GH100 (SIMULATED)";
    i.arch = std::string(g.ArchName());
    i.driver_version = g.options().driver_version;
    i.vbios_version = g.options().vbios_version;
    i.cc_on = g.options().cc_mode || g.options().ppcie;
    i.ppcie = g.options().ppcie;
    i.simulated = true;
    return i;
  }

  const std::vector<std::unique_ptr<tee::SimulatedGpu>> gpus_;
  const bool cc_off_;
  absl::Mutex mu_;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
};

class NvmlGpus final : public GpuSource {
 public:
  explicit NvmlGpus(std::unique_ptr<tee::NvmlCollector> nvml) : nvml_(std::move(nvml)) {}

  absl::StatusOr<std::vector<GpuDeviceInfo>> List() override {
    PML_ASSIGN_OR_RETURN(tee::NvmlSystemState state, nvml_->SystemState());
    PML_ASSIGN_OR_RETURN(std::vector<tee::NvmlGpuInfo> gpus, nvml_->ListGpus());
    std::vector<GpuDeviceInfo> out;
    for (const auto& g : gpus)
      out.push_back(Info(state, g));
    return out;
  }

  absl::StatusOr<std::vector<GpuDeviceEvidence>> Collect(absl::Span<const uint8_t> nonce) override {
    PML_ASSIGN_OR_RETURN(tee::NvmlSystemState state, nvml_->SystemState());
    PML_ASSIGN_OR_RETURN(std::vector<tee::NvmlGpuEvidence> ev, nvml_->CollectEvidence(nonce));
    std::vector<GpuDeviceEvidence> out;
    for (auto& e : ev)
      out.push_back({Info(state, e.gpu), std::move(e.report), std::move(e.cert_chain_pem)});
    return out;
  }

  absl::Status SetReady(bool ready) override { return nvml_->SetReadyState(ready); }
  bool simulated() const override { return false; }

 private:
  static GpuDeviceInfo Info(const tee::NvmlSystemState& s, const tee::NvmlGpuInfo& g) {
    GpuDeviceInfo i;
    i.index = g.index;
    i.uuid = g.uuid;
    i.name = g.architecture_name;
    i.arch = g.architecture == 10 ? "BLACKWELL" : "HOPPER";
    i.driver_version = s.driver_version;
    i.vbios_version = g.vbios_version;
    i.cc_on = s.cc_enabled();
    i.ppcie = s.multi_gpu_mode == 1;
    i.devtools = s.devtools_mode == 1;
    return i;
  }

  std::unique_ptr<tee::NvmlCollector> nvml_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GpuSource>> MakeSimulatedGpus(int count, bool cc_off) {
  if (count < 1 || count > 16)
    return absl::InvalidArgumentError("simulated GPUs: want 1..16");
  PML_ASSIGN_OR_RETURN(tee::SimulatedGpuPki pki, tee::SimulatedGpuPki::Create());
  auto shared = std::make_shared<const tee::SimulatedGpuPki>(std::move(pki));
  std::vector<std::unique_ptr<tee::SimulatedGpu>> gpus;
  for (int i = 0; i < count; ++i) {
    tee::SimulatedGpuOptions o;
    o.index = static_cast<uint32_t>(i);
    o.cc_mode = !cc_off;
    PML_ASSIGN_OR_RETURN(auto g, tee::SimulatedGpu::Create(o, shared));
    gpus.push_back(std::move(g));
  }
  return std::unique_ptr<GpuSource>(new SimulatedGpus(std::move(gpus), cc_off));
}

absl::StatusOr<std::unique_ptr<GpuSource>> MakeNvmlGpus(const std::string& library) {
  PML_ASSIGN_OR_RETURN(auto nvml, tee::NvmlCollector::Open(library));
  return std::unique_ptr<GpuSource>(new NvmlGpus(std::move(nvml)));
}

}  // namespace pml::guest
