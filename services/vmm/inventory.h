#pragma once
// What the host offers pml-vmm (DESIGN.md §6): NVIDIA GPUs and NVSwitches found in sysfs, the
// host's NUMA nodes, and the guest images under the images directory. Everything here reads the
// filesystem and nothing else (no libvirt, no gRPC); the sysfs root is a parameter so tests run
// on a fake tree (services/vmm/testing/fake_sysfs.h).
//
// Every sysfs and image file is treated as hostile: reads are bounded, parsing is strict, and a
// malformed entry is skipped or reported on that entry, never a crash or an exception.

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "services/vmm/vm_model.h"

namespace pml::vmm {

// ---------------------------------------------------------------------------------------------
// GPUs and NVSwitches.

// Cap on each sysfs attribute read (vendor, class, numa_node, ...). Real ones are a few bytes.
inline constexpr size_t kMaxSysfsAttributeBytes = 4096;

// Lists `<sysfs_root>/bus/pci/devices/*` ("/sys" in production) and returns the NVIDIA (vendor
// 0x10de) GPUs and NVSwitches, sorted by PCI address (domain, bus, device, function).
//
// Per entry (a directory or a symlink to one, named by its PCI address "0000:18:00.0"):
//  - `vendor`, `device` ("0x%04x") and `class` ("0x%06x") must parse exactly, else the entry is
//    skipped. Classes 0x0302xx (3D controller) and 0x0300xx (VGA) are GpuKind::kGpu, 0x0680xx
//    (bridge, other) is GpuKind::kNvSwitch; any other class (e.g. the 0x0403 audio function)
//    and any other vendor are skipped. Entries whose name is not a PCI address are skipped.
//  - name and arch come from a device id table (H100 SXM/PCIe/NVL, H200, H200 NVL, GH200, B200,
//    NVSwitch LS10); an unknown id gives name "unknown" and GpuArchitecture::kUnspecified.
//  - numa_node: the `numa_node` file, -1 when absent or malformed (not an integer in
//    [-1, 1023]).
//  - iommu_group: the basename of the `iommu_group` symlink, -1 when absent or malformed.
//  - driver: the basename of the `driver` symlink, "" when unbound; vfio_bound = "vfio-pci".
//  - unusable_reason: "" when the device can be passed through; else the failed checks joined
//    by "; ": "bound to <driver>, not vfio-pci", "not bound to any driver (needs vfio-pci)",
//    "driver link is malformed", "no IOMMU group (IOMMU off?)", "IOMMU group link is
//    malformed", and "IOMMU group <n> also holds <slot> bound to <driver> (needs vfio-pci)" when
//    another member of the group (per `<root>/kernel/iommu_groups/<n>/devices/`) is bound to a
//    driver that vfio does not allow beside it. As the kernel's vfio group viability check does, a
//    member is fine when it is unbound, bound to vfio-pci, pci-stub or pcieport, or is a PCI-to-PCI
//    bridge (class 0x0604).
//
// Errors: kInvalidArgument when `sysfs_root` is empty; kNotFound when `<root>/bus/pci/devices`
// does not exist; kFailedPrecondition when it exists but cannot be listed (not a directory,
// unreadable). A malformed device is never an error for the whole scan.
// Thread-safe (no shared state); reads the filesystem.
absl::StatusOr<std::vector<GpuDevice>> ScanGpus(absl::string_view sysfs_root);

// ---------------------------------------------------------------------------------------------
// NUMA.

// Reads `<sysfs_root>/devices/system/node/node<N>/` for every N, sorted by N:
//  - cpus: `cpulist` trimmed ("0-47,96-143"); "" when absent, malformed (anything but
//    comma-separated decimal CPUs and ascending ranges) or a CPU-less node.
//  - memory_mib: "Node <N> MemTotal: <kB> kB" in `meminfo`, in MiB (rounded down); 0 when
//    absent or malformed.
//  - free_hugepages: free 2 MiB hugepages,
//    `hugepages/hugepages-2048kB/free_hugepages`; 0 when absent or malformed. Other page sizes
//    (1 GiB) are not counted: libvirt's `<hugepages/>` uses the default size, 2 MiB on x86 hosts
//    (see DefaultHugepageSizeKib).
// Returns an empty vector when the node directory does not exist (a non-NUMA kernel).
// Errors: kInvalidArgument when `sysfs_root` is empty; kFailedPrecondition when the node
// directory exists but cannot be listed. Thread-safe.
absl::StatusOr<std::vector<NumaNodeInfo>> ReadNumaNodes(absl::string_view sysfs_root);

// The kernel's default hugepage size in KiB, from the "Hugepagesize:" line of
// `proc_meminfo_path` (/proc/meminfo in production). kNotFound when the file or the line is
// missing (a kernel without hugetlbfs), kInvalidArgument when the line is malformed.
// Thread-safe.
absl::StatusOr<uint64_t> DefaultHugepageSizeKib(
    absl::string_view proc_meminfo_path = "/proc/meminfo");

// ---------------------------------------------------------------------------------------------
// Images.
//
// An image is a directory `<images_dir>/<name>` (name: [A-Za-z0-9._-]{1,63}, not "." or "..",
// no "..") holding the files below and `metadata.json`, which the image builder writes:
//
//   {
//     "version": "0.1.0",                        // required string, 1..64 printable characters
//     "variant": "production" | "development",   // required
//     "kernel": "vmlinuz",                        // required file name in the directory
//     "initrd": "initramfs.cpio.gz",              // required file name in the directory
//     "firmware": "OVMF.fd",                      // optional (TDX firmware); tdx_capable = present
//     "rootfs": "rootfs.img",                     // optional read-only root disk
//     "cmdline": "console=ttyS0 ...",             // required string (may be empty), kernel
//                                                 // command line, <= 4096 bytes, no control chars
//     "files": {                                  // required; every file named above, may list
//       "vmlinuz": {"sha256": "<64 hex>", "size": 123},   // more (at most 64 entries)
//       ...
//     },
//     "os_image_hash": "<64 hex>",                // required, = OsImageHash(files)
//     "measurements": {                           // optional; each key optional
//       "mrtd": "<96 hex>", "rtmr0": "<96 hex>", "rtmr1": "<96 hex>", "rtmr2": "<96 hex>"
//     }
//   }
//
// Hex is lowercase. File names follow the image name rule (so no '/' and no ".."). "firmware"
// and "rootfs" may be null (same as absent). Unknown keys are ignored, so a newer builder can add
// fields. Each listed file must be a regular file (not a symlink) in the directory whose size
// and SHA-256 match. metadata.json is at most kMaxImageMetadataBytes.

inline constexpr size_t kMaxImageMetadataBytes = 1 << 20;
inline constexpr size_t kMaxImageFiles = 64;

// Parses metadata.json's text (structure, names, hex, sizes: everything that needs no other
// file); the files' digests and os_image_hash are checked by ImageCatalog. kInvalidArgument
// naming the field. Pure and thread-safe (the fuzz target's entry point).
absl::StatusOr<ImageInfo> ParseImageMetadata(absl::string_view text);

// True when `name` is usable as an image directory or image file name: 1..63 characters of
// [A-Za-z0-9._-], not "." and containing no "..". Pure.
bool IsValidImageName(absl::string_view name);

// The text `sha256sum` prints for `files`, sorted by name (bytewise): per file
// "<64 lowercase hex>  <name>\n" (two spaces), concatenated. The caller's order does not matter.
// Pure and thread-safe.
std::string Sha256SumText(const std::vector<ImageFileInfo>& files);

// SHA-256 of Sha256SumText(files): the image's identity (dstack hashes its sha256sum.txt the
// same way). The image builder writes it as os_image_hash. Pure and thread-safe.
std::array<uint8_t, 32> OsImageHash(const std::vector<ImageFileInfo>& files);

// The images under one directory. Each call re-reads metadata.json and checks every listed
// file's size and digest; digests are cached per file path, keyed by the file's identity
// (device, inode, size, mtime_ns, ctime_ns), so an unchanged kernel is hashed once and an edited
// or replaced one is hashed again.
//
// Thread-safe: List and Get may run concurrently from any thread (the cache is under a mutex;
// hashing runs outside it).
class ImageCatalog {
 public:
  // `images_dir` need not exist yet (List is then empty). A relative path is made absolute
  // against the current directory now.
  explicit ImageCatalog(std::string images_dir);
  ImageCatalog(const ImageCatalog&) = delete;
  ImageCatalog& operator=(const ImageCatalog&) = delete;

