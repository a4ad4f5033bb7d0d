// pml-vmm's reader of its own metadata in libvirt domain XML (services/vmm/domain_xml.h
// ParseDomainMetadata), which runs over every domain on the host at start-up.
#include <cstddef>
#include <cstdint>

#include "services/vmm/domain_xml.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = pml::vmm::ParseDomainMetadata(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  (void)r;
  return 0;
}
