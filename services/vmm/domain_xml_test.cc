// Tests for the libvirt domain XML generator (domain_xml.h).
//
// Golden files: services/vmm/testdata/domain_<case>.xml, read in place through PML_REPO_DIR.
// The GPU cases take their devices and NUMA CPU lists from a fake HGX H100 sysfs tree
// (testing/fake_sysfs.h) scanned by ScanGpus/ReadNumaNodes, as the VMM does on a real host.
// After an intended change to the generator, regenerate them and review the diff:
//
//   PML_UPDATE_GOLDEN=1 build/services/vmm/pml_vmm_domain_xml_test
//   git diff services/vmm/testdata/
//
// That is the only time a test writes into the tree; everything else goes to temp dirs.
//
// Schema: every non-TDX case is checked with `virt-xml-validate <file> domain` (libvirt-clients)
// against the installed libvirt 9.0 RelaxNG schema; values are read back with `xmllint --xpath`
// (libxml2-utils). Both tools are required: a missing tool fails the test, never skips it.
//
// TDX: libvirt 9.0's schema predates <launchSecurity type='tdx'> (libvirt 11.6), so the TDX
// case is checked against its golden file, which follows libvirt's documentation of the element:
// docs/formatdomain.rst, "Launch Security", type 'tdx' (libvirt commit e919a4dd "conf: Add tdx as
// launch security type": <policy> is 64-bit hex, bit 0 debug, bit 28 sept-ve-disable;
// <mrConfigId>, <mrOwner>, <mrOwnerConfig> are base64 of 48 bytes;
// <quoteGenerationService path='…'/> names the QGS socket), plus the TDVF loader as a stateless
// ROM (QEMU docs/system/i386/tdx.rst: TDVF is loaded with -bios, TDX has no pflash). The test
// also checks that case for well-formedness and reads the TDX values back.

#include "services/vmm/domain_xml.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "services/vmm/inventory.h"
#include "services/vmm/testing/fake_sysfs.h"
#include "services/vmm/vm_model.h"

namespace pml::vmm {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kVmId[] = "6c1f6a2e-3b1c-4c8e-9a51-2f0d8e4b7c10";
constexpr char kVmDir[] = "/var/lib/pml/vms/6c1f6a2e-3b1c-4c8e-9a51-2f0d8e4b7c10";
constexpr char kImageDir[] = "/var/lib/pml/images/pml-0.1.0";

// ---------------------------------------------------------------------------------------------
// Helpers: temp dirs, tools, golden files.

class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "pml_domain_xml_XXXXXX";
    PML_CHECK(mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& Path() const { return path_; }
  std::string File(absl::string_view name) const { return absl::StrCat(path_, "/", name); }

 private:
  std::string path_;
};

struct ToolResult {
  int exit_code = -1;  // 127 when the tool could not be started
  std::string output;  // stdout and stderr together
};

// Runs argv (no shell) and collects its output.
ToolResult RunTool(const std::vector<std::string>& argv) {
  ToolResult result;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    result.output =
        absl::StrCat("pipe: ", std::error_code(errno, std::generic_category()).message());
    return result;
  }
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    execvp(args[0], args.data());
    const std::string msg = absl::StrCat(
        argv[0], ": cannot run: ", std::error_code(errno, std::generic_category()).message(), "\n");
    (void)!write(STDERR_FILENO, msg.data(), msg.size());
    _exit(127);
  }
  close(fds[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) {
    result.output.append(buf, n);
  }
  close(fds[0]);
  int status = 0;
  if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  }
  return result;
}

// The value of an XPath string expression over `file`, via xmllint.
std::string XPath(const std::string& file, const std::string& expr) {
  const ToolResult r = RunTool({"xmllint", "--xpath", expr, file});
  EXPECT_EQ(r.exit_code, 0) << "xmllint --xpath " << expr << ": " << r.output;
  std::string out = r.output;
  if (!out.empty() && out.back() == '\n') {
    out.pop_back();  // xmllint ends the value with one
  }
  return out;
}

void ExpectSchemaValid(const std::string& file) {
  const ToolResult r = RunTool({"virt-xml-validate", file, "domain"});
  EXPECT_EQ(r.exit_code, 0) << "virt-xml-validate " << file << " (needs libvirt-clients):\n"
                            << r.output;
}

