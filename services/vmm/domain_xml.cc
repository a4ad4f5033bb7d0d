#include "services/vmm/domain_xml.h"

#include <arpa/inet.h>

#include <cstddef>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlsave.h>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"

namespace pml::vmm {
namespace {

// libvirt's namespace for <qemu:commandline> (formatdomain "QEMU command-line passthrough").
constexpr char kQemuNamespace[] = "http://libvirt.org/schemas/domain/qemu/1.0";

// TDX TD attributes for <launchSecurity type='tdx'><policy> (libvirt: "bit 0 is set to enable TDX
// debug, bit 28 is set to enable sept-ve-disable"): SEPT_VE_DISABLE on, DEBUG off. The guest
// kernel requires SEPT_VE_DISABLE; a debug TD would let the host read its memory.
constexpr char kTdxPolicy[] = "0x10000000";

constexpr uint32_t kMaxVcpus = 1024;
constexpr uint64_t kMaxMemoryMib = uint64_t{16} << 20;  // 16 TiB
constexpr size_t kMaxTextBytes = 4096;                  // any one value (x86 cmdline is 2048)
constexpr size_t kMaxDomainNameBytes = 200;
constexpr size_t kMaxDevices = 64;  // root ports are buses 1..64
constexpr size_t kMaxPorts = 256;
constexpr size_t kMaxDomainXmlBytes = 4 << 20;
constexpr size_t kMrConfigIdBytes = 48;

// The one QEMU user-mode network: always present, so the guest has outbound NAT (KMS, image
// pulls) whether or not it forwards ports.
constexpr char kNetdevId[] = "pmlnet0";

template <auto kFree>
struct CDeleter {
  template <typename T>
  void operator()(T* p) const {
    kFree(p);
  }
};
using XmlDocPtr = std::unique_ptr<xmlDoc, CDeleter<xmlFreeDoc>>;
using XmlBufferPtr = std::unique_ptr<xmlBuffer, CDeleter<xmlBufferFree>>;
using XmlParserCtxtPtr = std::unique_ptr<xmlParserCtxt, CDeleter<xmlFreeParserCtxt>>;

// libxml2 2.9 wants xmlInitParser() once before concurrent use (its thread-safety contract).
void EnsureLibxmlInitialized() {
  static const bool initialized = [] {
    xmlInitParser();
    return true;
  }();
  (void)initialized;
}

const xmlChar* X(const char* s) { return reinterpret_cast<const xmlChar*>(s); }

// ---------------------------------------------------------------------------------------------
// Validation.

// A value for an error message: C-escaped, at most 64 characters.
std::string Bounded(absl::string_view value) {
  std::string escaped = absl::CHexEscape(value.substr(0, 64));
  if (value.size() > 64) {
    absl::StrAppend(&escaped, "...");
  }
  return absl::StrCat("\"", escaped, "\"");
}

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("domain_plan.", field, ": ", why));
}

// True when `s` is well-formed UTF-8 whose characters XML 1.0 allows and that holds no control
// characters (C0, DEL, C1): such text round-trips through any XML parser unchanged.
bool IsCleanText(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    size_t len;
    if (b0 < 0x80) {
      cp = b0;
      len = 1;
    } else if (b0 >= 0xc2 && b0 <= 0xdf) {
      cp = b0 & 0x1f;
      len = 2;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      cp = b0 & 0x0f;
      len = 3;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      cp = b0 & 0x07;
      len = 4;
    } else {
      return false;
    }
    if (i + len > s.size()) {
      return false;
    }
    for (size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xc0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (b & 0x3f);
    }
    const bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0xfffe || cp == 0xffff) {
      return false;
    }
    i += len;
  }
  return true;
}

absl::Status CheckText(absl::string_view field, absl::string_view value) {
  if (value.size() > kMaxTextBytes) {
    return Invalid(field, absl::StrCat("longer than ", kMaxTextBytes, " bytes"));
  }
  if (!IsCleanText(value)) {
    return Invalid(field,
                   absl::StrCat("has control characters or invalid UTF-8: ", Bounded(value)));
  }
  return absl::OkStatus();
}

absl::Status CheckRequired(absl::string_view field, absl::string_view value) {
  if (value.empty()) {
    return Invalid(field, "must be set");
  }
  return CheckText(field, value);
}

