#include "services/vmm/inventory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"
#include "services/vmm/testing/fake_sysfs.h"
#include "services/vmm/vm_model.h"

namespace pml::vmm {
namespace {

namespace fs = std::filesystem;
using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::pml::vmm::testing::FakePciDevice;
using ::pml::vmm::testing::FakePciDevicePath;
using ::pml::vmm::testing::kHgxFirstIommuGroup;
using ::pml::vmm::testing::WriteFakeNumaNode;
using ::pml::vmm::testing::WriteFakePciDevice;
using ::pml::vmm::testing::WriteHgxH100Host;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// A fresh directory under the test temp dir, removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/pml_vmm_inventory_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void Write(const std::string& path, const std::string& content) {
    ASSERT_THAT(core::MakeDirs(fs::path(path).parent_path().string()), IsOk());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
    out.close();
    ASSERT_FALSE(out.fail()) << path;
  }
  std::string dir_;
};

// ----- GPUs -----

using ScanGpusTest = TempDirTest;

const GpuDevice* FindSlot(const std::vector<GpuDevice>& gpus, absl::string_view slot) {
  for (const GpuDevice& g : gpus) {
    if (g.slot == slot) {
      return &g;
    }
  }
  return nullptr;
}

TEST_F(ScanGpusTest, HgxHostHasEightGpusAndFourNvSwitchesInSlotOrder) {
  ASSERT_THAT(WriteHgxH100Host(dir_), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<GpuDevice> gpus, ScanGpus(dir_));
  std::vector<std::string> slots;
  slots.reserve(gpus.size());
  for (const GpuDevice& g : gpus) {
    slots.push_back(g.slot);
  }
  EXPECT_THAT(slots, ElementsAre("0000:05:00.0", "0000:06:00.0", "0000:18:00.0", "0000:2a:00.0",
                                 "0000:3a:00.0", "0000:5d:00.0", "0000:85:00.0", "0000:86:00.0",
                                 "0000:9a:00.0", "0000:ab:00.0", "0000:ba:00.0", "0000:db:00.0"));
  const std::map<std::string, int> gpu_node = {
      {"0000:18:00.0", 0}, {"0000:2a:00.0", 0}, {"0000:3a:00.0", 0}, {"0000:5d:00.0", 0},
      {"0000:9a:00.0", 1}, {"0000:ab:00.0", 1}, {"0000:ba:00.0", 1}, {"0000:db:00.0", 1}};
  const std::map<std::string, int> switch_node = {
      {"0000:05:00.0", 0}, {"0000:06:00.0", 0}, {"0000:85:00.0", 1}, {"0000:86:00.0", 1}};
  // Groups follow WriteHgxH100Host's order: GPUs first, then NVSwitches.
  const std::vector<std::string> group_order = {"0000:18:00.0", "0000:2a:00.0", "0000:3a:00.0",
                                                "0000:5d:00.0", "0000:9a:00.0", "0000:ab:00.0",
                                                "0000:ba:00.0", "0000:db:00.0", "0000:05:00.0",
                                                "0000:06:00.0", "0000:85:00.0", "0000:86:00.0"};
  int gpu_count = 0, switch_count = 0;
  for (const GpuDevice& g : gpus) {
    SCOPED_TRACE(g.slot);
    EXPECT_EQ(g.vendor_id, 0x10de);
    EXPECT_EQ(g.driver, "vfio-pci");
    EXPECT_TRUE(g.vfio_bound);
    EXPECT_EQ(g.unusable_reason, "");
    const auto pos = std::find(group_order.begin(), group_order.end(), g.slot);
    ASSERT_NE(pos, group_order.end());
    EXPECT_EQ(g.iommu_group, kHgxFirstIommuGroup + (pos - group_order.begin()));
    if (gpu_node.count(g.slot) != 0) {
      ++gpu_count;
      EXPECT_EQ(g.kind, GpuKind::kGpu);
      EXPECT_EQ(g.device_id, 0x2330);
      EXPECT_EQ(g.name, "NVIDIA H100 80GB HBM3");
      EXPECT_EQ(g.arch, GpuArchitecture::kHopper);
      EXPECT_EQ(g.numa_node, gpu_node.at(g.slot));
    } else {
      ++switch_count;
      EXPECT_EQ(g.kind, GpuKind::kNvSwitch);
      EXPECT_EQ(g.device_id, 0x22a3);
      EXPECT_EQ(g.name, "NVIDIA NVSwitch (LS10)");
      EXPECT_EQ(g.arch, GpuArchitecture::kLs10);
      EXPECT_EQ(g.numa_node, switch_node.at(g.slot));
    }
  }
  EXPECT_EQ(gpu_count, 8);
  EXPECT_EQ(switch_count, 4);
  // The NIC and the GPU's audio function are not listed.
  EXPECT_EQ(FindSlot(gpus, "0000:17:00.0"), nullptr);
  EXPECT_EQ(FindSlot(gpus, "0000:18:00.1"), nullptr);
}

