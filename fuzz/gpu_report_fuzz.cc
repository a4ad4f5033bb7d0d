// libFuzzer target for the NVIDIA SPDM report parser (lib/gpu/report.h): ParseReport and the
// opaque-field accessors must never crash, leak or read out of bounds, whatever the bytes. Seed
// with the vectors' reports:
//   gpu_report_fuzz -max_total_time=60 corpus/ seeds/   (seeds: attestation-report.bin, and the
//   *.hex.txt reports decoded to binary)
#include <cstddef>
#include <cstdint>

#include "absl/types/span.h"
#include "lib/gpu/report.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pml::gpu;  // NOLINT(google-build-using-namespace): fuzz entry point only
  auto report = ParseReport(absl::MakeConstSpan(data, size));
  if (!report.ok())
    return 0;
  volatile size_t sink = report->SignedBytes().size() + report->Signature()[95];
  for (Arch arch : {Arch::kHopper, Arch::kBlackwell, Arch::kLs10}) {
    sink = sink + DriverRimId(*report, arch).ok() + VbiosRimId(*report, arch).ok();
  }
  sink = sink + Nvdec0Status(*report).ok() + Fwid(*report).ok() + FeatureFlag(*report).ok() +
         ProtectedPcieStatus(*report).ok() + GpuSwitchPdis(*report).ok() +
         SwitchDevicePdi(*report).ok() + SwitchGpuPdis(*report).ok();
  (void)sink;
  return 0;
}