// An absolute path without "." or ".." components; `required` says whether empty is an error.
absl::Status CheckPath(absl::string_view field, absl::string_view path, bool required) {
  if (path.empty()) {
    return required ? Invalid(field, "must be set") : absl::OkStatus();
  }
  PML_RETURN_IF_ERROR(CheckText(field, path));
  if (path.front() != '/') {
    return Invalid(field, absl::StrCat("must be an absolute path: ", Bounded(path)));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "." || part == "..") {
      return Invalid(field, absl::StrCat("must not have . or .. components: ", Bounded(path)));
    }
  }
  return absl::OkStatus();
}

bool IsHex(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return !s.empty();
}

// RFC 4122 text: 8-4-4-4-12 hex digits.
bool IsUuid(absl::string_view s) {
  if (s.size() != 36) {
    return false;
  }
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !absl::ascii_isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

// A host PCI address "dddd:bb:ss.f", split into libvirt's attribute values.
struct PciAddress {
  std::string domain, bus, slot, function;  // "0x0000", "0x18", "0x00", "0x0"
};

bool ParsePciSlot(absl::string_view s, PciAddress* out) {
  if (s.size() != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.') {
    return false;
  }
  const absl::string_view domain = s.substr(0, 4), bus = s.substr(5, 2), slot = s.substr(8, 2),
                          function = s.substr(11, 1);
  if (!IsHex(domain) || !IsHex(bus) || !IsHex(slot) || function[0] < '0' || function[0] > '7') {
    return false;
  }
  uint32_t slot_value = 0;
  if (!absl::SimpleHexAtoi(slot, &slot_value) || slot_value > 0x1f) {
    return false;
  }
  out->domain = absl::StrCat("0x", absl::AsciiStrToLower(domain));
  out->bus = absl::StrCat("0x", absl::AsciiStrToLower(bus));
  out->slot = absl::StrCat("0x", absl::AsciiStrToLower(slot));
  out->function = absl::StrCat("0x", function);
  return true;
}

// A sysfs cpulist: "N" or "A-B" (A <= B) items joined by ','.
bool IsCpuList(absl::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (absl::string_view item : absl::StrSplit(s, ',')) {
    std::vector<absl::string_view> ends = absl::StrSplit(item, absl::MaxSplits('-', 1));
    uint32_t lo = 0, hi = 0;
    for (absl::string_view e : ends) {
      if (e.empty() || e.size() > 5) {
        return false;
      }
      for (char c : e) {
        if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
          return false;
        }
      }
    }
    if (!absl::SimpleAtoi(ends[0], &lo)) {
      return false;
    }
    if (ends.size() == 2 && (!absl::SimpleAtoi(ends[1], &hi) || hi < lo)) {
      return false;
    }
  }
  return true;
}

bool IsDottedIpv4(absl::string_view s) {
  if (s.empty() || s.size() > 15) {
    return false;
  }
  const std::string text(s);
  in_addr addr{};
  return inet_pton(AF_INET, text.c_str(), &addr) == 1;
}

