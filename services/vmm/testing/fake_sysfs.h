#pragma once
// A fake sysfs tree for tests (STYLE.md §7 "sysfs: a temp-dir tree"): PCI devices with their
// IOMMU groups and drivers, and NUMA nodes, laid out as Linux does, so ScanGpus and
// ReadNumaNodes (services/vmm/inventory.h) run on `root` instead of /sys. Links are relative,
// as the kernel's are, so a tree can be moved. Test-only (pml_vmm_testing).
//
// Not thread-safe against concurrent writers of the same tree. Errors: kInvalidArgument for a
// bad argument (named), kInternal (with the path) when the filesystem refuses.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace pml::vmm::testing {

struct FakePciDevice {
  std::string slot;  // "0000:18:00.0"
  uint16_t vendor = 0x10de;
  uint16_t device = 0x2330;         // H100 80GB HBM3 (SXM)
  uint32_t pci_class = 0x030200;    // 3D controller
  int numa_node = 0;                // written as is; -1 is the kernel's "none"
  int iommu_group = -1;             // -1: no iommu_group link
  std::string driver = "vfio-pci";  // "": unbound (no driver link)
};

// The device's directory: <root>/devices/pci0000:00/<slot>. Tests use it to corrupt attributes.
std::string FakePciDevicePath(absl::string_view root, absl::string_view slot);

// Creates (or rewrites) the device: <root>/devices/pci0000:00/<slot>/{vendor,device,class,
// numa_node}; the link <root>/bus/pci/devices/<slot>; when iommu_group >= 0 the iommu_group link
// to <root>/kernel/iommu_groups/<n> and its devices/<slot> link back; when driver is not empty
// the driver link to <root>/bus/pci/drivers/<driver> and its <slot> link back. Rewriting a
// device first removes its old iommu_group and driver links (and their back links).
// kInvalidArgument when slot or driver is empty where required or contains '/'.
absl::Status WriteFakePciDevice(absl::string_view root, const FakePciDevice& device);

// <root>/devices/system/node/node<id>/: cpulist, meminfo ("Node <id> MemTotal: <kB> kB" among
// other lines), hugepages/hugepages-2048kB/{nr,free}_hugepages (= free_hugepages) and an
// empty hugepages-1048576kB pool.
absl::Status WriteFakeNumaNode(absl::string_view root, int id, absl::string_view cpulist,
                               uint64_t mem_mib, uint64_t free_hugepages);

// An HGX H100 host: 8 H100 SXM GPUs (0x2330), 0000:18:00.0 0000:2a:00.0 0000:3a:00.0
// 0000:5d:00.0 on NUMA node 0 and 0000:9a:00.0 0000:ab:00.0 0000:ba:00.0 0000:db:00.0 on node 1;
// 4 NVSwitches (0x22a3, class 0x068000), 0000:05:00.0 0000:06:00.0 on node 0 and 0000:85:00.0
// 0000:86:00.0 on node 1; each in its own IOMMU group (kHgxFirstIommuGroup + index in that
// order: GPUs 40..47, NVSwitches 48..51), all bound to vfio-pci. Noise that a scan must ignore:
// an Intel NIC (0x8086:0x1593, class 0x020000) at 0000:17:00.0 bound to ice (group 53), and an
// NVIDIA audio function (0x10de:0x22ba, class 0x040300) at 0000:18:00.1, unbound (group 52). NUMA
// node0 cpus "0-47,96-143", node1 "48-95,144-191", 1 TiB each, 1024 free 2 MiB hugepages each.
inline constexpr int kHgxFirstIommuGroup = 40;
absl::Status WriteHgxH100Host(absl::string_view root);

}  // namespace pml::vmm::testing
