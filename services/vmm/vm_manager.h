#pragma once
// VmManager: the VMM's core. It turns a VmSpec into a libvirt domain (claims GPUs and host ports,
// writes the app config share, creates the data disk, defines the domain), drives the lifecycle,
// keeps the VMs in memory (authoritative for reads) and in the VmStore (written before libvirt is
// touched), follows libvirt's lifecycle events, and reconciles with libvirt when it starts: a
// crash at any point leaves no orphan domain and no claim held by nothing.
//
// gRPC-free (vmm_service.cc translates). Thread-safe: every method may be called concurrently. A
// VM runs one operation at a time; a second one on the same VM gets kAborted ("busy").
//
// Errors (STYLE.md §3): kInvalidArgument names the spec field; kFailedPrecondition gives the
// reason (unknown image, GPU not bound to vfio-pci, TDX not offered, VM in the wrong state);
// kResourceExhausted names the VM holding a GPU or port, or the host limit; kAlreadyExists for a
// taken name or a request id reused with another spec; kNotFound for an unknown VM id;
// kUnavailable when libvirt is unreachable.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/vmm/hypervisor.h"
#include "services/vmm/inventory.h"
#include "services/vmm/vm_model.h"
#include "services/vmm/vm_store.h"

namespace pml::vmm {

// Host ports VMs may forward: "tcp:20000-29999" (protocol tcp or udp; first ≤ last).
struct PortRange {
  PortProtocol protocol = PortProtocol::kTcp;
  uint16_t first = 1;
  uint16_t last = 65535;
};
absl::StatusOr<PortRange> ParsePortRange(absl::string_view text);
std::string PortRangeText(const PortRange& range);

struct VmmOptions {
  std::string state_dir;                    // holds vms/<id>/ (config share, disk, console log)
  std::string images_dir;                   // one directory per image (inventory.h)
  std::string sysfs_root = "/sys";
  std::string virt_type = "auto";           // "kvm", "qemu" (TCG) or "auto" (kvm when offered)
  uint32_t max_vcpus = 0;                   // summed over defined VMs; 0 = the host's CPUs
  uint64_t max_memory_mib = 0;              // summed over defined VMs; 0 = the host's memory
  std::vector<PortRange> allowed_ports;     // empty = tcp and udp 1024-65535
  std::string qgs_socket = "/var/run/tdx-qgs/qgs.socket";
  std::string qemu_img = "qemu-img";
  absl::Duration default_stop_timeout = absl::Seconds(30);
  // Testing only: "after-claim" or "after-define" makes CreateVm kill the process (SIGKILL) at
  // that point, so tests can prove that restart reconciles.
  std::string crash_at;
};

enum class VmEventKind { kInitial = 1, kCreated = 2, kStateChanged = 3, kUpdated = 4, kRemoved = 5 };

struct VmChange {
  uint64_t sequence = 0;
  absl::Time time;
  VmEventKind kind = VmEventKind::kCreated;
  VmRecord vm;
  VmState previous_state = VmState::kUnspecified;
  std::string reason;
};

struct GpuView {
  GpuDevice device;
  std::string vm_id;    // holder, empty when free
  std::string vm_name;
};

struct HostInfo {
  HostCapabilities caps;
  uint32_t host_cpus = 0;
  uint64_t host_memory_mib = 0;
  std::vector<NumaNodeInfo> numa_nodes;
  uint64_t hugepage_size_kib = 0;
  uint32_t max_vcpus = 0;
  uint64_t max_memory_mib = 0;
  uint32_t allocated_vcpus = 0;
  uint64_t allocated_memory_mib = 0;
  std::vector<PortRange> allowed_ports;
  std::string virt_type;                    // what new domains use
};

struct ListQuery {
  int page_size = 0;                        // 0 = 100; capped at 1000
  std::string page_token;
  std::vector<VmState> states;              // empty = all
  std::string name_filter;                  // substring
};
struct ListResult {
  std::vector<VmRecord> vms;
  std::string next_page_token;
  int total_size = 0;
};

// What start-up reconciliation did.
struct ReconcileReport {
  int adopted = 0;          // stored VMs whose domain exists (state synced from libvirt)
  int cleaned_up = 0;       // VMs caught mid-create or mid-remove, rolled back/finished
  int lost = 0;             // stored VMs whose domain vanished: FAILED, claims freed
  int orphans_removed = 0;  // domains carrying our metadata with no stored VM
};

// Receives operation outcomes and counts (metrics live in the service).
class VmmObserver {
 public:
  virtual ~VmmObserver() = default;
  virtual void OnOperation(absl::string_view op, absl::Duration took, absl::StatusCode code) = 0;
  virtual void OnCounts(const std::map<VmState, int>& vms_by_state) = 0;
};

class VmManager {
 public:
  // Loads the store, reconciles with libvirt, subscribes to its events.
  static absl::StatusOr<std::unique_ptr<VmManager>> Create(VmmOptions options,
                                                           std::unique_ptr<Hypervisor> hypervisor,
                                                           std::unique_ptr<VmStore> store,
                                                           VmmObserver* observer = nullptr);
  ~VmManager();