void ExpectWellFormed(const std::string& file) {
  const ToolResult r = RunTool({"xmllint", "--noout", file});
  EXPECT_EQ(r.exit_code, 0) << "xmllint --noout (needs libxml2-utils):\n" << r.output;
}

std::string WriteTemp(const TempDir& dir, absl::string_view name, absl::string_view text) {
  std::string path = dir.File(name);
  PML_CHECK(core::WriteFileAtomic(path, text).ok());
  return path;
}

std::string GoldenPath(absl::string_view name) {
  return absl::StrCat(PML_REPO_DIR, "/services/vmm/testdata/domain_", name, ".xml");
}

bool UpdateGolden() {
  const char* v = std::getenv("PML_UPDATE_GOLDEN");  // NOLINT(concurrency-mt-unsafe): no setenv
  return v != nullptr && std::string(v) == "1";
}

// Compares `xml` with the golden file, or rewrites the golden file under PML_UPDATE_GOLDEN=1.
void ExpectMatchesGolden(absl::string_view name, const std::string& xml) {
  const std::string path = GoldenPath(name);
  if (UpdateGolden()) {
    ASSERT_THAT(core::WriteFileAtomic(path, xml), IsOk());
    return;
  }
  absl::StatusOr<std::string> golden = core::ReadFile(path);
  ASSERT_THAT(golden, IsOk()) << "missing golden " << path
                              << " (run with PML_UPDATE_GOLDEN=1 to create it)";
  EXPECT_EQ(xml, *golden) << "differs from " << path
                          << " (if intended: PML_UPDATE_GOLDEN=1, then review the diff)";
}

// ---------------------------------------------------------------------------------------------
// Plans.

// The host the GPU cases run on: a fake HGX H100 sysfs tree, scanned as the VMM would.
struct Host {
  std::vector<GpuDevice> devices;  // GPUs and NVSwitches, by slot
  std::vector<NumaNodeInfo> nodes;

  std::vector<GpuDevice> Select(std::optional<int> node, size_t max_gpus,
                                bool with_switches) const {
    std::vector<GpuDevice> out;
    size_t gpus = 0;
    for (const GpuDevice& d : devices) {
      if (node.has_value() && d.numa_node != *node) {
        continue;
      }
      if (d.kind == GpuKind::kGpu && gpus < max_gpus) {
        out.push_back(d);
        ++gpus;
      } else if (d.kind == GpuKind::kNvSwitch && with_switches) {
        out.push_back(d);
      }
    }
    return out;
  }
  std::string Cpus(int node) const {
    for (const NumaNodeInfo& n : nodes) {
      if (n.id == node) {
        return n.cpus;
      }
    }
    return "";
  }
};

DomainPlan BasePlan() {
  DomainPlan p;
  p.domain_name = "pml-demo";
  p.domain_uuid = kVmId;
  p.vm_id = kVmId;
  p.owner = "spiffe://pml.dev/operator/alice";
  p.spec_hash = "5d41402abc4b2a76b9719d911017c592ae1b3f6e4f1d9c8a0b7e6d5c4b3a2918";
  p.vmm_instance = "0b5e6f7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b";
  p.tee_mode = TeeMode::kNone;
  p.vcpus = 4;
  p.memory_mib = 8192;
  p.kernel_path = absl::StrCat(kImageDir, "/vmlinuz");
  p.initrd_path = absl::StrCat(kImageDir, "/initramfs.cpio.gz");
  p.cmdline = "console=ttyS0 panic=1 pml.mode=none";
  p.data_disk_path = absl::StrCat(kVmDir, "/data.qcow2");
  p.config_dir = absl::StrCat(kVmDir, "/config");
  p.console_log_path = absl::StrCat(kVmDir, "/console.log");
  p.ports = {PortForward{PortProtocol::kTcp, "127.0.0.1", 10022, 22}};
  p.virt_type = "kvm";
  return p;
}

DomainPlan GpuPlan(const Host& host, size_t gpus) {
  DomainPlan p = BasePlan();
  p.rootfs_path = absl::StrCat(kImageDir, "/rootfs.img");
  p.vcpus = 8;
  p.memory_mib = 65536;
  p.gpus = host.Select(std::nullopt, gpus, /*with_switches=*/false);
  return p;
}