TEST_F(ScanGpusTest, KnownDeviceIdsAreNamedAndUnknownOnesAreNot) {
  struct Case {
    const char* name;
    GpuArchitecture arch;
    uint16_t device;
  };
  const Case cases[] = {
      {"NVIDIA H100 PCIe", GpuArchitecture::kHopper, 0x2331},
      {"NVIDIA H100 NVL", GpuArchitecture::kHopper, 0x2321},
      {"NVIDIA H200", GpuArchitecture::kHopper, 0x2335},
      {"NVIDIA H200 NVL", GpuArchitecture::kHopper, 0x233b},
      {"NVIDIA GH200", GpuArchitecture::kHopper, 0x2342},
      {"NVIDIA B200", GpuArchitecture::kBlackwell, 0x2901},
      {"unknown", GpuArchitecture::kUnspecified, 0x1234},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    FakePciDevice d;
    d.slot = "0000:41:00.0";
    d.device = c.device;
    d.iommu_group = 3;
    ASSERT_THAT(WriteFakePciDevice(dir_, d), IsOk());
    PML_ASSERT_OK_AND_ASSIGN(std::vector<GpuDevice> gpus, ScanGpus(dir_));
    ASSERT_THAT(gpus, SizeIs(1));
    EXPECT_EQ(gpus[0].device_id, c.device);
    EXPECT_EQ(gpus[0].name, c.name);
    EXPECT_EQ(gpus[0].arch, c.arch);
    EXPECT_EQ(gpus[0].kind, GpuKind::kGpu);
  }
}

TEST_F(ScanGpusTest, GpuBoundToNvidiaIsUnusableAndNamesTheDriver) {
  ASSERT_THAT(WriteHgxH100Host(dir_), IsOk());
  FakePciDevice d{.slot = "0000:2a:00.0", .numa_node = 0, .iommu_group = 41, .driver = "nvidia"};
  ASSERT_THAT(WriteFakePciDevice(dir_, d), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<GpuDevice> gpus, ScanGpus(dir_));
  ASSERT_THAT(gpus, SizeIs(12));
  const GpuDevice* g = FindSlot(gpus, "0000:2a:00.0");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->driver, "nvidia");
  EXPECT_FALSE(g->vfio_bound);
  EXPECT_EQ(g->iommu_group, 41);
  EXPECT_EQ(g->unusable_reason, "bound to nvidia, not vfio-pci");
  // The others are unaffected.
  EXPECT_EQ(FindSlot(gpus, "0000:18:00.0")->unusable_reason, "");
}

TEST_F(ScanGpusTest, UnboundGpuIsUnusable) {
  FakePciDevice d{.slot = "0000:18:00.0", .iommu_group = 7, .driver = ""};
  ASSERT_THAT(WriteFakePciDevice(dir_, d), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<GpuDevice> gpus, ScanGpus(dir_));
  ASSERT_THAT(gpus, SizeIs(1));
  EXPECT_EQ(gpus[0].driver, "");
  EXPECT_FALSE(gpus[0].vfio_bound);
  EXPECT_EQ(gpus[0].unusable_reason, "not bound to any driver (needs vfio-pci)");
}

TEST_F(ScanGpusTest, GpuWithoutIommuGroupIsUnusable) {
  FakePciDevice d{.slot = "0000:18:00.0", .iommu_group = -1};
  ASSERT_THAT(WriteFakePciDevice(dir_, d), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<GpuDevice> gpus, ScanGpus(dir_));
  ASSERT_THAT(gpus, SizeIs(1));
  EXPECT_EQ(gpus[0].iommu_group, -1);
  EXPECT_TRUE(gpus[0].vfio_bound);
  EXPECT_EQ(gpus[0].unusable_reason, "no IOMMU group (IOMMU off?)");
}

TEST_F(ScanGpusTest, EveryFailedCheckIsListed) {
  FakePciDevice d{.slot = "0000:18:00.0", .iommu_group = -1, .driver = "nouveau"};
  ASSERT_THAT(WriteFakePciDevice(dir_, d), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<GpuDevice> gpus, ScanGpus(dir_));
  ASSERT_THAT(gpus, SizeIs(1));
  EXPECT_EQ(gpus[0].unusable_reason, "bound to nouveau, not vfio-pci; no IOMMU group (IOMMU off?)");
}

TEST_F(ScanGpusTest, IommuGroupPeerOnAHostDriverMakesGpuUnusable) {
  ASSERT_THAT(WriteFakePciDevice(dir_, {.slot = "0000:18:00.0", .iommu_group = 5}), IsOk());
  // A USB controller on the card, in the GPU's group, still bound to the host driver.
  ASSERT_THAT(WriteFakePciDevice(dir_, {.slot = "0000:18:00.2",
                                        .device = 0x1ad8,
                                        .pci_class = 0x0c0330,
                                        .iommu_group = 5,
                                        .driver = "xhci_hcd"}),
              IsOk());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<GpuDevice> gpus, ScanGpus(dir_));
  ASSERT_THAT(gpus, SizeIs(1));
  EXPECT_EQ(gpus[0].unusable_reason,
            "IOMMU group 5 also holds 0000:18:00.2 bound to xhci_hcd (needs vfio-pci)");
}

TEST_F(ScanGpusTest, IommuGroupPeersThatVfioAllowsAreFine) {
  ASSERT_THAT(WriteFakePciDevice(dir_, {.slot = "0000:18:00.0", .iommu_group = 5}), IsOk());
  // Unbound audio function, a PCI bridge on pcieport... (bridges pass whatever their driver),
  // a pci-stub function and a second vfio-pci function.
  ASSERT_THAT(WriteFakePciDevice(dir_, {.slot = "0000:18:00.1",
                                        .device = 0x22ba,
                                        .pci_class = 0x040300,
                                        .iommu_group = 5,
                                        .driver = ""}),
              IsOk());
  ASSERT_THAT(WriteFakePciDevice(dir_, {.slot = "0000:17:00.0",
                                        .vendor = 0x1000,
                                        .device = 0xc010,
                                        .pci_class = 0x060400,
                                        .iommu_group = 5,
                                        .driver = "some-switch"}),
              IsOk());
  ASSERT_THAT(
      WriteFakePciDevice(
          dir_,
          {.slot = "0000:18:00.3", .pci_class = 0x0c8000, .iommu_group = 5, .driver = "pci-stub"}),
      IsOk());
  ASSERT_THAT(
      WriteFakePciDevice(
          dir_,
          {.slot = "0000:18:00.4", .pci_class = 0x0c8000, .iommu_group = 5, .driver = "vfio-pci"}),
      IsOk());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<GpuDevice> gpus, ScanGpus(dir_));
  ASSERT_THAT(gpus, SizeIs(1));
  EXPECT_EQ(gpus[0].unusable_reason, "");
}