  const ReconcileReport& reconcile_report() const { return reconcile_; }

  // Creates (defines) a VM; idempotent per request_id (same spec → the VM made first). `owner`
  // goes into the domain metadata. With `start`, starts it too.
  absl::StatusOr<VmRecord> CreateVm(const VmSpec& spec, absl::string_view request_id,
                                    absl::string_view owner, bool start);
  absl::StatusOr<VmRecord> StartVm(absl::string_view id, absl::string_view actor);
  // Graceful (ACPI, then forced after `timeout`; zero = the default) or forced.
  absl::StatusOr<VmRecord> StopVm(absl::string_view id, bool force, absl::Duration timeout,
                                  absl::string_view actor);
  absl::Status RemoveVm(absl::string_view id, bool force, absl::string_view actor);
  absl::StatusOr<VmRecord> GetVm(absl::string_view id);
  absl::StatusOr<ListResult> ListVms(const ListQuery& query);
  // Applies the fields named in `mask` (VmSpec proto field names) from `values`; VM stopped.
  absl::StatusOr<VmRecord> UpdateVm(absl::string_view id, const VmSpec& values,
                                    const std::vector<std::string>& mask, absl::string_view actor);

  absl::StatusOr<std::vector<GpuView>> ListGpus();
  std::vector<ImageInfo> ListImages();
  absl::StatusOr<HostInfo> GetHostInfo();

  // The VM's serial console file (may not exist yet).
  absl::StatusOr<std::string> ConsoleLogPath(absl::string_view id);

  // Change feed. `fn` runs under the manager's lock, in sequence order: it must only enqueue. With
  // send_initial, one kInitial change per VM (filtered by `vm_ids`, empty = all) is delivered
  // first. Returns a subscription id for Unsubscribe.
  uint64_t Subscribe(std::vector<std::string> vm_ids, bool send_initial,
                     std::function<void(const VmChange&)> fn);
  void Unsubscribe(uint64_t subscription);

 private:
  VmManager(VmmOptions options, std::unique_ptr<Hypervisor> hv, std::unique_ptr<VmStore> store,
            VmmObserver* observer);
  absl::Status Reconcile();
  void OnDomainEvent(const DomainEvent& event);

  struct Subscriber {
    std::set<std::string> vm_ids;
    std::function<void(const VmChange&)> fn;
  };

  // Under mu_: store write + memory + publish.
  absl::Status CommitLocked(VmRecord& vm, VmEventKind kind, VmState previous,
                            absl::string_view reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked(VmEventKind kind, const VmRecord& vm, VmState previous,
                     absl::string_view reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<VmRecord*> FindLocked(absl::string_view id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the VM busy; kAborted when it already is.
  absl::Status AcquireLocked(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets the VM's state from libvirt's and releases it.
  void FinishOperation(const std::string& id, absl::string_view reason);
  void ReportCountsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Observe(absl::string_view op, absl::Time start, const absl::Status& status);

  struct Resolved;  // GPUs, ports and NUMA placement for a spec
  absl::StatusOr<Resolved> ResolveLocked(const VmSpec& spec, absl::string_view vm_id,
                                         const std::vector<GpuDevice>& scanned)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteVmFiles(const VmRecord& vm, const ImageInfo& image, const Resolved& r,
                            uint32_t old_disk_gib);
  absl::StatusOr<std::string> DefineDomain(const VmRecord& vm, const ImageInfo& image,
                                           const Resolved& r);
  std::string VmDir(absl::string_view id) const;
  absl::StatusOr<std::vector<NumaNodeInfo>> Numa() const;

  const VmmOptions options_;
  const std::unique_ptr<Hypervisor> hv_;
  ImageCatalog images_;
  VmmObserver* const observer_;
  std::string virt_type_;
  std::string instance_id_;  // the store's; in every domain's metadata
  HostCapabilities caps_;
  ReconcileReport reconcile_;

  absl::Mutex mu_;
  std::unique_ptr<VmStore> store_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, VmRecord> vms_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, std::string> order_ ABSL_GUARDED_BY(mu_);            // create_seq -> id
  absl::flat_hash_map<std::string, std::string> by_name_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> by_request_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> by_domain_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> gpu_claims_ ABSL_GUARDED_BY(mu_);   // slot -> vm id
  std::map<PortKey, std::string> port_claims_ ABSL_GUARDED_BY(mu_);      // port -> vm id
  std::set<std::string> busy_ ABSL_GUARDED_BY(mu_);
  int64_t last_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t event_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_subscription_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Subscriber> subscribers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pml::vmm
