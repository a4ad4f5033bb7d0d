#include "services/vmm/testing/fake_image.h"

#include <nlohmann/json.hpp>

#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "services/vmm/inventory.h"

namespace pml::vmm::testing {

absl::Status WriteFakeImage(absl::string_view images_dir, absl::string_view name,
                            const FakeImageOptions& o) {
  const std::string dir = absl::StrCat(images_dir, "/", name);
  PML_RETURN_IF_ERROR(core::MakeDirs(dir, 0755));
  std::vector<std::pair<std::string, std::string>> contents = {
      {"vmlinuz", absl::StrCat("fake kernel for ", name)},
      {"initramfs.cpio.gz", absl::StrCat("fake initramfs for ", name, " ", o.variant)}};
  if (o.with_firmware) contents.push_back({"OVMF.fd", "fake TDX firmware"});
  nlohmann::json files = nlohmann::json::object();
  std::vector<ImageFileInfo> infos;
  for (const auto& [file, data] : contents) {
    PML_RETURN_IF_ERROR(core::WriteFileAtomic(absl::StrCat(dir, "/", file), data, 0644));
    ImageFileInfo info;
    info.name = file;
    const auto h = crypto::Sha256(data);
    std::copy(h.begin(), h.end(), info.sha256.begin());
    info.size_bytes = data.size();
    infos.push_back(info);
    files[file] = {{"sha256", core::HexEncode(h)}, {"size", data.size()}};
  }
  nlohmann::json meta = {{"version", "test-1"},
                         {"variant", o.variant},
                         {"kernel", "vmlinuz"},
                         {"initrd", "initramfs.cpio.gz"},
                         {"cmdline", o.cmdline},
                         {"files", files},
                         {"os_image_hash", core::HexEncode(OsImageHash(infos))}};
  if (o.with_firmware) meta["firmware"] = "OVMF.fd";
  return core::WriteFileAtomic(dir + "/metadata.json", meta.dump(2), 0644);
}

}  // namespace pml::vmm::testing
