#pragma once
// The libvirt domain XML for a pml VM (DESIGN.md §6), and the reverse look-up the VMM does at
// start-up: which libvirt domains are ours.
//
// BuildDomainXml turns a resolved DomainPlan into a complete <domain> document: q35, direct
// kernel/initrd/cmdline boot, read-only root disk, qcow2 data disk, the app config share (9p, tag
// "pml-config"), serial console to a file, QEMU user networking with the plan's port forwards,
// one pcie-root-port per passed-through GPU/NVSwitch with a 64-bit MMIO window sized for their
// BARs, optional hugepages and NUMA pinning, and for TDX the <launchSecurity type='tdx'> element
// (libvirt 11.6+). The document is built with libxml2's tree API, so no plan value can inject
// markup. Ownership is recorded in <metadata> under kPmlMetadataNamespace, which
// ParseDomainMetadata reads back from the XML libvirt returns.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/vmm/vm_model.h"

namespace pml::vmm {

// Namespace URI of our <metadata> element (<pml:vm>). Also the key for virDomainGetMetadata.
inline constexpr absl::string_view kPmlMetadataNamespace = "https://pml.dev/xmlns/vmm/v1";

// Guest-visible names the image relies on.
inline constexpr absl::string_view kConfigShareTag = "pml-config";  // 9p mount tag
inline constexpr absl::string_view kRootDiskSerial = "pml-rootfs";  // /dev/disk/by-id/virtio-…
inline constexpr absl::string_view kDataDiskSerial = "pml-data";

// 64-bit MMIO reserved per passed-through device (GPU, NVSwitch). An H100 80GB's BAR1 is
// 128 GiB and an H200's at most 256 GiB; a BAR must be naturally aligned, so one extra GPU-sized
// slot covers the alignment lost at the start of the window (firmware places the largest BARs
// first, so the rest pack). NVSwitch BARs are tens of MiB.
inline constexpr uint64_t kMmio64PerGpuBytes = uint64_t{256} << 30;
inline constexpr uint64_t kMmio64PerNvSwitchBytes = uint64_t{1} << 30;

// The size of the guest's 64-bit PCI hole for `plan.gpus`: (GPUs + 1) × kMmio64PerGpuBytes +
// NVSwitches × kMmio64PerNvSwitchBytes, or 0 when there are none (QEMU's default then). Pure.
uint64_t PciMmio64Bytes(const DomainPlan& plan);

// Returns the libvirt domain XML for `plan` (no XML declaration, two-space indentation, stable
// output: the same plan always gives the same bytes).
//
// Errors: kInvalidArgument naming the field (e.g. "domain_plan.kernel_path: must be an absolute
// path") when the plan is malformed:
//   - domain_name, domain_uuid (RFC 4122 text), vm_id, kernel_path, initrd_path empty or bad;
//     domain_name containing '/';
//   - a path that is set but not absolute or has a ".." component;
//   - any text with control characters or invalid UTF-8 (they can't round-trip through XML);
//   - vcpus 0 or above 1024, memory_mib 0 or above 16 TiB;
//   - tee_mode other than kTdx/kNone; virt_type other than "kvm"/"qemu"; kTdx with "qemu";
//   - kTdx without firmware_path or without a 48-byte mrconfigid (mrconfigid and
//     qgs_socket_path are ignored for kNone);
//   - a port forward with an unspecified protocol, a host_address that is not dotted IPv4, port 0,
//     or a duplicate (protocol, host_address, host_port);
//   - a GPU with a malformed slot ("dddd:bb:ss.f", hex), an unspecified kind, or a repeated slot;
//   - numa_node negative, or set without a numa_cpus cpulist (digits, ',' and '-').
// Pure and thread-safe.
absl::StatusOr<std::string> BuildDomainXml(const DomainPlan& plan);

// What BuildDomainXml recorded in <metadata>.
struct DomainMetadata {
  std::string vm_id;
  std::string owner;
  std::string spec_hash;
  std::string vmm_instance;  // the VMM (store) that made the domain; empty from older VMMs
  bool operator==(const DomainMetadata&) const = default;
};

// Reads our metadata from a domain XML document (as virDomainGetXMLDesc returns it; any
// namespace prefix, matched by kPmlMetadataNamespace). The parser never touches the network,
// never loads or expands entities (a document with a DTD is refused) and refuses input over
// 4 MiB.
// Errors: kInvalidArgument when the text is not well-formed XML, its root is not <domain>, it has
// a DTD or is too large, or our element is repeated or has no non-empty <id>; kNotFound when the
// domain carries no pml metadata (not ours). Pure and thread-safe.
absl::StatusOr<DomainMetadata> ParseDomainMetadata(absl::string_view domain_xml);

}  // namespace pml::vmm