  // Every subdirectory of the images directory, sorted by name, as an ImageInfo. A usable image
  // has error ""; otherwise `error` names the failed check (invalid name, missing or invalid
  // metadata.json and the offending field, missing file, size or sha256 mismatch, os_image_hash
  // mismatch) and the fields parsed so far are filled. Empty when the directory is missing or
  // unreadable. Also drops cached digests of files that no longer belong to any image.
  std::vector<ImageInfo> List();

  // The image `name`, fully checked as in List. kInvalidArgument when `name` is not a valid
  // image name; kNotFound when there is no such directory; kFailedPrecondition, with the
  // image's error, when it exists but is unusable.
  absl::StatusOr<ImageInfo> Get(absl::string_view name);

  const std::string& ImagesDir() const { return images_dir_; }

 private:
  struct FileKey {
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t mtime_ns = 0, ctime_ns = 0;
    bool operator==(const FileKey&) const = default;
  };
  struct CachedDigest {
    FileKey key;
    std::array<uint8_t, 32> sha256{};
  };

  // Loads and checks one image directory; problems go into ImageInfo::error. Adds every file
  // path it looked at to `seen` when not null.
  ImageInfo Load(const std::string& name, std::set<std::string>* seen);
  // Checks one listed file (regular, size, digest); "" when it matches, else the reason.
  std::string CheckFile(const std::string& path, const ImageFileInfo& want);

  const std::string images_dir_;
  absl::Mutex mu_;
  std::map<std::string, CachedDigest> digests_ ABSL_GUARDED_BY(mu_);  // by absolute file path
};

}  // namespace pml::vmm
