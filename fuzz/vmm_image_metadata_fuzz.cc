// pml-vmm's image metadata.json parser (services/vmm/inventory.h ParseImageMetadata): any bytes
// must give a value or an error, never a crash.
#include <cstddef>
#include <cstdint>

#include "services/vmm/inventory.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = pml::vmm::ParseImageMetadata(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  (void)r;
  return 0;
}