TEST_F(ScanGpusTest, RebindingThroughTheFakeMovesGroupAndDriverLinks) {
  ASSERT_THAT(WriteFakePciDevice(dir_, {.slot = "0000:18:00.0", .iommu_group = 5}), IsOk());
  ASSERT_THAT(
      WriteFakePciDevice(dir_, {.slot = "0000:18:00.0", .iommu_group = 6, .driver = "nvidia"}),
      IsOk());
  EXPECT_FALSE(
      fs::exists(fs::symlink_status(dir_ + "/kernel/iommu_groups/5/devices/0000:18:00.0")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir_ + "/bus/pci/drivers/vfio-pci/0000:18:00.0")));
  PML_ASSERT_OK_AND_ASSIGN(std::vector<GpuDevice> gpus, ScanGpus(dir_));
  ASSERT_THAT(gpus, SizeIs(1));
  EXPECT_EQ(gpus[0].iommu_group, 6);
  EXPECT_EQ(gpus[0].driver, "nvidia");
}

TEST_F(ScanGpusTest, MalformedDevicesAreSkippedOrReportedWithoutFailingTheScan) {
  struct Case {
    const char* name;
    const char* slot;
    const char* file;     // under the device directory; "" for none
    std::string content;  // written to `file` unless `remove`
    bool remove = false;
    bool listed = false;      // still returned by the scan
    int numa_node = 0;        // when listed
    const char* reason = "";  // when listed
  };
  const std::vector<Case> cases = {
      {"garbage vendor", "0000:20:00.0", "vendor", "nvidia\n"},
      {"vendor without 0x", "0000:21:00.0", "vendor", "10de\n"},
      {"vendor too long", "0000:22:00.0", "vendor", "0x10de0\n"},
      {"garbage device", "0000:23:00.0", "device", "0x23\n"},
      {"missing class", "0000:24:00.0", "class", "", true},
      {"empty class", "0000:25:00.0", "class", ""},
      {"huge numa_node", "0000:26:00.0", "numa_node", std::string(1 << 20, '7'), false, true, -1},
      {"garbage numa_node", "0000:27:00.0", "numa_node", "zero\n", false, true, -1},
      {"out of range numa_node", "0000:28:00.0", "numa_node", "4096\n", false, true, -1},
      {"signed numa_node", "0000:29:00.0", "numa_node", "+1\n", false, true, -1},
      {"missing numa_node", "0000:30:00.0", "numa_node", "", true, true, -1},
      {"driver is a file", "0000:31:00.0", "driver", "vfio-pci", false, true, 0,
       "driver link is malformed"},
  };
  int group = 100;  // each device in its own group, so one's defect does not spill over
  for (const Case& c : cases) {
    FakePciDevice d{.slot = c.slot, .iommu_group = group++};
    ASSERT_THAT(WriteFakePciDevice(dir_, d), IsOk());
    const std::string path = FakePciDevicePath(dir_, c.slot) + "/" + c.file;
    fs::remove(path);
    if (!c.remove) {
      Write(path, c.content);
    }
  }
  // Also: a file where the class should be a directory, a FIFO for the vendor (must not hang),
  // an iommu_group link with a non-numeric target, and a non-PCI name in bus/pci/devices.
  ASSERT_THAT(WriteFakePciDevice(dir_, {.slot = "0000:40:00.0", .iommu_group = group++}), IsOk());
  fs::remove(FakePciDevicePath(dir_, "0000:40:00.0") + "/class");
  fs::create_directory(FakePciDevicePath(dir_, "0000:40:00.0") + "/class");
  ASSERT_THAT(WriteFakePciDevice(dir_, {.slot = "0000:41:00.0", .iommu_group = group++}), IsOk());
  fs::remove(FakePciDevicePath(dir_, "0000:41:00.0") + "/vendor");
  ASSERT_EQ(::mkfifo((FakePciDevicePath(dir_, "0000:41:00.0") + "/vendor").c_str(), 0600), 0);
  ASSERT_THAT(WriteFakePciDevice(dir_, {.slot = "0000:42:00.0"}), IsOk());
  fs::create_symlink("../../../kernel/iommu_groups/x1",
                     FakePciDevicePath(dir_, "0000:42:00.0") + "/iommu_group");
  ASSERT_THAT(WriteFakePciDevice(dir_, {.slot = "not-a-slot", .iommu_group = group++}), IsOk());
  ASSERT_THAT(WriteFakePciDevice(dir_, {.slot = "0000:43:00.8", .iommu_group = group++}), IsOk());

  PML_ASSERT_OK_AND_ASSIGN(std::vector<GpuDevice> gpus, ScanGpus(dir_));
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const GpuDevice* g = FindSlot(gpus, c.slot);
    if (!c.listed) {
      EXPECT_EQ(g, nullptr);
      continue;
    }
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->numa_node, c.numa_node);
    EXPECT_EQ(g->unusable_reason, c.reason);
  }
  EXPECT_EQ(FindSlot(gpus, "0000:40:00.0"), nullptr);
  EXPECT_EQ(FindSlot(gpus, "0000:41:00.0"), nullptr);
  EXPECT_EQ(FindSlot(gpus, "not-a-slot"), nullptr);
  EXPECT_EQ(FindSlot(gpus, "0000:43:00.8"), nullptr);
  const GpuDevice* bad_group = FindSlot(gpus, "0000:42:00.0");
  ASSERT_NE(bad_group, nullptr);
  EXPECT_EQ(bad_group->iommu_group, -1);
  EXPECT_EQ(bad_group->unusable_reason, "IOMMU group link is malformed");
}