absl::Status ValidatePlan(const DomainPlan& p) {
  PML_RETURN_IF_ERROR(CheckRequired("domain_name", p.domain_name));
  if (p.domain_name.size() > kMaxDomainNameBytes) {
    return Invalid("domain_name", absl::StrCat("longer than ", kMaxDomainNameBytes, " bytes"));
  }
  if (absl::StrContains(p.domain_name, '/')) {
    return Invalid("domain_name", absl::StrCat("must not contain '/': ", Bounded(p.domain_name)));
  }
  if (!IsUuid(p.domain_uuid)) {
    return Invalid("domain_uuid",
                   absl::StrCat("must be RFC 4122 UUID text: ", Bounded(p.domain_uuid)));
  }
  PML_RETURN_IF_ERROR(CheckRequired("vm_id", p.vm_id));
  PML_RETURN_IF_ERROR(CheckText("owner", p.owner));
  PML_RETURN_IF_ERROR(CheckText("spec_hash", p.spec_hash));
  PML_RETURN_IF_ERROR(CheckText("vmm_instance", p.vmm_instance));

  if (p.tee_mode != TeeMode::kTdx && p.tee_mode != TeeMode::kNone) {
    return Invalid("tee_mode", "must be tdx or none");
  }
  if (p.virt_type != "kvm" && p.virt_type != "qemu") {
    return Invalid("virt_type",
                   absl::StrCat("must be \"kvm\" or \"qemu\": ", Bounded(p.virt_type)));
  }
  if (p.vcpus == 0 || p.vcpus > kMaxVcpus) {
    return Invalid("vcpus", absl::StrCat("must be in [1, ", kMaxVcpus, "], got ", p.vcpus));
  }
  if (p.memory_mib == 0 || p.memory_mib > kMaxMemoryMib) {
    return Invalid("memory_mib",
                   absl::StrCat("must be in [1, ", kMaxMemoryMib, "], got ", p.memory_mib));
  }

  PML_RETURN_IF_ERROR(CheckPath("kernel_path", p.kernel_path, /*required=*/true));
  PML_RETURN_IF_ERROR(CheckPath("initrd_path", p.initrd_path, /*required=*/true));
  PML_RETURN_IF_ERROR(CheckText("cmdline", p.cmdline));
  PML_RETURN_IF_ERROR(
      CheckPath("firmware_path", p.firmware_path, /*required=*/p.tee_mode == TeeMode::kTdx));
  PML_RETURN_IF_ERROR(CheckPath("rootfs_path", p.rootfs_path, /*required=*/false));
  PML_RETURN_IF_ERROR(CheckPath("data_disk_path", p.data_disk_path, /*required=*/false));
  PML_RETURN_IF_ERROR(CheckPath("config_dir", p.config_dir, /*required=*/false));
  PML_RETURN_IF_ERROR(CheckPath("console_log_path", p.console_log_path, /*required=*/false));

  if (p.tee_mode == TeeMode::kTdx) {
    if (p.virt_type != "kvm") {
      return Invalid("virt_type", "tee_mode tdx needs \"kvm\"");
    }
    if (p.mrconfigid.size() != kMrConfigIdBytes) {
      return Invalid("mrconfigid",
                     absl::StrCat("must be ", kMrConfigIdBytes, " bytes for tee_mode tdx, got ",
                                  p.mrconfigid.size()));
    }
    PML_RETURN_IF_ERROR(CheckPath("qgs_socket_path", p.qgs_socket_path, /*required=*/false));
  }

  if (p.ports.size() > kMaxPorts) {
    return Invalid("ports", absl::StrCat("more than ", kMaxPorts, " forwards"));
  }
  std::set<std::tuple<PortProtocol, std::string, uint16_t>> seen_ports;
  for (size_t i = 0; i < p.ports.size(); ++i) {
    const PortForward& f = p.ports[i];
    const std::string field = absl::StrCat("ports[", i, "]");
    if (f.protocol != PortProtocol::kTcp && f.protocol != PortProtocol::kUdp) {
      return Invalid(absl::StrCat(field, ".protocol"), "must be tcp or udp");
    }
    if (!IsDottedIpv4(f.host_address)) {
      return Invalid(absl::StrCat(field, ".host_address"),
                     absl::StrCat("must be a dotted IPv4 address: ", Bounded(f.host_address)));
    }
    if (f.host_port == 0) {
      return Invalid(absl::StrCat(field, ".host_port"), "must not be 0");
    }
    if (f.guest_port == 0) {
      return Invalid(absl::StrCat(field, ".guest_port"), "must not be 0");
    }
    if (!seen_ports.emplace(f.protocol, f.host_address, f.host_port).second) {
      return Invalid(absl::StrCat(field, ".host_port"),
                     absl::StrCat("duplicate forward of ", f.host_address, ":", f.host_port));
    }
  }

  if (p.gpus.size() > kMaxDevices) {
    return Invalid("gpus", absl::StrCat("more than ", kMaxDevices, " devices"));
  }
  std::set<std::string> seen_slots;
  for (size_t i = 0; i < p.gpus.size(); ++i) {
    const GpuDevice& g = p.gpus[i];
    const std::string field = absl::StrCat("gpus[", i, "]");
    PciAddress unused;
    if (!ParsePciSlot(g.slot, &unused)) {
      return Invalid(absl::StrCat(field, ".slot"),
                     absl::StrCat("must be a PCI address dddd:bb:ss.f: ", Bounded(g.slot)));
    }
    if (g.kind != GpuKind::kGpu && g.kind != GpuKind::kNvSwitch) {
      return Invalid(absl::StrCat(field, ".kind"), "must be gpu or nvswitch");
    }
    if (!seen_slots.insert(absl::AsciiStrToLower(g.slot)).second) {
      return Invalid(absl::StrCat(field, ".slot"), absl::StrCat("duplicate ", g.slot));
    }
  }

  if (p.numa_node.has_value()) {
    if (*p.numa_node < 0 || *p.numa_node > 1023) {
      return Invalid("numa_node", absl::StrCat("must be in [0, 1023], got ", *p.numa_node));
    }
    if (!IsCpuList(p.numa_cpus)) {
      return Invalid("numa_cpus", absl::StrCat("must be a cpulist like 0-47,96-143 when "
                                               "numa_node is set: ",
                                               Bounded(p.numa_cpus)));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Building. libxml2 escapes text and attribute values on output (xmlNewTextChild, xmlNewProp),
// so plan values are never markup.

xmlNodePtr Child(xmlNodePtr parent, const char* name, xmlNsPtr ns = nullptr) {
  xmlNodePtr node = xmlNewChild(parent, ns, X(name), nullptr);
  PML_CHECK(node != nullptr);
  return node;
}

xmlNodePtr TextChild(xmlNodePtr parent, const char* name, absl::string_view text,
                     xmlNsPtr ns = nullptr) {
  const std::string value(text);
  xmlNodePtr node = xmlNewTextChild(parent, ns, X(name), X(value.c_str()));
  PML_CHECK(node != nullptr);
  return node;
}

void Attr(xmlNodePtr node, const char* name, absl::string_view value) {
  const std::string text(value);
  PML_CHECK(xmlNewProp(node, X(name), X(text.c_str())) != nullptr);
}

xmlNsPtr Namespace(xmlNodePtr node, const char* href, const char* prefix) {
  xmlNsPtr ns = xmlNewNs(node, X(href), X(prefix));
  PML_CHECK(ns != nullptr);
  return ns;
}

// <disk type='file' device='disk'> on virtio.
void AddDisk(xmlNodePtr devices, absl::string_view path, const char* format, absl::string_view dev,
             absl::string_view serial, bool readonly) {
  xmlNodePtr disk = Child(devices, "disk");
  Attr(disk, "type", "file");
  Attr(disk, "device", "disk");
  xmlNodePtr driver = Child(disk, "driver");
  Attr(driver, "name", "qemu");
  Attr(driver, "type", format);
  if (!readonly) {
    Attr(driver, "discard", "unmap");
  }
  Attr(Child(disk, "source"), "file", path);
  xmlNodePtr target = Child(disk, "target");
  Attr(target, "dev", dev);
  Attr(target, "bus", "virtio");
  TextChild(disk, "serial", serial);
  if (readonly) {
    Child(disk, "readonly");
  }
}

// A character device written to `path` (appending, so a restart keeps the earlier boot).
void AddFileSource(xmlNodePtr chardev, absl::string_view path) {
  xmlNodePtr source = Child(chardev, "source");
  Attr(source, "path", path);
  Attr(source, "append", "on");
}

std::string Hex2(size_t v) { return absl::StrCat("0x", absl::Hex(v, absl::kZeroPad2)); }

const char* ProtocolName(PortProtocol p) { return p == PortProtocol::kUdp ? "udp" : "tcp"; }

std::vector<std::string> QemuArgs(const DomainPlan& p) {
  std::string netdev = absl::StrCat("user,id=", kNetdevId);
  for (const PortForward& f : p.ports) {
    // slirp: hostfwd=[tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport. Every part is
    // validated (IPv4 literal, numbers), so no ',' can reach QEMU's option parser.
    absl::StrAppend(&netdev, ",hostfwd=", ProtocolName(f.protocol), ":", f.host_address, ":",
                    f.host_port, "-:", f.guest_port);
  }
  // libvirt does not know this device. QEMU 7.2 creates plain `-device a=b` devices before the
  // JSON-form ones libvirt passes, so a plain unaddressed NIC would take a slot libvirt has
  // already given to one of its pcie-root-ports (QEMU then refuses to start); in JSON form it is
  // created after libvirt's devices and takes the first free slot. romfile "" drops the PXE
  // option ROM (direct kernel boot never uses it).
  std::vector<std::string> args = {
      "-netdev", netdev, "-device",
      absl::StrCat(R"({"driver":"virtio-net-pci","netdev":")", kNetdevId,
                   R"(","bus":"pcie.0","romfile":""})")};
  const uint64_t mmio = PciMmio64Bytes(p);
  if (mmio > 0) {
    // OVMF (the TDX firmware) sizes its 64-bit PCI aperture from this fw_cfg file rather than
    // from q35's pci-hole64-size; SeaBIOS ignores it. Same value as <pcihole64>.
    args.push_back("-fw_cfg");
    args.push_back(absl::StrCat("name=opt/ovmf/X-PciMmio64Mb,string=", mmio >> 20));
  }
  return args;
}

std::string Serialize(xmlDocPtr doc) {
  XmlBufferPtr buffer(xmlBufferCreate());
  PML_CHECK(buffer != nullptr);
  xmlSaveCtxtPtr save = xmlSaveToBuffer(buffer.get(), "UTF-8", XML_SAVE_FORMAT | XML_SAVE_NO_DECL);
  PML_CHECK(save != nullptr);
  const long written = xmlSaveDoc(save, doc);
  PML_CHECK(xmlSaveClose(save) >= 0 && written >= 0);
  return std::string(reinterpret_cast<const char*>(xmlBufferContent(buffer.get())),
                     static_cast<size_t>(xmlBufferLength(buffer.get())));
}

// ---------------------------------------------------------------------------------------------
// Parsing.

// The text of `node`'s text and CDATA children; false when it has element or other children.
bool SimpleText(xmlNodePtr node, std::string* out) {
  out->clear();
  for (xmlNodePtr c = node->children; c != nullptr; c = c->next) {
    if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
      if (c->content != nullptr) {
        out->append(reinterpret_cast<const char*>(c->content));
      }
    } else if (c->type != XML_COMMENT_NODE) {
      return false;
    }
  }
  return true;
}

bool IsNamed(xmlNodePtr node, const char* name, const char* ns_href) {
  if (node->type != XML_ELEMENT_NODE || xmlStrcmp(node->name, X(name)) != 0) {
    return false;
  }
  if (ns_href == nullptr) {
    return node->ns == nullptr;
  }
  return node->ns != nullptr && node->ns->href != nullptr &&
         xmlStrcmp(node->ns->href, X(ns_href)) == 0;
}

}  // namespace

