// libFuzzer target for the RIM (SWID tag) parser (lib/gpu/rim.h): ParseRim, and the measurement
// matcher on what it returns, must never crash, leak or read out of bounds. Seed with the
// vectors' RIMs (*.xml, *.swidtag):
//   gpu_rim_fuzz -max_total_time=60 -max_len=200000 corpus/ seeds/
#include <cstddef>
#include <cstdint>
#include <string>

#include "lib/gpu/report.h"
#include "lib/gpu/rim.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto rim = pml::gpu::ParseRim(std::string(reinterpret_cast<const char*>(data), size));
  if (!rim.ok())
    return 0;
  pml::gpu::Report empty;
  auto match = pml::gpu::MatchMeasurements(empty, &*rim, nullptr);
  volatile size_t sink = rim->measurements.size() + (match.ok() ? match->compared : 0);
  (void)sink;
  return 0;
}