DomainPlan HgxPlan(const Host& host, std::optional<int> node) {
  DomainPlan p = BasePlan();
  p.rootfs_path = absl::StrCat(kImageDir, "/rootfs.img");
  p.vcpus = 16;
  p.memory_mib = 262144;
  p.gpus = host.Select(node, 8, /*with_switches=*/true);
  p.hugepages = true;
  const int pin = node.value_or(0);
  p.numa_node = pin;
  p.numa_cpus = host.Cpus(pin);
  return p;
}

std::vector<uint8_t> TestMrConfigId() {
  // dstack's v1 layout: 0x01 ‖ SHA-256(compose) ‖ zeros; any 48 bytes would do here.
  std::vector<uint8_t> id(48, 0);
  id[0] = 0x01;
  for (size_t i = 1; i <= 32; ++i) {
    id[i] = static_cast<uint8_t>(0xa0 + i);
  }
  return id;
}

DomainPlan TdxPlan(const Host& host) {
  DomainPlan p = BasePlan();
  p.tee_mode = TeeMode::kTdx;
  p.cmdline = "console=ttyS0 panic=1 pml.mode=tdx";
  p.firmware_path = absl::StrCat(kImageDir, "/OVMF.fd");
  p.rootfs_path = absl::StrCat(kImageDir, "/rootfs.img");
  p.vcpus = 16;
  p.memory_mib = 262144;
  p.gpus = host.Select(std::nullopt, 8, /*with_switches=*/true);
  p.mrconfigid = TestMrConfigId();
  p.qgs_socket_path = "/var/run/tdx-qgs/qgs.socket";
  return p;
}

// Writes the fake HGX host into a temp dir and scans it.
Host LoadFakeHgxHost() {
  TempDir sysfs;
  PML_CHECK(testing::WriteHgxH100Host(sysfs.Path()).ok());
  absl::StatusOr<std::vector<GpuDevice>> devices = ScanGpus(sysfs.Path());
  PML_CHECK(devices.ok());
  absl::StatusOr<std::vector<NumaNodeInfo>> nodes = ReadNumaNodes(sysfs.Path());
  PML_CHECK(nodes.ok());
  return Host{*std::move(devices), *std::move(nodes)};
}

// ---------------------------------------------------------------------------------------------
// Golden cases.

struct GoldenCase {
  std::string name;
  bool tdx = false;  // libvirt 9.0's schema can't validate it
  std::function<DomainPlan(const Host&)> plan;
};

std::vector<GoldenCase> GoldenCases() {
  return {
      {"none_minimal_tcg", false,
       [](const Host&) {
         DomainPlan p = BasePlan();
         p.virt_type = "qemu";
         return p;
       }},
      {"gpu1", false, [](const Host& h) { return GpuPlan(h, 1); }},
      {"gpu2", false, [](const Host& h) { return GpuPlan(h, 2); }},
      {"hgx8_nvswitch4_numa0", false, [](const Host& h) { return HgxPlan(h, std::nullopt); }},
      {"hgx_node1_numa1", false, [](const Host& h) { return HgxPlan(h, 1); }},
      {"tdx_hgx8_nvswitch4", true, [](const Host& h) { return TdxPlan(h); }},
  };
}

void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.name; }

class DomainXmlGoldenTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(DomainXmlGoldenTest, MatchesGoldenAndSchema) {
  const GoldenCase& c = GetParam();
  const DomainPlan plan = c.plan(LoadFakeHgxHost());
  PML_ASSERT_OK_AND_ASSIGN(std::string xml, BuildDomainXml(plan));
  ExpectMatchesGolden(c.name, xml);

  TempDir dir;
  const std::string file = WriteTemp(dir, "domain.xml", xml);
  ExpectWellFormed(file);
  if (!c.tdx) {
    ExpectSchemaValid(file);
  }
  // What every case must carry, whatever the golden says.
  EXPECT_EQ(XPath(file, "string(/domain/name)"), plan.domain_name);
  EXPECT_EQ(XPath(file, "count(/domain/devices/hostdev)"), absl::StrCat(plan.gpus.size()));
  EXPECT_EQ(XPath(file, "count(/domain/devices/controller[@model='pcie-root-port'])"),
            absl::StrCat(plan.gpus.size()));
  PML_ASSERT_OK_AND_ASSIGN(DomainMetadata md, ParseDomainMetadata(xml));
  EXPECT_EQ(md.vm_id, plan.vm_id);
}