uint64_t PciMmio64Bytes(const DomainPlan& plan) {
  uint64_t gpus = 0, switches = 0;
  for (const GpuDevice& g : plan.gpus) {
    if (g.kind == GpuKind::kNvSwitch) {
      ++switches;
    } else {
      ++gpus;
    }
  }
  if (gpus == 0 && switches == 0) {
    return 0;
  }
  return (gpus + 1) * kMmio64PerGpuBytes + switches * kMmio64PerNvSwitchBytes;
}

absl::StatusOr<std::string> BuildDomainXml(const DomainPlan& plan) {
  PML_RETURN_IF_ERROR(ValidatePlan(plan));
  EnsureLibxmlInitialized();
  const bool tdx = plan.tee_mode == TeeMode::kTdx;
  const bool kvm = plan.virt_type == "kvm";

  XmlDocPtr doc(xmlNewDoc(X("1.0")));
  PML_CHECK(doc != nullptr);
  xmlNodePtr domain = xmlNewDocNode(doc.get(), nullptr, X("domain"), nullptr);
  PML_CHECK(domain != nullptr);
  xmlDocSetRootElement(doc.get(), domain);
  Attr(domain, "type", plan.virt_type);
  xmlNsPtr qemu_ns = Namespace(domain, kQemuNamespace, "qemu");

  TextChild(domain, "name", plan.domain_name);
  TextChild(domain, "uuid", absl::AsciiStrToLower(plan.domain_uuid));

  // Ownership, for `virsh dumpxml` readers and for ParseDomainMetadata at start-up.
  xmlNodePtr metadata = Child(domain, "metadata");
  xmlNodePtr vm = Child(metadata, "vm");
  const std::string pml_href(kPmlMetadataNamespace);
  xmlNsPtr pml_ns = Namespace(vm, pml_href.c_str(), "pml");
  xmlSetNs(vm, pml_ns);
  TextChild(vm, "id", plan.vm_id, pml_ns);
  TextChild(vm, "owner", plan.owner, pml_ns);
  TextChild(vm, "spec-hash", plan.spec_hash, pml_ns);
  if (!plan.vmm_instance.empty()) TextChild(vm, "vmm", plan.vmm_instance, pml_ns);

  const std::string memory = absl::StrCat(plan.memory_mib);
  Attr(TextChild(domain, "memory", memory), "unit", "MiB");
  Attr(TextChild(domain, "currentMemory", memory), "unit", "MiB");
  if (plan.hugepages) {
    // The host's default hugepage size (2 MiB on x86). For TDX, libvirt adds the guest_memfd
    // private memory itself; hugepages then back the shared half, as dstack does.
    Child(Child(domain, "memoryBacking"), "hugepages");
  }

  xmlNodePtr vcpu = TextChild(domain, "vcpu", absl::StrCat(plan.vcpus));
  Attr(vcpu, "placement", "static");
  if (plan.numa_node.has_value()) {
    Attr(vcpu, "cpuset", plan.numa_cpus);
    // Each vCPU may float over the node's CPUs (not 1:1: the node's CPUs are shared with other
    // VMs), and so may QEMU's own threads.
    xmlNodePtr cputune = Child(domain, "cputune");
    for (uint32_t i = 0; i < plan.vcpus; ++i) {
      xmlNodePtr pin = Child(cputune, "vcpupin");
      Attr(pin, "vcpu", absl::StrCat(i));
      Attr(pin, "cpuset", plan.numa_cpus);
    }
    Attr(Child(cputune, "emulatorpin"), "cpuset", plan.numa_cpus);
    xmlNodePtr numa_memory = Child(Child(domain, "numatune"), "memory");
    Attr(numa_memory, "mode", "strict");
    Attr(numa_memory, "nodeset", absl::StrCat(*plan.numa_node));
  }

  xmlNodePtr os = Child(domain, "os");
  xmlNodePtr type = TextChild(os, "type", "hvm");
  Attr(type, "arch", "x86_64");
  Attr(type, "machine", "q35");
  if (tdx) {
    // TDVF is loaded with -bios (TDX has no read-only memslots, so no pflash) and keeps no
    // variables store.
    xmlNodePtr loader = TextChild(os, "loader", plan.firmware_path);
    Attr(loader, "type", "rom");
    Attr(loader, "format", "raw");
    Attr(loader, "stateless", "yes");
  }
  TextChild(os, "kernel", plan.kernel_path);
  TextChild(os, "initrd", plan.initrd_path);
  if (!plan.cmdline.empty()) {
    TextChild(os, "cmdline", plan.cmdline);
  }

  xmlNodePtr features = Child(domain, "features");
  Child(features, "acpi");
  Child(features, "apic");

  if (kvm) {
    xmlNodePtr cpu = Child(domain, "cpu");
    Attr(cpu, "mode", "host-passthrough");
    if (!plan.gpus.empty()) {
      // The host's physical address width, so the multi-TiB MMIO window fits.
      Attr(Child(cpu, "maxphysaddr"), "mode", "passthrough");
    }
  }
  // virt_type "qemu" (TCG): no <cpu>, so QEMU's default model, which TCG fully implements.

  xmlNodePtr clock = Child(domain, "clock");
  Attr(clock, "offset", "utc");
  xmlNodePtr hpet = Child(clock, "timer");
  Attr(hpet, "name", "hpet");
  Attr(hpet, "present", "no");

  TextChild(domain, "on_poweroff", "destroy");
  // A TD cannot be reset in place: its measured state would have to be rebuilt.
  TextChild(domain, "on_reboot", tdx ? "destroy" : "restart");
  TextChild(domain, "on_crash", "destroy");
  xmlNodePtr pm = Child(domain, "pm");
  Attr(Child(pm, "suspend-to-mem"), "enabled", "no");
  Attr(Child(pm, "suspend-to-disk"), "enabled", "no");

  xmlNodePtr devices = Child(domain, "devices");
  xmlNodePtr root = Child(devices, "controller");
  Attr(root, "type", "pci");
  Attr(root, "index", "0");
  Attr(root, "model", "pcie-root");
  const uint64_t mmio = PciMmio64Bytes(plan);
  if (mmio > 0) {
    Attr(TextChild(root, "pcihole64", absl::StrCat(mmio >> 10)), "unit", "KiB");
  }
  xmlNodePtr usb = Child(devices, "controller");
  Attr(usb, "type", "usb");
  Attr(usb, "model", "none");
  // One pcie-root-port per device (index i+1 is guest bus i+1), the device at slot 0 on it: each
  // gets its own bridge window, hotplug slot and ACS boundary, as on the host. The hostdevs'
  // explicit addresses fill these ports, so libvirt puts its virtio devices on ports it adds.
  for (size_t i = 0; i < plan.gpus.size(); ++i) {
    xmlNodePtr port = Child(devices, "controller");
    Attr(port, "type", "pci");
    Attr(port, "index", absl::StrCat(i + 1));
    Attr(port, "model", "pcie-root-port");
  }

  char next_disk = 'a';
  if (!plan.rootfs_path.empty()) {
    AddDisk(devices, plan.rootfs_path, "raw", absl::StrCat("vd", std::string(1, next_disk++)),
            kRootDiskSerial, /*readonly=*/true);
  }
  if (!plan.data_disk_path.empty()) {
    AddDisk(devices, plan.data_disk_path, "qcow2", absl::StrCat("vd", std::string(1, next_disk++)),
            kDataDiskSerial, /*readonly=*/false);
  }
  if (!plan.config_dir.empty()) {
    xmlNodePtr fs = Child(devices, "filesystem");
    Attr(fs, "type", "mount");
    Attr(fs, "accessmode", "mapped");
    Attr(Child(fs, "source"), "dir", plan.config_dir);
    Attr(Child(fs, "target"), "dir", kConfigShareTag);
    Child(fs, "readonly");
  }
  if (!plan.console_log_path.empty()) {
    // The guest's ttyS0 goes to the file; <console> names the same port, as libvirt expects.
    xmlNodePtr serial = Child(devices, "serial");
    Attr(serial, "type", "file");
    AddFileSource(serial, plan.console_log_path);
    xmlNodePtr serial_target = Child(serial, "target");
    Attr(serial_target, "type", "isa-serial");
    Attr(serial_target, "port", "0");
    Attr(Child(serial_target, "model"), "name", "isa-serial");
    xmlNodePtr console = Child(devices, "console");
    Attr(console, "type", "file");
    AddFileSource(console, plan.console_log_path);
    xmlNodePtr console_target = Child(console, "target");
    Attr(console_target, "type", "serial");
    Attr(console_target, "port", "0");
  }

  for (size_t i = 0; i < plan.gpus.size(); ++i) {
    PciAddress host;
    PML_CHECK(ParsePciSlot(plan.gpus[i].slot, &host));
    xmlNodePtr hostdev = Child(devices, "hostdev");
    Attr(hostdev, "mode", "subsystem");
    Attr(hostdev, "type", "pci");
    Attr(hostdev, "managed", "yes");
    Attr(Child(hostdev, "driver"), "name", "vfio");
    xmlNodePtr source_address = Child(Child(hostdev, "source"), "address");
    Attr(source_address, "domain", host.domain);
    Attr(source_address, "bus", host.bus);
    Attr(source_address, "slot", host.slot);
    Attr(source_address, "function", host.function);
    xmlNodePtr guest_address = Child(hostdev, "address");
    Attr(guest_address, "type", "pci");
    Attr(guest_address, "domain", "0x0000");
    Attr(guest_address, "bus", Hex2(i + 1));
    Attr(guest_address, "slot", "0x00");
    Attr(guest_address, "function", "0x0");
  }

  xmlNodePtr rng = Child(devices, "rng");
  Attr(rng, "model", "virtio");
  Attr(TextChild(rng, "backend", "/dev/urandom"), "model", "random");
  xmlNodePtr balloon = Child(devices, "memballoon");
  Attr(balloon, "model", "none");

  if (tdx) {
    // libvirt 11.6 formatdomain "Launch Security", type 'tdx': policy (64-bit hex), mrConfigId
    // (base64 of the 48-byte SHA-384-sized value), quoteGenerationService (QGS unix socket).
    xmlNodePtr security = Child(domain, "launchSecurity");
    Attr(security, "type", "tdx");
    TextChild(security, "policy", kTdxPolicy);
    TextChild(security, "mrConfigId", core::Base64Encode(plan.mrconfigid));
    if (!plan.qgs_socket_path.empty()) {
      Attr(Child(security, "quoteGenerationService"), "path", plan.qgs_socket_path);
    }
  }

  xmlNodePtr commandline = Child(domain, "commandline", qemu_ns);
  for (const std::string& arg : QemuArgs(plan)) {
    Attr(Child(commandline, "arg", qemu_ns), "value", arg);
  }

  return Serialize(doc.get());
}

