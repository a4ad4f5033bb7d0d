#pragma once
// Test support: writes a guest image directory in the VMM's format (inventory.h) with small
// stand-in files, so the VMM can define domains from it (libvirt's test driver never reads them).

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace pml::vmm::testing {

struct FakeImageOptions {
  std::string variant = "production";
  bool with_firmware = false;  // adds OVMF.fd: tdx_capable
  std::string cmdline = "console=ttyS0 panic=-1";
};

// Creates `<images_dir>/<name>/` with vmlinuz, initramfs.cpio.gz (and OVMF.fd) and a correct
// metadata.json.
absl::Status WriteFakeImage(absl::string_view images_dir, absl::string_view name,
                            const FakeImageOptions& options = {});

}  // namespace pml::vmm::testing
