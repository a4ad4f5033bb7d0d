#include "services/vmm/testing/fake_sysfs.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/status.h"

namespace pml::vmm::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kPciHostDir[] = "devices/pci0000:00";

// "0x" and `digits` lowercase hex digits, newline: how sysfs prints vendor, device and class.
std::string SysfsHex(uint32_t v, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%0*x\n", digits, static_cast<unsigned>(v));
  return buf;
}

fs::path ToPath(absl::string_view s) { return fs::path(s.begin(), s.end()); }

bool IsPathComponent(absl::string_view s) {
  return !s.empty() && s != "." && s != ".." && !absl::StrContains(s, '/');
}

absl::Status WriteText(const fs::path& path, absl::string_view text) {
  PML_RETURN_IF_ERROR(core::MakeDirs(path.parent_path().string()));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (out.fail()) {
    return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  }
  return absl::OkStatus();
}

// Replaces whatever is at `link` with a symlink to `target` (relative to the link's directory).
absl::Status Symlink(const std::string& target, const fs::path& link) {
  PML_RETURN_IF_ERROR(core::MakeDirs(link.parent_path().string()));
  std::error_code ec;
  fs::remove(link, ec);
  fs::create_symlink(target, link, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot link ", link.string(), " -> ", target, ": ", ec.message()));
  }
  return absl::OkStatus();
}

// Removes `dev_dir/<link_name>` and, when it named a <dir_under_root>/<x>, the back link
// <root>/<dir_under_root>/<x>/<back_sub>/<slot>.
void RemoveLinkAndBackLink(const fs::path& root, const fs::path& dev_dir, const char* link_name,
                           const fs::path& under_root, const fs::path& back_sub,
                           const std::string& slot) {
  std::error_code ec;
  const fs::path link = dev_dir / link_name;
  if (!fs::is_symlink(fs::symlink_status(link, ec))) {
    return;
  }
  const fs::path old = fs::read_symlink(link, ec);
  if (!ec && IsPathComponent(old.filename().string())) {
    fs::remove(root / under_root / old.filename() / back_sub / slot, ec);
  }
  fs::remove(link, ec);
}

}  // namespace

std::string FakePciDevicePath(absl::string_view root, absl::string_view slot) {
  return (ToPath(root) / kPciHostDir / ToPath(slot)).string();
}

absl::Status WriteFakePciDevice(absl::string_view root, const FakePciDevice& d) {
  if (root.empty()) {
    return absl::InvalidArgumentError("root is empty");
  }
  if (!IsPathComponent(d.slot)) {
    return absl::InvalidArgumentError(absl::StrCat("slot \"", d.slot, "\" is not a file name"));
  }
  if (!d.driver.empty() && !IsPathComponent(d.driver)) {
    return absl::InvalidArgumentError(absl::StrCat("driver \"", d.driver, "\" is not a file name"));
  }
  const fs::path r = ToPath(root);
  const fs::path dev{FakePciDevicePath(root, d.slot)};
  PML_RETURN_IF_ERROR(core::MakeDirs(dev.string()));
  PML_RETURN_IF_ERROR(WriteText(dev / "vendor", SysfsHex(d.vendor, 4)));
  PML_RETURN_IF_ERROR(WriteText(dev / "device", SysfsHex(d.device, 4)));
  PML_RETURN_IF_ERROR(WriteText(dev / "class", SysfsHex(d.pci_class, 6)));
  PML_RETURN_IF_ERROR(WriteText(dev / "numa_node", absl::StrCat(d.numa_node, "\n")));
  // <root>/bus/pci/devices/<slot> -> ../../../devices/pci0000:00/<slot>
  PML_RETURN_IF_ERROR(Symlink(absl::StrCat("../../../", kPciHostDir, "/", d.slot),
                              r / "bus" / "pci" / "devices" / d.slot));

  RemoveLinkAndBackLink(r, dev, "iommu_group", "kernel/iommu_groups", "devices", d.slot);
  if (d.iommu_group >= 0) {
    const std::string n = std::to_string(d.iommu_group);
    const fs::path group = r / "kernel" / "iommu_groups" / n;
    PML_RETURN_IF_ERROR(core::MakeDirs((group / "devices").string()));
    PML_RETURN_IF_ERROR(
        Symlink(absl::StrCat("../../../kernel/iommu_groups/", n), dev / "iommu_group"));
    PML_RETURN_IF_ERROR(Symlink(absl::StrCat("../../../../", kPciHostDir, "/", d.slot),
                                group / "devices" / d.slot));
  }

  RemoveLinkAndBackLink(r, dev, "driver", "bus/pci/drivers", "", d.slot);
  if (!d.driver.empty()) {
    const fs::path drv = r / "bus" / "pci" / "drivers" / d.driver;
    PML_RETURN_IF_ERROR(core::MakeDirs(drv.string()));
    PML_RETURN_IF_ERROR(
        Symlink(absl::StrCat("../../../bus/pci/drivers/", d.driver), dev / "driver"));
    PML_RETURN_IF_ERROR(
        Symlink(absl::StrCat("../../../../", kPciHostDir, "/", d.slot), drv / d.slot));
  }
  return absl::OkStatus();
}

