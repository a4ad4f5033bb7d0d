#pragma once
// pml-vmm's domain model, free of gRPC and libvirt: what the host has (GPUs, images), what a VM is
// asked to be (VmSpec) and what the VMM keeps about it (VmRecord). The service converts these
// to and from pml.vmm.v1 protos (vmm_convert.h); inventory.h fills the inventory types from
// sysfs and the image directory; domain_xml.h turns a resolved spec into libvirt domain XML.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace pml::vmm {

enum class TeeMode { kUnspecified = 0, kTdx = 1, kNone = 2 };
enum class ImageVariant { kUnspecified = 0, kProduction = 1, kDevelopment = 2 };
enum class GpuKind { kUnspecified = 0, kGpu = 1, kNvSwitch = 2 };
enum class GpuArchitecture { kUnspecified = 0, kHopper = 1, kBlackwell = 2, kLs10 = 3 };
enum class PortProtocol { kUnspecified = 0, kTcp = 1, kUdp = 2 };

// Same numbers as pml.vmm.v1.VmState.
enum class VmState {
  kUnspecified = 0,
  kCreating = 1,
  kStopped = 2,
  kStarting = 3,
  kRunning = 4,
  kStopping = 5,
  kPaused = 6,
  kFailed = 7,
  kRemoving = 8,
};
const char* VmStateName(VmState state);  // "creating", "running", ...

// An NVIDIA GPU or NVSwitch found in sysfs (inventory.h). Claims are not part of it: the VMM
// joins the inventory with its store.
struct GpuDevice {
  std::string slot;          // PCI address "0000:18:00.0" (the sysfs directory name)
  GpuKind kind = GpuKind::kUnspecified;
  uint16_t vendor_id = 0;    // 0x10de
  uint16_t device_id = 0;
  std::string name;          // from the device id table; "unknown" otherwise
  GpuArchitecture arch = GpuArchitecture::kUnspecified;
  int numa_node = -1;        // -1 when sysfs has none
  int iommu_group = -1;      // -1 when the device has none
  std::string driver;        // bound driver name; empty when unbound
  bool vfio_bound = false;
  // Empty when the device can be passed through; else why not (e.g. "bound to nvidia, not
  // vfio-pci", "no IOMMU group").
  std::string unusable_reason;
};

struct ImageFileInfo {
  std::string name;                 // file name inside the image directory
  std::array<uint8_t, 32> sha256{};
  uint64_t size_bytes = 0;
};

// A guest image: a directory with metadata.json (format in inventory.h).
struct ImageInfo {
  std::string name;                 // directory name
  std::string dir;                  // absolute path of the directory
  std::string version;
  ImageVariant variant = ImageVariant::kUnspecified;
  std::string cmdline;
  std::string kernel;               // file names inside dir; kernel and initrd required
  std::string initrd;
  std::string firmware;             // optional (TDX firmware, e.g. OVMF)
  std::string rootfs;               // optional read-only root disk
  std::vector<ImageFileInfo> files;
  std::array<uint8_t, 32> os_image_hash{};
  // MRTD, RTMR0..2 as metadata.json states them (48 bytes each, empty when absent).
  std::vector<uint8_t> mrtd, rtmr0, rtmr1, rtmr2;
  bool tdx_capable = false;         // has firmware
  std::string error;                // why unusable; empty when usable
};

struct PortForward {
  PortProtocol protocol = PortProtocol::kUnspecified;
  std::string host_address = "127.0.0.1";
  uint16_t host_port = 0;
  uint16_t guest_port = 0;
  bool operator==(const PortForward&) const = default;
};

struct NumaNodeInfo {
  int id = 0;
  std::string cpus;                 // sysfs cpulist, e.g. "0-47,96-143"
  uint64_t memory_mib = 0;
  uint64_t free_hugepages = 0;
};

// What the operator asked for (VmSpec proto after validation).
struct VmSpec {
  std::string name;
  std::string image;
  std::string app_compose;          // exact bytes of app-compose.json
  uint32_t vcpus = 1;
  uint64_t memory_mib = 0;
  uint32_t disk_size_gib = 0;       // 0 = no data disk
  std::vector<std::string> gpu_slots;
  bool all_gpus = false;
  std::vector<PortForward> ports;
  TeeMode tee_mode = TeeMode::kUnspecified;
  bool hugepages = false;
  bool pin_numa = false;
  std::optional<int> numa_node;
  std::vector<std::string> kms_urls;
  std::vector<uint8_t> encrypted_env;
  std::vector<uint8_t> app_id;      // pinned, 20 bytes; empty = compose_hash[:20]
  bool operator==(const VmSpec&) const = default;
};

// Everything the domain XML generator needs, resolved (paths, devices, NUMA placement).
struct DomainPlan {
  std::string domain_name;          // "pml-<name>"
  std::string domain_uuid;          // libvirt UUID text
  std::string vm_id;                // VMM's id, written into <metadata>
  std::string owner;                // who created it (caller identity), into <metadata>
  std::string spec_hash;            // hex SHA-256 of the canonical spec, into <metadata>
  TeeMode tee_mode = TeeMode::kNone;
  uint32_t vcpus = 1;
  uint64_t memory_mib = 0;
  // Boot: absolute paths.
  std::string kernel_path, initrd_path, cmdline;
  std::string firmware_path;        // TDX firmware; required for kTdx
  std::string rootfs_path;          // optional, attached read-only
  std::string data_disk_path;       // qcow2, optional
  std::string config_dir;           // app config share (9p, read-only), tag "pml-config"
  std::string console_log_path;     // serial console output file
  std::vector<PortForward> ports;
  std::vector<GpuDevice> gpus;      // GPUs and NVSwitches to pass through, ordered by slot
  bool hugepages = false;
  std::optional<int> numa_node;     // pin memory and vCPUs to this node
  std::string numa_cpus;            // cpulist of that node (vCPU pinning), when numa_node is set
  std::vector<uint8_t> mrconfigid;  // 48 bytes, kTdx only
  std::string qgs_socket_path;      // TDX quote generation service socket, kTdx only
  // libvirt domain type: "kvm" (production) or "qemu" (TCG, for CI hosts without KVM).
  std::string virt_type = "kvm";
  std::string vmm_instance;         // id of the VMM's store, into <metadata>: reconciliation
                                    // touches only domains with its own
};

// What the VMM stores about a VM.
struct VmRecord {
  std::string id;                   // UUID text
  std::string name;
  VmState state = VmState::kUnspecified;
  VmSpec spec;                      // as stored: all_gpus resolved into gpu_slots
  std::string request_id;
  std::string owner;
  absl::Time create_time, update_time;
  std::optional<absl::Time> start_time;
  std::vector<uint8_t> app_id, instance_id, compose_hash, mrconfigid;
  std::string domain_name, domain_uuid;
  std::string failure_reason;
  int64_t create_seq = 0;           // monotonic creation order (paging key)
  std::vector<uint8_t> instance_seed;  // 20 random bytes (.instance_info instance_id_seed)
};

}  // namespace pml::vmm