INSTANTIATE_TEST_SUITE_P(Golden, DomainXmlGoldenTest, ::testing::ValuesIn(GoldenCases()),
                         [](const ::testing::TestParamInfo<GoldenCase>& info) {
                           return info.param.name;
                         });

TEST(DomainXmlHostTest, FakeHostHasTheHgxDevices) {
  // Guards the golden cases' inputs: if the scan changes, the goldens would silently shrink.
  const Host host = LoadFakeHgxHost();
  EXPECT_EQ(host.Select(std::nullopt, 99, false).size(), 8u);
  EXPECT_EQ(host.Select(std::nullopt, 0, true).size(), 4u);
  EXPECT_EQ(host.Cpus(0), "0-47,96-143");
  EXPECT_EQ(host.Cpus(1), "48-95,144-191");
}

// ---------------------------------------------------------------------------------------------
// BuildDomainXml behaviours.

TEST(BuildDomainXmlTest, EscapesMarkupInValues) {
  DomainPlan p = BasePlan();
  p.domain_name = "pml-<evil a=\"1\">&amp;'<![CDATA[x]]><name>x";
  p.kernel_path = "/img/a&b/<k>'\"/vmlinuz";
  p.initrd_path = "/img/]]>/initrd";
  p.cmdline = "console=ttyS0 pml.x=\"<&>\" ]]> <!-- -->";
  p.config_dir = "/cfg/\"/><filesystem type='mount'><source dir='/'/>";
  p.console_log_path = "/logs/a&b'.log";
  p.owner = "o'\"<&>\xc3\xa9";
  p.spec_hash = "<pml:id>forged</pml:id>";
  PML_ASSERT_OK_AND_ASSIGN(std::string xml, BuildDomainXml(p));

  TempDir dir;
  const std::string file = WriteTemp(dir, "domain.xml", xml);
  ExpectSchemaValid(file);
  EXPECT_EQ(XPath(file, "string(/domain/name)"), p.domain_name);
  EXPECT_EQ(XPath(file, "count(/domain/name)"), "1");
  EXPECT_EQ(XPath(file, "count(//evil)"), "0");
  EXPECT_EQ(XPath(file, "string(/domain/os/kernel)"), p.kernel_path);
  EXPECT_EQ(XPath(file, "string(/domain/os/initrd)"), p.initrd_path);
  EXPECT_EQ(XPath(file, "string(/domain/os/cmdline)"), p.cmdline);
  EXPECT_EQ(XPath(file, "count(/domain/devices/filesystem)"), "1");
  EXPECT_EQ(XPath(file, "string(/domain/devices/filesystem/source/@dir)"), p.config_dir);
  EXPECT_EQ(XPath(file, "string(/domain/devices/serial/source/@path)"), p.console_log_path);
  PML_ASSERT_OK_AND_ASSIGN(DomainMetadata md, ParseDomainMetadata(xml));
  EXPECT_EQ(md, (DomainMetadata{p.vm_id, p.owner, p.spec_hash, p.vmm_instance}));
}

TEST(BuildDomainXmlTest, ForwardsTcpAndUdpPortsThroughUserNetworking) {
  DomainPlan p = BasePlan();
  p.ports = {PortForward{PortProtocol::kTcp, "127.0.0.1", 10022, 22},
             PortForward{PortProtocol::kUdp, "0.0.0.0", 15353, 53},
             PortForward{PortProtocol::kTcp, "192.168.1.10", 8443, 443}};
  PML_ASSERT_OK_AND_ASSIGN(std::string xml, BuildDomainXml(p));
  TempDir dir;
  const std::string file = WriteTemp(dir, "domain.xml", xml);
  ExpectSchemaValid(file);
  EXPECT_EQ(XPath(file, "string(//*[local-name()='commandline']/*[local-name()='arg'][2]/@value)"),
            "user,id=pmlnet0,hostfwd=tcp:127.0.0.1:10022-:22,hostfwd=udp:0.0.0.0:15353-:53,"
            "hostfwd=tcp:192.168.1.10:8443-:443");
  EXPECT_EQ(XPath(file, "string(//*[local-name()='commandline']/*[local-name()='arg'][4]/@value)"),
            R"({"driver":"virtio-net-pci","netdev":"pmlnet0","bus":"pcie.0","romfile":""})");
}

