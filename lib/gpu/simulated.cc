#include "lib/gpu/simulated.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/crypto/hash.h"

namespace pml::gpu {

Rim SimulatedGoldenRim(RimKind kind, absl::string_view driver_version,
                       absl::string_view vbios_version) {
  Rim rim;
  rim.tag_id = std::string(kSimulatedGoldenRimId);
  rim.product = "GH100 (PML SIMULATED)";
  rim.firmware_manufacturer_id = "";
  if (kind == RimKind::kVbios) {
    rim.colloquial_version = std::string(vbios_version);
    return rim;
  }
  rim.colloquial_version = std::string(driver_version);
  for (uint32_t block = 1; block <= kSimulatedGpuActiveBlocks; ++block) {
    const crypto::Sha384Digest d = crypto::Sha384(absl::StrCat(
        "pml simulated gh100 measurement v1|", driver_version, "|", vbios_version, "|", block));
    RimMeasurement m;
    m.index = block - 1;
    m.active = true;
    m.name = absl::StrCat("SIMULATED_", block);
    m.size = d.size();
    m.alternatives.emplace_back(d.begin(), d.end());
    rim.measurements.push_back(std::move(m));
  }
  return rim;
}

}  // namespace pml::gpu