absl::Status WriteFakeNumaNode(absl::string_view root, int id, absl::string_view cpulist,
                               uint64_t mem_mib, uint64_t free_hugepages) {
  if (root.empty()) {
    return absl::InvalidArgumentError("root is empty");
  }
  if (id < 0) {
    return absl::InvalidArgumentError(absl::StrCat("numa node id ", id, " is negative"));
  }
  const fs::path node = ToPath(root) / "devices" / "system" / "node" / absl::StrCat("node", id);
  PML_RETURN_IF_ERROR(WriteText(node / "cpulist", absl::StrCat(cpulist, "\n")));
  const uint64_t total_kib = mem_mib * 1024;
  // The kernel's per-node meminfo layout (drivers/base/node.c), abridged.
  PML_RETURN_IF_ERROR(
      WriteText(node / "meminfo",
                absl::StrCat("Node ", id, " MemTotal:       ", total_kib, " kB\n",      //
                             "Node ", id, " MemFree:        ", total_kib / 2, " kB\n",  //
                             "Node ", id, " MemUsed:        ", total_kib - total_kib / 2, " kB\n",
                             "Node ", id, " HugePages_Total: ", free_hugepages, "\n",  //
                             "Node ", id, " HugePages_Free:  ", free_hugepages, "\n")));
  const fs::path pages2m = node / "hugepages" / "hugepages-2048kB";
  PML_RETURN_IF_ERROR(WriteText(pages2m / "nr_hugepages", absl::StrCat(free_hugepages, "\n")));
  PML_RETURN_IF_ERROR(WriteText(pages2m / "free_hugepages", absl::StrCat(free_hugepages, "\n")));
  const fs::path pages1g = node / "hugepages" / "hugepages-1048576kB";
  PML_RETURN_IF_ERROR(WriteText(pages1g / "nr_hugepages", "0\n"));
  PML_RETURN_IF_ERROR(WriteText(pages1g / "free_hugepages", "0\n"));
  return absl::OkStatus();
}

absl::Status WriteHgxH100Host(absl::string_view root) {
  struct Entry {
    const char* slot;
    uint16_t device;
    uint32_t pci_class;
    int numa_node;
  };
  constexpr Entry kDevices[] = {
      {"0000:18:00.0", 0x2330, 0x030200, 0}, {"0000:2a:00.0", 0x2330, 0x030200, 0},
      {"0000:3a:00.0", 0x2330, 0x030200, 0}, {"0000:5d:00.0", 0x2330, 0x030200, 0},
      {"0000:9a:00.0", 0x2330, 0x030200, 1}, {"0000:ab:00.0", 0x2330, 0x030200, 1},
      {"0000:ba:00.0", 0x2330, 0x030200, 1}, {"0000:db:00.0", 0x2330, 0x030200, 1},
      {"0000:05:00.0", 0x22a3, 0x068000, 0}, {"0000:06:00.0", 0x22a3, 0x068000, 0},
      {"0000:85:00.0", 0x22a3, 0x068000, 1}, {"0000:86:00.0", 0x22a3, 0x068000, 1},
  };
  int group = kHgxFirstIommuGroup;
  for (const Entry& e : kDevices) {
    FakePciDevice d;
    d.slot = e.slot;
    d.device = e.device;
    d.pci_class = e.pci_class;
    d.numa_node = e.numa_node;
    d.iommu_group = group++;
    PML_RETURN_IF_ERROR(WriteFakePciDevice(root, d));
  }
  FakePciDevice audio;  // an NVIDIA function that is not a GPU: ignored
  audio.slot = "0000:18:00.1";
  audio.device = 0x22ba;
  audio.pci_class = 0x040300;
  audio.iommu_group = group++;
  audio.driver = "";
  PML_RETURN_IF_ERROR(WriteFakePciDevice(root, audio));
  FakePciDevice nic;  // not NVIDIA: ignored
  nic.slot = "0000:17:00.0";
  nic.vendor = 0x8086;
  nic.device = 0x1593;
  nic.pci_class = 0x020000;
  nic.iommu_group = group++;
  nic.driver = "ice";
  PML_RETURN_IF_ERROR(WriteFakePciDevice(root, nic));

  constexpr uint64_t kTibInMib = 1 << 20;
  PML_RETURN_IF_ERROR(WriteFakeNumaNode(root, 0, "0-47,96-143", kTibInMib, 1024));
  PML_RETURN_IF_ERROR(WriteFakeNumaNode(root, 1, "48-95,144-191", kTibInMib, 1024));
  return absl::OkStatus();
}

}  // namespace pml::vmm::testing