absl::StatusOr<DomainMetadata> ParseDomainMetadata(absl::string_view domain_xml) {
  if (domain_xml.size() > kMaxDomainXmlBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("domain xml: larger than ", kMaxDomainXmlBytes, " bytes"));
  }
  if (domain_xml.empty()) {
    return absl::InvalidArgumentError("domain xml: empty");
  }
  EnsureLibxmlInitialized();
  XmlParserCtxtPtr ctxt(xmlNewParserCtxt());
  if (ctxt == nullptr) {
    return absl::ResourceExhaustedError("domain xml: out of memory");
  }
  // No XML_PARSE_NOENT (entities stay unexpanded), no DTD loading, no network; errors go into
  // the context rather than to stderr.
  constexpr int kOptions =
      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA;
  XmlDocPtr doc(xmlCtxtReadMemory(ctxt.get(), domain_xml.data(),
                                  static_cast<int>(domain_xml.size()), nullptr, nullptr, kOptions));
  if (doc == nullptr || !ctxt->wellFormed) {
    const xmlError* error = xmlCtxtGetLastError(ctxt.get());
    std::string why = "not well-formed";
    if (error != nullptr && error->message != nullptr) {
      why = absl::StrCat("line ", error->line, ": ",
                         absl::StripAsciiWhitespace(error->message).substr(0, 120));
    }
    return absl::InvalidArgumentError(absl::StrCat("domain xml: ", why));
  }
  if (doc->intSubset != nullptr || doc->extSubset != nullptr) {
    return absl::InvalidArgumentError("domain xml: a DTD is not allowed");
  }
  xmlNodePtr root = xmlDocGetRootElement(doc.get());
  if (root == nullptr || !IsNamed(root, "domain", nullptr)) {
    return absl::InvalidArgumentError("domain xml: root element is not <domain>");
  }

  const std::string pml_href(kPmlMetadataNamespace);
  xmlNodePtr vm = nullptr;
  for (xmlNodePtr md = root->children; md != nullptr; md = md->next) {
    if (!IsNamed(md, "metadata", nullptr)) {
      continue;
    }
    for (xmlNodePtr c = md->children; c != nullptr; c = c->next) {
      if (!IsNamed(c, "vm", pml_href.c_str())) {
        continue;
      }
      if (vm != nullptr) {
        return absl::InvalidArgumentError("domain xml: pml metadata element is repeated");
      }
      vm = c;
    }
  }
  if (vm == nullptr) {
    return absl::NotFoundError("domain xml: no pml metadata (not a pml domain)");
  }

  DomainMetadata out;
  bool have_id = false, have_owner = false, have_hash = false, have_vmm = false;
  for (xmlNodePtr c = vm->children; c != nullptr; c = c->next) {
    if (c->type != XML_ELEMENT_NODE) {
      continue;
    }
    std::string* target = nullptr;
    bool* seen = nullptr;
    if (IsNamed(c, "id", pml_href.c_str())) {
      target = &out.vm_id;
      seen = &have_id;
    } else if (IsNamed(c, "owner", pml_href.c_str())) {
      target = &out.owner;
      seen = &have_owner;
    } else if (IsNamed(c, "spec-hash", pml_href.c_str())) {
      target = &out.spec_hash;
      seen = &have_hash;
    } else if (IsNamed(c, "vmm", pml_href.c_str())) {
      target = &out.vmm_instance;
      seen = &have_vmm;
    } else {
      continue;  // a newer VMM may add fields
    }
    const std::string name(reinterpret_cast<const char*>(c->name));
    if (*seen) {
      return absl::InvalidArgumentError(
          absl::StrCat("domain xml: pml metadata <", name, "> is repeated"));
    }
    *seen = true;
    if (!SimpleText(c, target)) {
      return absl::InvalidArgumentError(
          absl::StrCat("domain xml: pml metadata <", name, "> is not plain text"));
    }
  }
  if (out.vm_id.empty()) {
    return absl::InvalidArgumentError("domain xml: pml metadata has no <id>");
  }
  return out;
}

}  // namespace pml::vmm
