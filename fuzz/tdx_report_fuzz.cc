// libFuzzer target for ParseTdReport (lib/tee/tdx_guest_device.h): the 1024-byte TDREPORT the
// /dev/tdx_guest provider reads back from the kernel. Nothing may crash or read out of bounds;
// a report that parses must be exactly 1024 bytes (the header's contract).
#include <cstddef>
#include <cstdint>

#include "lib/tee/tdx_guest_device.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = pml::tee::ParseTdReport(absl::Span<const uint8_t>(data, size));
  if (r.ok() && size != 1024) {
    __builtin_trap();
  }
  return 0;
}