TEST_F(ScanGpusTest, SortsByPciAddressAcrossDomains) {
  for (const char* slot : {"10000:01:00.0", "0000:ff:1f.7", "0000:02:00.0", "0001:00:00.0"}) {
    ASSERT_THAT(WriteFakePciDevice(dir_, {.slot = slot, .iommu_group = 1}), IsOk());
  }
  PML_ASSERT_OK_AND_ASSIGN(std::vector<GpuDevice> gpus, ScanGpus(dir_));
  std::vector<std::string> slots;
  slots.reserve(gpus.size());
  for (const GpuDevice& g : gpus) {
    slots.push_back(g.slot);
  }
  EXPECT_THAT(slots, ElementsAre("0000:02:00.0", "0000:ff:1f.7", "0001:00:00.0", "10000:01:00.0"));
}

TEST_F(ScanGpusTest, MissingRootIsNotFound) {
  EXPECT_THAT(ScanGpus(dir_ + "/nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("bus/pci/devices")));
}

TEST_F(ScanGpusTest, RootWithoutPciDevicesIsNotFound) {
  EXPECT_THAT(ScanGpus(dir_), StatusIs(absl::StatusCode::kNotFound, HasSubstr("does not exist")));
}

TEST_F(ScanGpusTest, EmptyRootIsInvalidArgument) {
  EXPECT_THAT(ScanGpus(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sysfs root")));
}

TEST_F(ScanGpusTest, PciDevicesNotADirectoryIsFailedPrecondition) {
  Write(dir_ + "/bus/pci/devices", "oops");
  EXPECT_THAT(ScanGpus(dir_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a directory")));
}

TEST_F(ScanGpusTest, EmptyPciDevicesDirectoryIsAnEmptyScan) {
  ASSERT_THAT(core::MakeDirs(dir_ + "/bus/pci/devices"), IsOk());
  EXPECT_THAT(ScanGpus(dir_), IsOkAndHolds(IsEmpty()));
}

// ----- NUMA -----

using NumaTest = TempDirTest;

TEST_F(NumaTest, HgxHostHasTwoNodes) {
  ASSERT_THAT(WriteHgxH100Host(dir_), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<NumaNodeInfo> nodes, ReadNumaNodes(dir_));
  ASSERT_THAT(nodes, SizeIs(2));
  EXPECT_EQ(nodes[0].id, 0);
  EXPECT_EQ(nodes[0].cpus, "0-47,96-143");
  EXPECT_EQ(nodes[0].memory_mib, 1048576u);
  EXPECT_EQ(nodes[0].free_hugepages, 1024u);
  EXPECT_EQ(nodes[1].id, 1);
  EXPECT_EQ(nodes[1].cpus, "48-95,144-191");
  EXPECT_EQ(nodes[1].memory_mib, 1048576u);
  EXPECT_EQ(nodes[1].free_hugepages, 1024u);
}

TEST_F(NumaTest, NodesAreSortedNumerically) {
  for (int id : {10, 2, 0}) {
    ASSERT_THAT(WriteFakeNumaNode(dir_, id, absl::StrCat(id), 1024, 0), IsOk());
  }
  PML_ASSERT_OK_AND_ASSIGN(std::vector<NumaNodeInfo> nodes, ReadNumaNodes(dir_));
  ASSERT_THAT(nodes, SizeIs(3));
  EXPECT_EQ(nodes[0].id, 0);
  EXPECT_EQ(nodes[1].id, 2);
  EXPECT_EQ(nodes[2].id, 10);
  EXPECT_EQ(nodes[2].cpus, "10");
}

TEST_F(NumaTest, NoNodeDirectoryIsEmpty) {
  EXPECT_THAT(ReadNumaNodes(dir_), IsOkAndHolds(IsEmpty()));
}

TEST_F(NumaTest, EmptyRootIsInvalidArgument) {
  EXPECT_THAT(ReadNumaNodes(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sysfs root")));
}

TEST_F(NumaTest, MalformedNodeFilesGiveEmptyValues) {
  ASSERT_THAT(WriteFakeNumaNode(dir_, 0, "0-47", 1024, 16), IsOk());
  const std::string node = dir_ + "/devices/system/node/node0";
  Write(node + "/cpulist", "47-0\n");
  Write(node + "/meminfo", "Node 1 MemTotal: 1024 kB\nNode 0 MemTotal: lots kB\n");
  Write(node + "/hugepages/hugepages-2048kB/free_hugepages", std::string(1 << 20, '9'));
  // Not nodes: ignored.
  ASSERT_THAT(core::MakeDirs(dir_ + "/devices/system/node/nodeX"), IsOk());
  ASSERT_THAT(core::MakeDirs(dir_ + "/devices/system/node/node01"), IsOk());
  Write(dir_ + "/devices/system/node/possible", "0\n");
  PML_ASSERT_OK_AND_ASSIGN(std::vector<NumaNodeInfo> nodes, ReadNumaNodes(dir_));
  ASSERT_THAT(nodes, SizeIs(1));
  EXPECT_EQ(nodes[0].id, 0);
  EXPECT_EQ(nodes[0].cpus, "");
  EXPECT_EQ(nodes[0].memory_mib, 0u);
  EXPECT_EQ(nodes[0].free_hugepages, 0u);
}

TEST_F(NumaTest, CpuLessNodeHasEmptyCpus) {
  ASSERT_THAT(WriteFakeNumaNode(dir_, 2, "", 2048, 0), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<NumaNodeInfo> nodes, ReadNumaNodes(dir_));
  ASSERT_THAT(nodes, SizeIs(1));
  EXPECT_EQ(nodes[0].cpus, "");
  EXPECT_EQ(nodes[0].memory_mib, 2048u);
}

TEST_F(NumaTest, DefaultHugepageSizeComesFromMeminfo) {
  Write(dir_ + "/meminfo",
        "MemTotal:       2113929216 kB\nHugePages_Total:    2048\nHugepagesize:       2048 kB\n");
  EXPECT_THAT(DefaultHugepageSizeKib(dir_ + "/meminfo"), IsOkAndHolds(2048u));
}

TEST_F(NumaTest, DefaultHugepageSizeErrors) {
  Write(dir_ + "/none", "MemTotal:       2113929216 kB\n");
  EXPECT_THAT(DefaultHugepageSizeKib(dir_ + "/none"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("Hugepagesize")));
  Write(dir_ + "/bad", "Hugepagesize:       2048 MB\n");
  EXPECT_THAT(DefaultHugepageSizeKib(dir_ + "/bad"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Hugepagesize")));
  EXPECT_THAT(DefaultHugepageSizeKib(dir_ + "/missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

// ----- images -----

TEST(Sha256SumTextTest, MatchesSha256sumOutputSortedByName) {
  // printf 'world\n' > a.bin; printf 'hello\n' > b.txt; sha256sum a.bin b.txt
  const std::string expected =
      "e258d248fda94c63753607f7c4494ee0fcbe92f1a76bfdac795c9d84101eb317  a.bin\n"
      "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  b.txt\n";
  std::vector<ImageFileInfo> files = {
      {.name = "b.txt", .sha256 = crypto::Sha256("hello\n"), .size_bytes = 6},
      {.name = "a.bin", .sha256 = crypto::Sha256("world\n"), .size_bytes = 6},
  };
  EXPECT_EQ(Sha256SumText(files), expected);
  // sha256sum of that text (the two lines above saved as sums.txt).
  EXPECT_EQ(core::HexEncode(OsImageHash(files)),
            "42c6824554ddff17de76ef01e7dece93b6d8e6b22999f7e9081b718fd9a37d84");
  EXPECT_EQ(Sha256SumText({}), "");
}

TEST(ImageNameTest, AcceptsOnlyPlainNames) {
  for (const char* ok : {"dstack-0.5.2", "OVMF.fd", "a", "rootfs_v1.img",
                         "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk"}) {
    EXPECT_TRUE(IsValidImageName(ok)) << ok;
  }
  for (const char* bad : {"", ".", "..", "../x", "a/b", "a..b", "sp ace", "x\n", "ü",
                          "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl"}) {
    EXPECT_FALSE(IsValidImageName(bad)) << bad;
  }
}

class ImageCatalogTest : public TempDirTest {
 protected:
  std::string ImageDir(const std::string& name) { return dir_ + "/" + name; }

  // Writes `files` into the image directory and a metadata.json that matches them.
  void WriteImage(const std::string& name, const std::map<std::string, std::string>& files,
                  const nlohmann::json& overrides = nlohmann::json::object()) {
    for (const auto& [file, content] : files) {
      Write(ImageDir(name) + "/" + file, content);
    }
    nlohmann::json j = Metadata(files);
    for (const auto& [k, v] : overrides.items()) {
      if (v.is_null()) {
        j.erase(k);
      } else {
        j[k] = v;
      }
    }
    Write(ImageDir(name) + "/metadata.json", j.dump(2));
  }

  static nlohmann::json Metadata(const std::map<std::string, std::string>& files) {
    nlohmann::json j = {
        {"version", "0.1.0"},
        {"variant", "production"},
        {"kernel", "vmlinuz"},
        {"initrd", "initramfs.cpio.gz"},
        {"firmware", "OVMF.fd"},
        {"rootfs", "rootfs.img"},
        {"cmdline", "console=ttyS0 root=/dev/vda ro"},
        {"measurements",
         {{"mrtd", std::string(96, 'a')},
          {"rtmr0", std::string(96, 'b')},
          {"rtmr1", std::string(96, 'c')},
          {"rtmr2", std::string(96, 'd')}}},
    };
    std::vector<ImageFileInfo> infos;
    for (const auto& [name, content] : files) {
      infos.push_back(
          {.name = name, .sha256 = crypto::Sha256(content), .size_bytes = content.size()});
      j["files"][name] = {{"sha256", core::HexEncode(infos.back().sha256)},
                          {"size", content.size()}};
    }
    j["os_image_hash"] = core::HexEncode(OsImageHash(infos));
    return j;
  }

  static std::map<std::string, std::string> GoodFiles() {
    return {{"vmlinuz", "kernel bytes"},
            {"initramfs.cpio.gz", "initrd bytes"},
            {"OVMF.fd", "firmware bytes"},
            {"rootfs.img", std::string(3 << 20, 'r')},  // spans several hash chunks
            {"README", "extra listed file"}};
  }

  // The image's error after a List (it must be listed).
  std::string ErrorOf(ImageCatalog& catalog, const std::string& name) {
    for (const ImageInfo& i : catalog.List()) {
      if (i.name == name) {
        return i.error;
      }
    }
    ADD_FAILURE() << "image " << name << " not listed";
    return "";
  }
};

TEST_F(ImageCatalogTest, ValidImageIsUsableWithEveryField) {
  WriteImage("dstack-0.5.2", GoodFiles());
  ImageCatalog catalog(dir_);
  PML_ASSERT_OK_AND_ASSIGN(ImageInfo info, catalog.Get("dstack-0.5.2"));
  EXPECT_EQ(info.error, "");
  EXPECT_EQ(info.name, "dstack-0.5.2");
  EXPECT_EQ(info.dir, ImageDir("dstack-0.5.2"));
  EXPECT_EQ(info.version, "0.1.0");
  EXPECT_EQ(info.variant, ImageVariant::kProduction);
  EXPECT_EQ(info.kernel, "vmlinuz");
  EXPECT_EQ(info.initrd, "initramfs.cpio.gz");
  EXPECT_EQ(info.firmware, "OVMF.fd");
  EXPECT_EQ(info.rootfs, "rootfs.img");
  EXPECT_EQ(info.cmdline, "console=ttyS0 root=/dev/vda ro");
  EXPECT_TRUE(info.tdx_capable);
  std::vector<std::string> names;
  for (const ImageFileInfo& f : info.files) {
    names.push_back(f.name);
  }
  EXPECT_THAT(names,
              ElementsAre("OVMF.fd", "README", "initramfs.cpio.gz", "rootfs.img", "vmlinuz"));
  EXPECT_EQ(info.files[4].sha256, crypto::Sha256("kernel bytes"));
  EXPECT_EQ(info.files[4].size_bytes, 12u);
  EXPECT_EQ(info.os_image_hash, OsImageHash(info.files));
  EXPECT_EQ(info.mrtd, std::vector<uint8_t>(48, 0xaa));
  EXPECT_EQ(info.rtmr0, std::vector<uint8_t>(48, 0xbb));
  EXPECT_EQ(info.rtmr1, std::vector<uint8_t>(48, 0xcc));
  EXPECT_EQ(info.rtmr2, std::vector<uint8_t>(48, 0xdd));

  const std::vector<ImageInfo> listed = catalog.List();
  ASSERT_THAT(listed, SizeIs(1));
  EXPECT_EQ(listed[0].error, "");
  EXPECT_EQ(listed[0].os_image_hash, info.os_image_hash);
}

TEST_F(ImageCatalogTest, MinimalDevelopmentImageIsNotTdxCapable) {
  const std::map<std::string, std::string> files = {{"vmlinuz", "k"}, {"initramfs.cpio.gz", "i"}};
  WriteImage("dev", files,
             {{"variant", "development"},
              {"firmware", nullptr},
              {"rootfs", nullptr},
              {"measurements", nullptr}});
  ImageCatalog catalog(dir_);
  PML_ASSERT_OK_AND_ASSIGN(ImageInfo info, catalog.Get("dev"));
  EXPECT_EQ(info.variant, ImageVariant::kDevelopment);
  EXPECT_EQ(info.firmware, "");
  EXPECT_EQ(info.rootfs, "");
  EXPECT_FALSE(info.tdx_capable);
  EXPECT_THAT(info.mrtd, IsEmpty());
}

TEST_F(ImageCatalogTest, ListIsSortedAndKeepsBrokenImagesWithTheirError) {
  WriteImage("b-image", GoodFiles());
  WriteImage("a-image", GoodFiles());
  ASSERT_THAT(core::MakeDirs(ImageDir("c-empty")), IsOk());
  ASSERT_THAT(core::MakeDirs(ImageDir("bad name")), IsOk());
  Write(dir_ + "/not-a-dir", "x");
  ImageCatalog catalog(dir_);
  const std::vector<ImageInfo> images = catalog.List();
  ASSERT_THAT(images, SizeIs(4));
  EXPECT_EQ(images[0].name, "a-image");
  EXPECT_EQ(images[0].error, "");
  EXPECT_EQ(images[1].name, "b-image");
  EXPECT_EQ(images[1].error, "");
  EXPECT_EQ(images[2].name, "bad name");
  EXPECT_THAT(images[2].error, HasSubstr("image name"));
  EXPECT_EQ(images[3].name, "c-empty");
  EXPECT_EQ(images[3].error, "metadata.json is missing");
}

TEST_F(ImageCatalogTest, MissingImagesDirectoryListsNothing) {
  ImageCatalog catalog(dir_ + "/none");
  EXPECT_THAT(catalog.List(), IsEmpty());
  EXPECT_THAT(catalog.Get("x"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("x")));
}

TEST_F(ImageCatalogTest, MissingFileIsReported) {
  WriteImage("img", GoodFiles());
  fs::remove(ImageDir("img") + "/initramfs.cpio.gz");
  ImageCatalog catalog(dir_);
  EXPECT_EQ(ErrorOf(catalog, "img"), "file initramfs.cpio.gz is missing");
}

TEST_F(ImageCatalogTest, SizeChangeAfterAGoodListIsDetected) {
  WriteImage("img", GoodFiles());
  ImageCatalog catalog(dir_);
  ASSERT_EQ(ErrorOf(catalog, "img"), "");
  Write(ImageDir("img") + "/vmlinuz", "kernel bytes, patched");
  EXPECT_EQ(ErrorOf(catalog, "img"), "file vmlinuz size 21 does not match metadata.json size 12");
}

TEST_F(ImageCatalogTest, SameSizeDifferentBytesAfterAGoodListIsDetected) {
  WriteImage("img", GoodFiles());
  ImageCatalog catalog(dir_);
  ASSERT_EQ(ErrorOf(catalog, "img"), "");  // the digest is now cached
  const std::string path = ImageDir("img") + "/vmlinuz";
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);  // same inode
    f.seekp(0);
    f << "K";
  }
  // Move mtime well away from the first write so the cache key differs on any filesystem.
  const struct timespec times[2] = {{.tv_sec = 1000000000, .tv_nsec = 0},
                                    {.tv_sec = 1000000000, .tv_nsec = 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  const std::string error = ErrorOf(catalog, "img");
  EXPECT_THAT(error, HasSubstr("file vmlinuz sha256 "));
  EXPECT_THAT(error, HasSubstr(absl::StrCat("does not match metadata.json ",
                                            core::HexEncode(crypto::Sha256("kernel bytes")))));
  EXPECT_THAT(catalog.Get("img"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("vmlinuz sha256")));
}

TEST_F(ImageCatalogTest, RepeatedListsOfAnUnchangedImageAgree) {
  WriteImage("img", GoodFiles());
  ImageCatalog catalog(dir_);
  const std::vector<ImageInfo> first = catalog.List();
  const std::vector<ImageInfo> second = catalog.List();
  ASSERT_THAT(first, SizeIs(1));
  ASSERT_THAT(second, SizeIs(1));
  EXPECT_EQ(first[0].error, "");
  EXPECT_EQ(second[0].error, "");
  EXPECT_EQ(first[0].os_image_hash, second[0].os_image_hash);
}

TEST_F(ImageCatalogTest, ConcurrentListsAndGetsAgree) {
  WriteImage("img", GoodFiles());
  WriteImage("img2", GoodFiles());
  ImageCatalog catalog(dir_);
  std::vector<std::thread> threads;
  threads.reserve(8);
  std::vector<int> usable(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&catalog, &usable, t] {
      for (int i = 0; i < 5; ++i) {
        if (t % 2 == 0) {
          for (const ImageInfo& info : catalog.List()) {
            usable[t] += info.error.empty() ? 1 : 0;
          }
        } else {
          usable[t] += catalog.Get(i % 2 == 0 ? "img" : "img2").ok() ? 2 : 0;
        }
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  for (int t = 0; t < 8; ++t) {
    EXPECT_EQ(usable[t], 10) << t;
  }
}

TEST_F(ImageCatalogTest, SymlinkedFileIsRejected) {
  WriteImage("img", GoodFiles());
  Write(dir_ + "/outside", "kernel bytes");
  fs::remove(ImageDir("img") + "/vmlinuz");
  fs::create_symlink(dir_ + "/outside", ImageDir("img") + "/vmlinuz");
  ImageCatalog catalog(dir_);
  EXPECT_EQ(ErrorOf(catalog, "img"), "file vmlinuz is a symlink (must be a regular file)");
}

TEST_F(ImageCatalogTest, ListedDirectoryIsNotARegularFile) {
  WriteImage("img", GoodFiles());
  fs::remove(ImageDir("img") + "/README");
  fs::create_directory(ImageDir("img") + "/README");
  ImageCatalog catalog(dir_);
  EXPECT_THAT(ErrorOf(catalog, "img"), HasSubstr("file README "));
}

TEST_F(ImageCatalogTest, BadOsImageHashIsReported) {
  WriteImage("img", GoodFiles(), {{"os_image_hash", std::string(64, '0')}});
  ImageCatalog catalog(dir_);
  EXPECT_THAT(ErrorOf(catalog, "img"),
              HasSubstr(absl::StrCat("metadata.json: os_image_hash ", std::string(64, '0'),
                                     " does not match the listed files")));
}

TEST_F(ImageCatalogTest, MetadataFieldErrorsNameTheField) {
  struct Case {
    const char* name;
    nlohmann::json overrides;
    const char* error;
  };
  const std::vector<Case> cases = {
      {"bad variant", {{"variant", "prod"}}, "metadata.json: variant \"prod\" is not"},
      {"missing variant", {{"variant", nullptr}}, "metadata.json: variant is missing"},
      {"numeric version", {{"version", 1}}, "metadata.json: version is not a string"},
      {"empty version", {{"version", ""}}, "metadata.json: version must be"},
      {"missing kernel", {{"kernel", nullptr}}, "metadata.json: kernel is missing"},
      {"missing cmdline", {{"cmdline", nullptr}}, "metadata.json: cmdline is missing"},
      {"control char in cmdline", {{"cmdline", "a\nb"}}, "metadata.json: cmdline must be"},
      {"kernel not listed",
       {{"kernel", "bzImage"}},
       "metadata.json: kernel \"bzImage\" is not listed in files"},
      {"kernel traversal",
       {{"kernel", "../vmlinuz"}},
       "metadata.json: kernel file name \"../vmlinuz\" is invalid"},
      {"rootfs absolute",
       {{"rootfs", "/etc/shadow"}},
       "metadata.json: rootfs file name \"/etc/shadow\" is invalid"},
      {"firmware empty", {{"firmware", ""}}, "metadata.json: firmware file name \"\" is invalid"},
      {"files traversal",
       {{"files", {{"../../etc/passwd", {{"sha256", std::string(64, 'a')}, {"size", 1}}}}}},
       "metadata.json: files: file name \"../../etc/passwd\" is invalid"},
      {"files slash",
       {{"files", {{"sub/vmlinuz", {{"sha256", std::string(64, 'a')}, {"size", 1}}}}}},
       "metadata.json: files: file name \"sub/vmlinuz\" is invalid"},
      {"files lists metadata",
       {{"files", {{"metadata.json", {{"sha256", std::string(64, 'a')}, {"size", 1}}}}}},
       "metadata.json: files: metadata.json cannot list itself"},
      {"files empty", {{"files", nlohmann::json::object()}}, "metadata.json: files has 0 entries"},
      {"files not object",
       {{"files", nlohmann::json::array()}},
       "metadata.json: files is not an object"},
      {"uppercase digest",
       {{"files", {{"vmlinuz", {{"sha256", std::string(64, 'A')}, {"size", 1}}}}}},
       "metadata.json: files.vmlinuz.sha256 is not 64 lowercase hex characters"},
      {"short digest",
       {{"files", {{"vmlinuz", {{"sha256", "abcd"}, {"size", 1}}}}}},
       "metadata.json: files.vmlinuz.sha256 is not 64 lowercase hex characters"},
      {"negative size",
       {{"files", {{"vmlinuz", {{"sha256", std::string(64, 'a')}, {"size", -1}}}}}},
       "metadata.json: files.vmlinuz.size is missing or not a non-negative integer"},
      {"fractional size",
       {{"files", {{"vmlinuz", {{"sha256", std::string(64, 'a')}, {"size", 1.5}}}}}},
       "metadata.json: files.vmlinuz.size is missing or not a non-negative integer"},
      {"os_image_hash short",
       {{"os_image_hash", "00"}},
       "metadata.json: os_image_hash is not 64 lowercase hex characters"},
      {"os_image_hash missing",
       {{"os_image_hash", nullptr}},
       "metadata.json: os_image_hash is missing"},
      {"bad mrtd",
       {{"measurements", {{"mrtd", std::string(94, 'a')}}}},
       "metadata.json: measurements.mrtd is not 96 lowercase hex characters"},
      {"measurements not object",
       {{"measurements", "x"}},
       "metadata.json: measurements is not an object"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_NO_FATAL_FAILURE(WriteImage("img", GoodFiles(), c.overrides));
    ImageCatalog catalog(dir_);
    EXPECT_THAT(ErrorOf(catalog, "img"), HasSubstr(c.error));
    EXPECT_THAT(catalog.Get("img"),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr(absl::StrCat("image img is unusable: ", c.error))));
  }
}

TEST_F(ImageCatalogTest, InvalidJsonIsReported) {
  struct Case {
    const char* name;
    std::string text;
    const char* error;
  };
  const std::vector<Case> cases = {
      {"truncated", "{\"version\": \"0.1.0\"", "metadata.json: is not valid JSON"},
      {"empty", "", "metadata.json: is not valid JSON"},
      {"bad utf-8", "{\"version\": \"\xff\"}", "metadata.json: is not valid JSON"},
      {"array", "[]", "metadata.json: is not a JSON object"},
      {"deep", std::string(1000, '[') + std::string(1000, ']'), "metadata.json: nests deeper"},
      {"too large", std::string(kMaxImageMetadataBytes + 1, ' '),
       "metadata.json: file " /* ... is larger than */},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Write(ImageDir("img") + "/metadata.json", c.text);
    ImageCatalog catalog(dir_);
    EXPECT_THAT(ErrorOf(catalog, "img"), HasSubstr(c.error));
  }
}

TEST_F(ImageCatalogTest, UnknownImageIsNotFound) {
  WriteImage("img", GoodFiles());
  ImageCatalog catalog(dir_);
  EXPECT_THAT(catalog.Get("other"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("image other not found")));
}

TEST_F(ImageCatalogTest, InvalidImageNameIsInvalidArgument) {
  ImageCatalog catalog(dir_ + "/images");
  Write(dir_ + "/metadata.json", "{}");
  for (const char* name : {"..", "../images", "a/b", ""}) {
    SCOPED_TRACE(name);
    EXPECT_THAT(catalog.Get(name),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("image name")));
  }
}

TEST_F(ImageCatalogTest, UnusableImageIsFailedPreconditionWithTheReason) {
  WriteImage("img", GoodFiles());
  fs::remove(ImageDir("img") + "/vmlinuz");
  ImageCatalog catalog(dir_);
  EXPECT_THAT(catalog.Get("img"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("image img is unusable: file vmlinuz is missing")));
}

TEST_F(ImageCatalogTest, RelativeImagesDirIsMadeAbsolute) {
  ImageCatalog catalog("relative/images");
  EXPECT_TRUE(fs::path(catalog.ImagesDir()).is_absolute()) << catalog.ImagesDir();
}

// ----- vm_model -----

TEST(VmStateNameTest, NamesEveryState) {
  EXPECT_STREQ(VmStateName(VmState::kUnspecified), "unspecified");
  EXPECT_STREQ(VmStateName(VmState::kCreating), "creating");
  EXPECT_STREQ(VmStateName(VmState::kStopped), "stopped");
  EXPECT_STREQ(VmStateName(VmState::kStarting), "starting");
  EXPECT_STREQ(VmStateName(VmState::kRunning), "running");
  EXPECT_STREQ(VmStateName(VmState::kStopping), "stopping");
  EXPECT_STREQ(VmStateName(VmState::kPaused), "paused");
  EXPECT_STREQ(VmStateName(VmState::kFailed), "failed");
  EXPECT_STREQ(VmStateName(VmState::kRemoving), "removing");
  EXPECT_STREQ(VmStateName(static_cast<VmState>(42)), "unspecified");
}

}  // namespace
}  // namespace pml::vmm