TEST(BuildDomainXmlTest, AddsUserNetworkWithoutPorts) {
  DomainPlan p = BasePlan();
  p.ports.clear();
  PML_ASSERT_OK_AND_ASSIGN(std::string xml, BuildDomainXml(p));
  TempDir dir;
  const std::string file = WriteTemp(dir, "domain.xml", xml);
  ExpectSchemaValid(file);
  EXPECT_EQ(XPath(file, "string(//*[local-name()='commandline']/*[local-name()='arg'][2]/@value)"),
            "user,id=pmlnet0");
}

TEST(BuildDomainXmlTest, PinsEveryVcpuToTheNumaNode) {
  DomainPlan p = BasePlan();
  p.vcpus = 6;
  p.numa_node = 1;
  p.numa_cpus = "48-95,144-191";
  PML_ASSERT_OK_AND_ASSIGN(std::string xml, BuildDomainXml(p));
  TempDir dir;
  const std::string file = WriteTemp(dir, "domain.xml", xml);
  ExpectSchemaValid(file);
  EXPECT_EQ(XPath(file, "count(/domain/cputune/vcpupin[@cpuset='48-95,144-191'])"), "6");
  EXPECT_EQ(XPath(file, "string(/domain/cputune/vcpupin[6]/@vcpu)"), "5");
  EXPECT_EQ(XPath(file, "string(/domain/vcpu/@cpuset)"), "48-95,144-191");
  EXPECT_EQ(XPath(file, "string(/domain/numatune/memory/@nodeset)"), "1");
  EXPECT_EQ(XPath(file, "string(/domain/numatune/memory/@mode)"), "strict");
}

TEST(BuildDomainXmlTest, TdxElementCarriesPlanValues) {
  const DomainPlan p = TdxPlan(LoadFakeHgxHost());
  PML_ASSERT_OK_AND_ASSIGN(std::string xml, BuildDomainXml(p));
  TempDir dir;
  const std::string file = WriteTemp(dir, "domain.xml", xml);
  ExpectWellFormed(file);
  EXPECT_EQ(XPath(file, "string(/domain/launchSecurity/@type)"), "tdx");
  // SEPT_VE_DISABLE (bit 28) on, DEBUG (bit 0) off.
  EXPECT_EQ(XPath(file, "string(/domain/launchSecurity/policy)"), "0x10000000");
  const std::string mrconfigid = XPath(file, "string(/domain/launchSecurity/mrConfigId)");
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> decoded, core::Base64Decode(mrconfigid));
  EXPECT_EQ(decoded, p.mrconfigid);
  EXPECT_EQ(XPath(file, "string(/domain/launchSecurity/quoteGenerationService/@path)"),
            p.qgs_socket_path);
  EXPECT_EQ(XPath(file, "string(/domain/os/loader)"), p.firmware_path);
  EXPECT_EQ(XPath(file, "string(/domain/os/loader/@type)"), "rom");
  EXPECT_EQ(XPath(file, "string(/domain/on_reboot)"), "destroy");
}

TEST(BuildDomainXmlTest, NoneModeHasNoLaunchSecurityOrLoader) {
  DomainPlan p = BasePlan();
  p.mrconfigid = TestMrConfigId();  // ignored outside TDX
  PML_ASSERT_OK_AND_ASSIGN(std::string xml, BuildDomainXml(p));
  EXPECT_THAT(xml, ::testing::Not(HasSubstr("launchSecurity")));
  EXPECT_THAT(xml, ::testing::Not(HasSubstr("<loader")));
  EXPECT_THAT(xml, HasSubstr("<on_reboot>restart</on_reboot>"));
}

TEST(BuildDomainXmlTest, IsDeterministic) {
  const DomainPlan p = BasePlan();
  PML_ASSERT_OK_AND_ASSIGN(std::string a, BuildDomainXml(p));
  PML_ASSERT_OK_AND_ASSIGN(std::string b, BuildDomainXml(p));
  EXPECT_EQ(a, b);
}

struct InvalidCase {
  std::string name;
  std::function<void(DomainPlan&)> mutate;
  std::string field;  // expected in the message
};

TEST(BuildDomainXmlTest, RejectsInvalidPlansNamingTheField) {
  const GpuDevice gpu{.slot = "0000:18:00.0", .kind = GpuKind::kGpu};
  const std::vector<InvalidCase> cases = {
      {"empty name", [](DomainPlan& p) { p.domain_name.clear(); }, "domain_plan.domain_name"},
      {"slash in name", [](DomainPlan& p) { p.domain_name = "a/b"; }, "domain_plan.domain_name"},
      {"control char in name", [](DomainPlan& p) { p.domain_name = "a\x01"; },
       "domain_plan.domain_name"},
      {"bad utf-8 in owner", [](DomainPlan& p) { p.owner = "\xc3("; }, "domain_plan.owner"},
      {"empty uuid", [](DomainPlan& p) { p.domain_uuid.clear(); }, "domain_plan.domain_uuid"},
      {"bad uuid", [](DomainPlan& p) { p.domain_uuid = "not-a-uuid"; }, "domain_plan.domain_uuid"},
      {"empty vm_id", [](DomainPlan& p) { p.vm_id.clear(); }, "domain_plan.vm_id"},
      {"unspecified tee", [](DomainPlan& p) { p.tee_mode = TeeMode::kUnspecified; },
       "domain_plan.tee_mode"},
      {"bad virt_type", [](DomainPlan& p) { p.virt_type = "xen"; }, "domain_plan.virt_type"},
      {"zero vcpus", [](DomainPlan& p) { p.vcpus = 0; }, "domain_plan.vcpus"},
      {"too many vcpus", [](DomainPlan& p) { p.vcpus = 5000; }, "domain_plan.vcpus"},
      {"zero memory", [](DomainPlan& p) { p.memory_mib = 0; }, "domain_plan.memory_mib"},
      {"empty kernel", [](DomainPlan& p) { p.kernel_path.clear(); }, "domain_plan.kernel_path"},
      {"relative kernel", [](DomainPlan& p) { p.kernel_path = "vmlinuz"; },
       "domain_plan.kernel_path"},
      {"empty initrd", [](DomainPlan& p) { p.initrd_path.clear(); }, "domain_plan.initrd_path"},
      {"dotdot initrd", [](DomainPlan& p) { p.initrd_path = "/img/../etc/shadow"; },
       "domain_plan.initrd_path"},
      {"newline in cmdline", [](DomainPlan& p) { p.cmdline = "a\nb"; }, "domain_plan.cmdline"},
      {"relative rootfs", [](DomainPlan& p) { p.rootfs_path = "rootfs.img"; },
       "domain_plan.rootfs_path"},
      {"relative data disk", [](DomainPlan& p) { p.data_disk_path = "./d.qcow2"; },
       "domain_plan.data_disk_path"},
      {"relative config dir", [](DomainPlan& p) { p.config_dir = "cfg"; },
       "domain_plan.config_dir"},
      {"relative console log", [](DomainPlan& p) { p.console_log_path = "c.log"; },
       "domain_plan.console_log_path"},
      {"tdx without firmware",
       [](DomainPlan& p) {
         p.tee_mode = TeeMode::kTdx;
         p.mrconfigid = TestMrConfigId();
       },
       "domain_plan.firmware_path"},
      {"tdx with short mrconfigid",
       [](DomainPlan& p) {
         p.tee_mode = TeeMode::kTdx;
         p.firmware_path = "/fw/OVMF.fd";
         p.mrconfigid.assign(32, 1);
       },
       "domain_plan.mrconfigid"},
      {"tdx under tcg",
       [](DomainPlan& p) {
         p.tee_mode = TeeMode::kTdx;
         p.firmware_path = "/fw/OVMF.fd";
         p.mrconfigid = TestMrConfigId();
         p.virt_type = "qemu";
       },
       "domain_plan.virt_type"},
      {"tdx relative qgs",
       [](DomainPlan& p) {
         p.tee_mode = TeeMode::kTdx;
         p.firmware_path = "/fw/OVMF.fd";
         p.mrconfigid = TestMrConfigId();
         p.qgs_socket_path = "qgs.sock";
       },
       "domain_plan.qgs_socket_path"},
      {"port protocol", [](DomainPlan& p) { p.ports[0].protocol = PortProtocol::kUnspecified; },
       "domain_plan.ports[0].protocol"},
      {"port address with comma",
       [](DomainPlan& p) { p.ports[0].host_address = "127.0.0.1,hostfwd=tcp::1-:1"; },
       "domain_plan.ports[0].host_address"},
      {"port address hostname", [](DomainPlan& p) { p.ports[0].host_address = "localhost"; },
       "domain_plan.ports[0].host_address"},
      {"host port zero", [](DomainPlan& p) { p.ports[0].host_port = 0; },
       "domain_plan.ports[0].host_port"},
      {"guest port zero", [](DomainPlan& p) { p.ports[0].guest_port = 0; },
       "domain_plan.ports[0].guest_port"},
      {"duplicate port", [](DomainPlan& p) { p.ports.push_back(p.ports[0]); },
       "domain_plan.ports[1].host_port"},
      {"bad gpu slot",
       [gpu](DomainPlan& p) {
         p.gpus = {gpu};
         p.gpus[0].slot = "18:00.0";
       },
       "domain_plan.gpus[0].slot"},
      {"gpu slot injection",
       [gpu](DomainPlan& p) {
         p.gpus = {gpu};
         p.gpus[0].slot = "0000:18:00.0'";
       },
       "domain_plan.gpus[0].slot"},
      {"gpu kind",
       [gpu](DomainPlan& p) {
         p.gpus = {gpu};
         p.gpus[0].kind = GpuKind::kUnspecified;
       },
       "domain_plan.gpus[0].kind"},
      {"duplicate gpu",
       [gpu](DomainPlan& p) {
         p.gpus = {gpu, gpu};
       },
       "domain_plan.gpus[1].slot"},
      {"negative numa node", [](DomainPlan& p) { p.numa_node = -1; }, "domain_plan.numa_node"},
      {"numa without cpus", [](DomainPlan& p) { p.numa_node = 0; }, "domain_plan.numa_cpus"},
      {"numa bad cpus",
       [](DomainPlan& p) {
         p.numa_node = 0;
         p.numa_cpus = "0-47,x";
       },
       "domain_plan.numa_cpus"},
      {"numa reversed range",
       [](DomainPlan& p) {
         p.numa_node = 0;
         p.numa_cpus = "47-0";
       },
       "domain_plan.numa_cpus"},
  };
  for (const InvalidCase& c : cases) {
    SCOPED_TRACE(c.name);
    DomainPlan p = BasePlan();
    c.mutate(p);
    EXPECT_THAT(BuildDomainXml(p),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
  }
}

TEST(PciMmio64BytesTest, SizesWindowFromDeviceKinds) {
  DomainPlan p = BasePlan();
  EXPECT_EQ(PciMmio64Bytes(p), 0u);
  p.gpus = {GpuDevice{.slot = "0000:18:00.0", .kind = GpuKind::kGpu}};
  EXPECT_EQ(PciMmio64Bytes(p), uint64_t{512} << 30);
  p.gpus.clear();
  for (int i = 0; i < 8; ++i) {
    p.gpus.push_back(GpuDevice{.kind = GpuKind::kGpu});
  }
  for (int i = 0; i < 4; ++i) {
    p.gpus.push_back(GpuDevice{.kind = GpuKind::kNvSwitch});
  }
  EXPECT_EQ(PciMmio64Bytes(p), (uint64_t{9} * 256 + 4) << 30);
}

TEST(BuildDomainXmlTest, MmioWindowAppearsInPciHoleAndOvmfFwCfg) {
  DomainPlan p = BasePlan();
  p.gpus = {GpuDevice{.slot = "0000:18:00.0", .kind = GpuKind::kGpu},
            GpuDevice{.slot = "0000:05:00.0", .kind = GpuKind::kNvSwitch}};
  PML_ASSERT_OK_AND_ASSIGN(std::string xml, BuildDomainXml(p));
  TempDir dir;
  const std::string file = WriteTemp(dir, "domain.xml", xml);
  ExpectSchemaValid(file);
  const uint64_t bytes = PciMmio64Bytes(p);
  EXPECT_EQ(XPath(file, "string(/domain/devices/controller[@model='pcie-root']/pcihole64)"),
            absl::StrCat(bytes >> 10));
  EXPECT_EQ(XPath(file, "string(//*[local-name()='arg'][6]/@value)"),
            absl::StrCat("name=opt/ovmf/X-PciMmio64Mb,string=", bytes >> 20));
  // Each device sits alone on its own root port's bus.
  EXPECT_EQ(XPath(file, "string(/domain/devices/hostdev[2]/address/@bus)"), "0x02");
  EXPECT_EQ(XPath(file, "string(/domain/devices/hostdev[2]/source/address/@bus)"), "0x05");
}

// ---------------------------------------------------------------------------------------------
// ParseDomainMetadata.

TEST(ParseDomainMetadataTest, RoundTripsBuildDomainXml) {
  const DomainPlan p = BasePlan();
  PML_ASSERT_OK_AND_ASSIGN(std::string xml, BuildDomainXml(p));
  PML_ASSERT_OK_AND_ASSIGN(DomainMetadata md, ParseDomainMetadata(xml));
  EXPECT_EQ(md, (DomainMetadata{p.vm_id, p.owner, p.spec_hash, p.vmm_instance}));
}

TEST(ParseDomainMetadataTest, MatchesByNamespaceNotPrefix) {
  // As libvirt may hand it back: another prefix, single quotes, other apps' metadata beside ours.
  const std::string xml = R"(<domain type='kvm' id='3'>
  <name>pml-demo</name>
  <metadata>
    <app1:foo xmlns:app1='http://app1.org/app1/'>bar</app1:foo>
    <x:vm xmlns:x='https://pml.dev/xmlns/vmm/v1'>
      <x:id>vm-1</x:id>
      <x:owner><![CDATA[alice&bob]]></x:owner>
      <x:spec-hash>abcd</x:spec-hash>
      <x:future>ignored</x:future>
    </x:vm>
  </metadata>
</domain>)";
  EXPECT_THAT(ParseDomainMetadata(xml),
              pml::testing::IsOkAndHolds(DomainMetadata{"vm-1", "alice&bob", "abcd"}));
}

TEST(ParseDomainMetadataTest, ForeignDomainIsNotFound) {
  const std::vector<std::string> foreign = {
      "<domain type='kvm'><name>other</name></domain>",
      "<domain type='kvm'><name>other</name><metadata><a:vm xmlns:a='http://other/'>"
      "<a:id>x</a:id></a:vm></metadata></domain>",
      // Our element names without our namespace are not ours either.
      "<domain type='kvm'><metadata><vm><id>x</id></vm></metadata></domain>",
  };
  for (const std::string& xml : foreign) {
    SCOPED_TRACE(xml);
    EXPECT_THAT(ParseDomainMetadata(xml),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("no pml metadata")));
  }
}

TEST(ParseDomainMetadataTest, GarbageIsInvalidArgument) {
  const std::string ns = "xmlns:p='https://pml.dev/xmlns/vmm/v1'";
  struct Case {
    std::string name, xml, message;
  };
  const std::vector<Case> cases = {
      {"empty", "", "empty"},
      {"not xml", "this is not xml", "domain xml"},
      {"unclosed", "<domain><name>x</name>", "domain xml"},
      {"wrong root", "<network><name>x</name></network>", "not <domain>"},
      {"billion laughs",
       "<!DOCTYPE domain [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;'>]>"
       "<domain><name>&b;</name></domain>",
       "DTD"},
      {"external entity",
       "<!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><domain>&x;</domain>", "DTD"},
      {"too large", "<domain>" + std::string(5 << 20, ' ') + "</domain>", "larger than"},
      {"missing id",
       "<domain><metadata><p:vm " + ns + "><p:owner>o</p:owner></p:vm></metadata></domain>",
       "no <id>"},
      {"empty id", "<domain><metadata><p:vm " + ns + "><p:id/></p:vm></metadata></domain>",
       "no <id>"},
      {"repeated vm",
       "<domain><metadata><p:vm " + ns + "><p:id>a</p:id></p:vm><p:vm " + ns +
           "><p:id>b</p:id></p:vm></metadata></domain>",
       "repeated"},
      {"repeated id",
       "<domain><metadata><p:vm " + ns + "><p:id>a</p:id><p:id>b</p:id></p:vm></metadata></domain>",
       "repeated"},
      {"id with markup",
       "<domain><metadata><p:vm " + ns + "><p:id>a<b/></p:id></p:vm></metadata></domain>",
       "not plain text"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ParseDomainMetadata(c.xml),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }
}

}  // namespace
}  // namespace pml::vmm
