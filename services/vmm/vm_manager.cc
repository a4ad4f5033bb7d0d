#include "services/vmm/vm_manager.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "services/vmm/domain_xml.h"
#include "services/vmm/vm_spec.h"

extern char** environ;

namespace pml::vmm {

struct VmManager::Resolved {
  std::vector<GpuDevice> gpus;  // ordered by slot
  std::vector<std::string> slots;
  std::vector<PortKey> ports;
  std::optional<int> numa_node;
  std::string numa_cpus;
};

namespace {

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;

const char* ProtoText(PortProtocol p) { return p == PortProtocol::kUdp ? "udp" : "tcp"; }

VmState FromDomain(DomainRunState s) {
  switch (s) {
    case DomainRunState::kRunning: return VmState::kRunning;
    case DomainRunState::kPaused: return VmState::kPaused;
    case DomainRunState::kShuttingDown: return VmState::kStopping;
    case DomainRunState::kShutoff: return VmState::kStopped;
    case DomainRunState::kCrashed: return VmState::kFailed;
    default: return VmState::kFailed;
  }
}

bool IsActive(VmState s) {
  return s == VmState::kRunning || s == VmState::kPaused || s == VmState::kStarting ||
         s == VmState::kStopping;
}

// Runs argv, waits; kInternal with the exit status otherwise.
absl::Status RunCommand(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return absl::FailedPreconditionError(absl::StrCat("cannot run ", argv[0], ": ", strerror(rc)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return absl::InternalError(absl::StrCat(argv[0], " ", argv.size() > 1 ? argv[1] : "",
                                            " failed (status ", status, ")"));
  return absl::OkStatus();
}

void CrashPoint(const std::string& configured, absl::string_view here) {
  if (configured == here) {
    raise(SIGKILL);
  }
}

absl::StatusCode CodeOf(const absl::Status& s) { return s.code(); }

}  // namespace

absl::StatusOr<PortRange> ParsePortRange(absl::string_view text) {
  std::vector<std::string> parts = absl::StrSplit(text, absl::MaxSplits(':', 1));
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat("port range \"", text.substr(0, 64),
                                                   "\": want PROTO:FIRST-LAST, e.g. tcp:20000-29999"));
  };
  if (parts.size() != 2) return bad();
  PortRange r;
  if (parts[0] == "tcp") r.protocol = PortProtocol::kTcp;
  else if (parts[0] == "udp") r.protocol = PortProtocol::kUdp;
  else return bad();
  std::vector<std::string> ends = absl::StrSplit(parts[1], '-');
  uint32_t a = 0, b = 0;
  if (ends.size() != 2 || !absl::SimpleAtoi(ends[0], &a) || !absl::SimpleAtoi(ends[1], &b) ||
      a < 1 || b > 65535 || a > b)
    return bad();
  r.first = static_cast<uint16_t>(a);
  r.last = static_cast<uint16_t>(b);
  return r;
}

std::string PortRangeText(const PortRange& r) {
  return absl::StrCat(ProtoText(r.protocol), ":", r.first, "-", r.last);
}

VmManager::VmManager(VmmOptions options, std::unique_ptr<Hypervisor> hv,
                     std::unique_ptr<VmStore> store, VmmObserver* observer)
    : options_(std::move(options)),
      hv_(std::move(hv)),
      images_(options_.images_dir),
      observer_(observer),
      store_(std::move(store)) {}

VmManager::~VmManager() { hv_->SetEventHandler(nullptr); }

absl::StatusOr<std::unique_ptr<VmManager>> VmManager::Create(VmmOptions options,
                                                             std::unique_ptr<Hypervisor> hypervisor,
                                                             std::unique_ptr<VmStore> store,
                                                             VmmObserver* observer) {
  if (options.state_dir.empty()) return absl::InvalidArgumentError("state dir: required");
  if (options.allowed_ports.empty()) {
    options.allowed_ports = {{PortProtocol::kTcp, 1024, 65535}, {PortProtocol::kUdp, 1024, 65535}};
  }
  if (options.virt_type != "auto" && options.virt_type != "kvm" && options.virt_type != "qemu")
    return absl::InvalidArgumentError("virt type: want auto, kvm or qemu");
  PML_RETURN_IF_ERROR(core::MakeDirs(options.state_dir + "/vms", 0755));
  std::unique_ptr<VmManager> m(
      new VmManager(std::move(options), std::move(hypervisor), std::move(store), observer));
  PML_ASSIGN_OR_RETURN(m->caps_, m->hv_->Capabilities());
  {
    absl::MutexLock lock(&m->mu_);
    PML_ASSIGN_OR_RETURN(m->instance_id_, m->store_->InstanceId());
  }
  m->virt_type_ = m->options_.virt_type == "auto" ? (m->caps_.kvm_available ? "kvm" : "qemu")
                                                  : m->options_.virt_type;
  PML_RETURN_IF_ERROR(m->Reconcile());
  VmManager* self = m.get();
  m->hv_->SetEventHandler([self](const DomainEvent& e) { self->OnDomainEvent(e); });
  {
    absl::MutexLock lock(&m->mu_);
    m->ReportCountsLocked();
  }
  return m;
}

std::string VmManager::VmDir(absl::string_view id) const {
  return absl::StrCat(options_.state_dir, "/vms/", id);
}

absl::StatusOr<std::vector<NumaNodeInfo>> VmManager::Numa() const {
  return ReadNumaNodes(options_.sysfs_root);
}

// ----------------------------------------------------------------------------------------------
// Reconciliation

absl::Status VmManager::Reconcile() {
  absl::MutexLock lock(&mu_);
  PML_ASSIGN_OR_RETURN(std::vector<VmRecord> records, store_->LoadAll());
  PML_ASSIGN_OR_RETURN(std::vector<DomainSummary> domains, hv_->List());
  // Our domains, by VM id, from their metadata.
  std::map<std::string, DomainSummary> ours;
  for (const auto& d : domains) {
    auto xml = hv_->XmlDesc(d.name);
    if (!xml.ok()) continue;  // vanished meanwhile
    auto meta = ParseDomainMetadata(*xml);
    // Only this VMM's domains: another VMM (or test run) may share the libvirtd.
    if (meta.ok() && meta->vmm_instance == instance_id_) ours[meta->vm_id] = d;
  }
  std::set<std::string> kept;
  for (VmRecord& vm : records) {
    const auto dom = ours.find(vm.id);
    if (vm.state == VmState::kCreating || vm.state == VmState::kRemoving) {
      // Caught mid-create (roll back: the client retries with its request id) or mid-remove
      // (finish it).
      if (dom != ours.end()) {
        hv_->Destroy(dom->second.name).IgnoreError();  // best effort; Undefine reports
        PML_RETURN_IF_ERROR(hv_->Undefine(dom->second.name));
        ours.erase(dom);
      }
      std::error_code ec;
      std::filesystem::remove_all(VmDir(vm.id), ec);
      PML_RETURN_IF_ERROR(store_->Delete(vm.id));
      ++reconcile_.cleaned_up;
      continue;
    }
    if (dom != ours.end()) {
      const VmState now = FromDomain(dom->second.state);
      if (!(vm.state == VmState::kFailed && now == VmState::kStopped) && now != vm.state) {
        vm.state = now;
        vm.update_time = absl::Now();
        if (now == VmState::kRunning && !vm.start_time) vm.start_time = vm.update_time;
        if (now == VmState::kFailed) vm.failure_reason = "libvirt: domain crashed while pml-vmm was down";
        PML_RETURN_IF_ERROR(store_->Update(vm));
      }
      ours.erase(dom);
      ++reconcile_.adopted;
    } else {
      if (vm.state != VmState::kFailed || vm.failure_reason.empty() ||
          !absl::StrContains(vm.failure_reason, "is gone")) {
        vm.state = VmState::kFailed;
        vm.failure_reason = absl::StrCat("libvirt domain ", vm.domain_name,
                                         " is gone (found when pml-vmm started); remove the VM");
        vm.update_time = absl::Now();
        PML_RETURN_IF_ERROR(store_->Update(vm));
      }
      PML_RETURN_IF_ERROR(store_->ReleaseClaims(vm.id));
      ++reconcile_.lost;
    }
    kept.insert(vm.id);
  }
  for (const auto& [vm_id, d] : ours) {  // domains we made that no stored VM owns
    hv_->Destroy(d.name).IgnoreError();  // best effort; Undefine reports
    PML_RETURN_IF_ERROR(hv_->Undefine(d.name));
    ++reconcile_.orphans_removed;
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(options_.state_dir + "/vms", ec)) {
    if (!kept.count(entry.path().filename().string())) {
      std::error_code ec2;
      std::filesystem::remove_all(entry.path(), ec2);
    }
  }
  // Load what survived.
  PML_ASSIGN_OR_RETURN(records, store_->LoadAll());
  PML_ASSIGN_OR_RETURN(Claims claims, store_->LoadClaims());
  for (VmRecord& vm : records) {
    last_seq_ = std::max(last_seq_, vm.create_seq);
    order_[vm.create_seq] = vm.id;
    by_name_[vm.name] = vm.id;
    by_request_[vm.request_id] = vm.id;
    by_domain_[vm.domain_name] = vm.id;
    vms_[vm.id] = std::move(vm);
  }
  for (auto& [slot, id] : claims.gpus) gpu_claims_[slot] = id;
  for (auto& [port, id] : claims.ports) port_claims_[port] = id;
  return absl::OkStatus();
}

// ----------------------------------------------------------------------------------------------
// Bookkeeping

absl::StatusOr<VmRecord*> VmManager::FindLocked(absl::string_view id) {
  auto it = vms_.find(std::string(id));
  if (it == vms_.end()) return absl::NotFoundError(absl::StrCat("no VM with id ", id.substr(0, 64)));
  return &it->second;
}

absl::Status VmManager::AcquireLocked(const std::string& id) {
  if (!busy_.insert(id).second)
    return absl::AbortedError(absl::StrCat("VM ", id, " is busy with another operation; retry"));
  return absl::OkStatus();
}

void VmManager::PublishLocked(VmEventKind kind, const VmRecord& vm, VmState previous,
                              absl::string_view reason) {
  VmChange c;
  c.sequence = ++event_seq_;
  c.time = absl::Now();
  c.kind = kind;
  c.vm = vm;
  c.previous_state = previous;
  c.reason = std::string(reason);
  for (auto& [id, sub] : subscribers_) {
    if (sub.vm_ids.empty() || sub.vm_ids.count(vm.id)) sub.fn(c);
  }
}

absl::Status VmManager::CommitLocked(VmRecord& vm, VmEventKind kind, VmState previous,
                                     absl::string_view reason) {
  vm.update_time = absl::Now();
  PML_RETURN_IF_ERROR(store_->Update(vm));
  vms_[vm.id] = vm;
  PublishLocked(kind, vm, previous, reason);
  ReportCountsLocked();
  return absl::OkStatus();
}

void VmManager::ReportCountsLocked() {
  if (observer_ == nullptr) return;
  std::map<VmState, int> counts;
  for (int s = 1; s <= 8; ++s) counts[static_cast<VmState>(s)] = 0;
  for (const auto& [id, vm] : vms_) ++counts[vm.state];
  observer_->OnCounts(counts);
}

void VmManager::Observe(absl::string_view op, absl::Time start, const absl::Status& status) {
  if (observer_ != nullptr) observer_->OnOperation(op, absl::Now() - start, CodeOf(status));
}

void VmManager::FinishOperation(const std::string& id, absl::string_view reason) {
  std::string domain;
  {
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(id);
    if (it == vms_.end()) {
      busy_.erase(id);
      return;
    }
    domain = it->second.domain_name;
  }
  auto st = hv_->State(domain);
  absl::MutexLock lock(&mu_);
  busy_.erase(id);
  auto it = vms_.find(id);
  if (it == vms_.end()) return;
  VmRecord vm = it->second;
  const VmState prev = vm.state;
  if (!st.ok()) {
    if (absl::IsNotFound(st.status())) {
      vm.state = VmState::kFailed;
      vm.failure_reason = absl::StrCat("libvirt domain ", domain, " is gone");
    } else {
      return;  // libvirt unreachable: keep what we have; events or the next call will sync
    }
  } else {
    const VmState now = FromDomain(*st);
    if (now == prev) return;
    if (prev == VmState::kFailed && now == VmState::kStopped) return;  // keep the failure
    vm.state = now;
    if (now == VmState::kRunning) {
      vm.start_time = absl::Now();
      vm.failure_reason.clear();
    }
  }
  CommitLocked(vm, VmEventKind::kStateChanged, prev, reason).IgnoreError();  // logged by caller
}

void VmManager::OnDomainEvent(const DomainEvent& e) {
  absl::MutexLock lock(&mu_);
  auto id = by_domain_.find(e.name);
  if (id == by_domain_.end()) return;
  if (busy_.count(id->second)) return;  // the running operation settles the state
  auto it = vms_.find(id->second);
  if (it == vms_.end()) return;
  VmRecord vm = it->second;
  const VmState prev = vm.state;
  VmState now = FromDomain(e.state);
  if (now == prev || prev == VmState::kCreating || prev == VmState::kRemoving) return;
  vm.state = now;
  if (now == VmState::kRunning) vm.start_time = absl::Now();
  if (now == VmState::kFailed) vm.failure_reason = e.reason;
  CommitLocked(vm, VmEventKind::kStateChanged, prev, e.reason).IgnoreError();  // store errors: the next event or operation retries
}

// ----------------------------------------------------------------------------------------------
// Resources

absl::StatusOr<VmManager::Resolved> VmManager::ResolveLocked(const VmSpec& spec,
                                                             absl::string_view vm_id,
                                                             const std::vector<GpuDevice>& scanned) {
  Resolved r;
  auto holder = [&](const std::string& id) {
    auto it = vms_.find(id);
    return it == vms_.end() ? absl::StrCat("VM ", id)
                            : absl::StrCat("VM ", it->second.name, " (", id, ")");
  };
  if (spec.all_gpus) {
    for (const auto& g : scanned) {
      if (!g.unusable_reason.empty()) continue;
      auto c = gpu_claims_.find(g.slot);
      if (c != gpu_claims_.end() && c->second != vm_id)
        return absl::ResourceExhaustedError(
            absl::StrCat("spec.gpus.all: GPU ", g.slot, " is held by ", holder(c->second)));
      r.gpus.push_back(g);
    }
    if (r.gpus.empty())
      return absl::FailedPreconditionError("spec.gpus.all: the host has no usable NVIDIA GPU");
  } else {
    for (const auto& slot : spec.gpu_slots) {
      auto g = std::find_if(scanned.begin(), scanned.end(),
                            [&](const GpuDevice& d) { return d.slot == slot; });
      if (g == scanned.end())
        return absl::FailedPreconditionError(
            absl::StrCat("spec.gpus.slots: no NVIDIA GPU or NVSwitch at ", slot));
      if (!g->unusable_reason.empty())
        return absl::FailedPreconditionError(
            absl::StrCat("spec.gpus.slots: ", slot, " cannot be passed through: ", g->unusable_reason));
      auto c = gpu_claims_.find(slot);
      if (c != gpu_claims_.end() && c->second != vm_id)
        return absl::ResourceExhaustedError(
            absl::StrCat("spec.gpus.slots: GPU ", slot, " is held by ", holder(c->second)));
      r.gpus.push_back(*g);
    }
  }
  std::sort(r.gpus.begin(), r.gpus.end(),
            [](const GpuDevice& a, const GpuDevice& b) { return a.slot < b.slot; });
  for (const auto& g : r.gpus) r.slots.push_back(g.slot);

  for (const auto& p : spec.ports) {
    const bool allowed = std::any_of(
        options_.allowed_ports.begin(), options_.allowed_ports.end(), [&](const PortRange& range) {
          return range.protocol == p.protocol && p.host_port >= range.first && p.host_port <= range.last;
        });
    if (!allowed) {
      std::vector<std::string> ranges;
      for (const auto& range : options_.allowed_ports) ranges.push_back(PortRangeText(range));
      return absl::FailedPreconditionError(
          absl::StrCat("spec.ports: host port ", ProtoText(p.protocol), ":", p.host_port,
                       " is outside the allowed ranges ", absl::StrJoin(ranges, ", ")));
    }
    const PortKey key{p.protocol, p.host_port};
    auto c = port_claims_.find(key);
    if (c != port_claims_.end() && c->second != vm_id)
      return absl::ResourceExhaustedError(absl::StrCat(
          "spec.ports: host port ", ProtoText(p.protocol), ":", p.host_port, " is held by ",
          holder(c->second)));
    r.ports.push_back(key);
  }

  if (spec.pin_numa) {
    std::optional<int> node = spec.numa_node;
    if (!node) {
      std::set<int> nodes;
      for (const auto& g : r.gpus)
        if (g.kind == GpuKind::kGpu && g.numa_node >= 0) nodes.insert(g.numa_node);
      if (nodes.size() > 1)
        return absl::FailedPreconditionError(absl::StrCat(
            "spec.pin_numa: the GPUs span NUMA nodes ", absl::StrJoin(nodes, ","),
            "; give spec.numa_node or do not pin"));
      node = nodes.empty() ? 0 : *nodes.begin();
    }
    PML_ASSIGN_OR_RETURN(std::vector<NumaNodeInfo> numa, Numa());
    auto n = std::find_if(numa.begin(), numa.end(), [&](const NumaNodeInfo& i) { return i.id == *node; });
    if (n == numa.end())
      return absl::FailedPreconditionError(absl::StrCat("spec.numa_node: the host has no NUMA node ", *node));
    r.numa_node = node;
    r.numa_cpus = n->cpus;
  }

  // Host limits, counting every other VM.
  uint64_t vcpus = spec.vcpus, mem = spec.memory_mib;
  for (const auto& [id, vm] : vms_) {
    if (id == vm_id) continue;
    vcpus += vm.spec.vcpus;
    mem += vm.spec.memory_mib;
  }
  const uint32_t max_vcpus = options_.max_vcpus != 0 ? options_.max_vcpus
                                                     : static_cast<uint32_t>(sysconf(_SC_NPROCESSORS_ONLN));
  const uint64_t max_mem = options_.max_memory_mib != 0
                               ? options_.max_memory_mib
                               : static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                                     static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) / (1 << 20);
  if (vcpus > max_vcpus)
    return absl::ResourceExhaustedError(absl::StrCat("spec.vcpus: the host allows ", max_vcpus,
                                                     " vCPUs over all VMs; ", vcpus - spec.vcpus,
                                                     " are allocated"));
  if (mem > max_mem)
    return absl::ResourceExhaustedError(absl::StrCat("spec.memory_mib: the host allows ", max_mem,
                                                     " MiB over all VMs; ", mem - spec.memory_mib,
                                                     " are allocated"));
  return r;
}

absl::Status VmManager::WriteVmFiles(const VmRecord& vm, const ImageInfo& image, const Resolved& r,
                                     uint32_t old_disk_gib) {
  const std::string dir = VmDir(vm.id);
  PML_RETURN_IF_ERROR(core::MakeDirs(dir + "/config", 0755));
  size_t gpus = 0, switches = 0;
  for (const auto& g : r.gpus) (g.kind == GpuKind::kNvSwitch ? switches : gpus)++;
  for (const ConfigFile& f :
       GuestConfigFiles(vm.spec, image, vm.app_id, vm.instance_seed, vm.instance_id, gpus, switches)) {
    PML_RETURN_IF_ERROR(core::WriteFileAtomic(absl::StrCat(dir, "/config/", f.name), f.content, 0644));
  }
  if (vm.spec.encrypted_env.empty()) {
    std::error_code ec;
    std::filesystem::remove(dir + "/config/.encrypted-env", ec);
  }
  const std::string disk = dir + "/data.qcow2";
  if (vm.spec.disk_size_gib > 0 && old_disk_gib == 0) {
    PML_RETURN_IF_ERROR(RunCommand({options_.qemu_img, "create", "-q", "-f", "qcow2", disk,
                                    absl::StrCat(vm.spec.disk_size_gib, "G")}));
    chmod(disk.c_str(), 0600);
  } else if (vm.spec.disk_size_gib > old_disk_gib) {
    PML_RETURN_IF_ERROR(RunCommand({options_.qemu_img, "resize", "-q", "-f", "qcow2", disk,
                                    absl::StrCat(vm.spec.disk_size_gib, "G")}));
  }
  const std::string console = dir + "/console.log";
  if (!core::PathExists(console)) {
    std::ofstream touch(console, std::ios::app);
    if (!touch) return absl::InternalError(absl::StrCat("cannot create ", console));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> VmManager::DefineDomain(const VmRecord& vm, const ImageInfo& image,
                                                    const Resolved& r) {
  DomainPlan plan;
  plan.domain_name = vm.domain_name;
  plan.domain_uuid = vm.domain_uuid;
  plan.vm_id = vm.id;
  plan.owner = vm.owner;
  plan.spec_hash = SpecHash(vm.spec);
  plan.tee_mode = vm.spec.tee_mode;
  plan.vcpus = vm.spec.vcpus;
  plan.memory_mib = vm.spec.memory_mib;
  plan.kernel_path = absl::StrCat(image.dir, "/", image.kernel);
  plan.initrd_path = absl::StrCat(image.dir, "/", image.initrd);
  plan.cmdline = image.cmdline;
  if (!image.firmware.empty()) plan.firmware_path = absl::StrCat(image.dir, "/", image.firmware);
  if (!image.rootfs.empty()) plan.rootfs_path = absl::StrCat(image.dir, "/", image.rootfs);
  const std::string dir = VmDir(vm.id);
  if (vm.spec.disk_size_gib > 0) plan.data_disk_path = dir + "/data.qcow2";
  plan.config_dir = dir + "/config";
  plan.console_log_path = dir + "/console.log";
  plan.ports = vm.spec.ports;
  plan.gpus = r.gpus;
  plan.hugepages = vm.spec.hugepages;
  plan.numa_node = r.numa_node;
  plan.numa_cpus = r.numa_cpus;
  if (vm.spec.tee_mode == TeeMode::kTdx) {
    plan.mrconfigid = vm.mrconfigid;
    plan.qgs_socket_path = options_.qgs_socket;
  }
  plan.virt_type = virt_type_;
  plan.vmm_instance = instance_id_;
  PML_ASSIGN_OR_RETURN(std::string xml, BuildDomainXml(plan));
  return hv_->Define(xml);
}

// ----------------------------------------------------------------------------------------------
// Operations

absl::StatusOr<VmRecord> VmManager::CreateVm(const VmSpec& spec_in, absl::string_view request_id,
                                             absl::string_view owner, bool start) {
  const absl::Time t0 = absl::Now();
  absl::Status result;
  absl::Cleanup observe = [&] { Observe("create", t0, result); };
  auto fail = [&](absl::Status s) {
    result = s;
    return s;
  };
  if (request_id.empty() || request_id.size() > 128)
    return fail(absl::InvalidArgumentError("request_id: want 1-128 characters"));
  if (auto st = ValidateSpec(spec_in); !st.ok()) return fail(st);
  VmSpec spec = spec_in;
  // Idempotency first: a retry must not depend on the image or GPUs still being there.
  {
    absl::MutexLock lock(&mu_);
    auto it = by_request_.find(std::string(request_id));
    if (it != by_request_.end()) {
      const VmRecord& vm = vms_[it->second];
      VmSpec stored = vm.spec;
      VmSpec asked = spec;
      if (asked.all_gpus) {  // stored specs have `all` resolved into slots
        asked.all_gpus = false;
        asked.gpu_slots = stored.gpu_slots;
      }
      if (!(stored == asked))
        return fail(absl::AlreadyExistsError(absl::StrCat(
            "request_id ", request_id, " already created VM ", vm.name, " (", vm.id,
            ") with a different spec")));
      if (vm.state == VmState::kCreating)
        return fail(absl::AbortedError(absl::StrCat("VM ", vm.id, " is still being created; retry")));
      return vm;
    }
  }
  auto image = images_.Get(spec.image);
  if (!image.ok()) {
    if (absl::IsNotFound(image.status()))
      return fail(absl::FailedPreconditionError(absl::StrCat("spec.image: unknown image ", spec.image)));
    return fail(core::Annotate(image.status(), "spec.image"));
  }
  if (spec.tee_mode == TeeMode::kTdx) {
    if (!caps_.tdx_supported)
      return fail(absl::FailedPreconditionError(
          absl::StrCat("spec.tee_mode: this host cannot launch TDX VMs: ", caps_.tdx_unsupported_reason)));
    if (!image->tdx_capable)
      return fail(absl::FailedPreconditionError(absl::StrCat(
          "spec.tee_mode: image ", spec.image, " has no TDX firmware (metadata.json \"firmware\")")));
  }
  std::vector<GpuDevice> scanned;
  if (spec.all_gpus || !spec.gpu_slots.empty()) {
    auto s = ScanGpus(options_.sysfs_root);
    if (!s.ok()) return fail(core::Annotate(s.status(), "GPU inventory"));
    scanned = *std::move(s);
  }

  VmRecord vm;
  Resolved res;
  {
    absl::MutexLock lock(&mu_);
    if (by_request_.count(std::string(request_id)))
      return fail(absl::AbortedError("a CreateVm with this request_id is running; retry"));
    if (auto it = by_name_.find(spec.name); it != by_name_.end())
      return fail(absl::AlreadyExistsError(
          absl::StrCat("spec.name: a VM named ", spec.name, " exists (", it->second, ")")));
    vm.id = NewUuid();
    auto r = ResolveLocked(spec, vm.id, scanned);
    if (!r.ok()) return fail(r.status());
    res = *std::move(r);
    if (spec.all_gpus) {
      spec.all_gpus = false;
      spec.gpu_slots = res.slots;
    }
    vm.name = spec.name;
    vm.state = VmState::kCreating;
    vm.request_id = std::string(request_id);
    vm.owner = std::string(owner);
    vm.create_time = vm.update_time = absl::Now();
    const AppIdentity ident = ComputeAppIdentity(spec.app_compose, spec.app_id);
    vm.compose_hash.assign(ident.compose_hash.begin(), ident.compose_hash.end());
    vm.app_id = ident.app_id;
    vm.instance_seed = crypto::RandomBytes(20);
    vm.instance_id = ComputeInstanceId(vm.instance_seed, vm.app_id);
    if (spec.tee_mode == TeeMode::kTdx) vm.mrconfigid.assign(ident.mrconfigid.begin(), ident.mrconfigid.end());
    vm.domain_name = absl::StrCat("pml-", spec.name);
    vm.domain_uuid = NewUuid();
    vm.create_seq = last_seq_ + 1;
    vm.spec = spec;
    if (auto st = store_->Insert(vm, res.slots, res.ports); !st.ok()) return fail(st);
    last_seq_ = vm.create_seq;
    vms_[vm.id] = vm;
    order_[vm.create_seq] = vm.id;
    by_name_[vm.name] = vm.id;
    by_request_[vm.request_id] = vm.id;
    by_domain_[vm.domain_name] = vm.id;
    for (const auto& s : res.slots) gpu_claims_[s] = vm.id;
    for (const auto& p : res.ports) port_claims_[p] = vm.id;
    busy_.insert(vm.id);
    PublishLocked(VmEventKind::kCreated, vm, VmState::kUnspecified,
                  absl::StrCat("CreateVm by ", owner));
    ReportCountsLocked();
  }
  CrashPoint(options_.crash_at, "after-claim");

  bool defined = false;
  absl::Cleanup rollback = [&] {
    if (defined) hv_->Undefine(vm.domain_name).IgnoreError();  // best effort; reconcile retries
    std::error_code ec;
    std::filesystem::remove_all(VmDir(vm.id), ec);
    absl::MutexLock lock(&mu_);
    if (store_->Delete(vm.id).ok()) {
      vms_.erase(vm.id);
      order_.erase(vm.create_seq);
      by_name_.erase(vm.name);
      by_request_.erase(vm.request_id);
      by_domain_.erase(vm.domain_name);
      for (const auto& s : res.slots) gpu_claims_.erase(s);
      for (const auto& p : res.ports) port_claims_.erase(p);
      PublishLocked(VmEventKind::kRemoved, vm, VmState::kCreating,
                    absl::StrCat("CreateVm failed: ", result.message()));
    }  // else the row stays CREATING and the next start cleans it up
    busy_.erase(vm.id);
    ReportCountsLocked();
  };
  if (auto st = WriteVmFiles(vm, *image, res, 0); !st.ok()) return fail(st);
  auto uuid = DefineDomain(vm, *image, res);
  if (!uuid.ok()) {
    absl::Status st = uuid.status();
    if (absl::IsInvalidArgument(st)) st = core::Annotate(st, "libvirt refused the domain XML");
    return fail(st);
  }
  defined = true;
  CrashPoint(options_.crash_at, "after-define");
  {
    absl::MutexLock lock(&mu_);
    VmRecord done = vm;
    done.domain_uuid = *uuid;
    done.state = VmState::kStopped;
    if (auto st = CommitLocked(done, VmEventKind::kStateChanged, VmState::kCreating, "defined");
        !st.ok())
      return fail(st);
    vm = done;
    busy_.erase(vm.id);
  }
  std::move(rollback).Cancel();
  if (start) {
    auto started = StartVm(vm.id, owner);
    if (!started.ok()) return fail(started.status());
    return *started;
  }
  return vm;
}

absl::StatusOr<VmRecord> VmManager::StartVm(absl::string_view id_in, absl::string_view actor) {
  const absl::Time t0 = absl::Now();
  absl::Status result;
  absl::Cleanup observe = [&] { Observe("start", t0, result); };
  const std::string id(id_in);
  std::string domain;
  {
    absl::MutexLock lock(&mu_);
    auto vm = FindLocked(id);
    if (!vm.ok()) return result = vm.status();
    if ((*vm)->state == VmState::kRunning) return **vm;
    if ((*vm)->state != VmState::kStopped && (*vm)->state != VmState::kFailed)
      return result = absl::FailedPreconditionError(absl::StrCat(
                 "VM ", (*vm)->name, " is ", VmStateName((*vm)->state), "; StartVm needs it stopped"));
    if (auto st = AcquireLocked(id); !st.ok()) return result = st;
    VmRecord next = **vm;
    const VmState prev = next.state;
    next.state = VmState::kStarting;
    next.failure_reason.clear();
    if (auto st = CommitLocked(next, VmEventKind::kStateChanged, prev, absl::StrCat("StartVm by ", actor));
        !st.ok()) {
      busy_.erase(id);
      return result = st;
    }
    domain = next.domain_name;
  }
  absl::Status st = hv_->Start(domain);
  if (!st.ok()) {
    if (absl::IsNotFound(st))
      st = absl::FailedPreconditionError(absl::StrCat(
          "libvirt domain ", domain, " is gone; remove the VM and create it again"));
    absl::MutexLock lock(&mu_);
    busy_.erase(id);
    auto vm = FindLocked(id);
    if (vm.ok()) {
      VmRecord next = **vm;
      next.state = VmState::kFailed;
      next.failure_reason = std::string(st.message());
      CommitLocked(next, VmEventKind::kStateChanged, VmState::kStarting, "start failed").IgnoreError();  // the returned error says it
    }
    return result = st;
  }
  FinishOperation(id, "started");
  absl::MutexLock lock(&mu_);
  auto vm = FindLocked(id);
  if (!vm.ok()) return result = vm.status();
  return **vm;
}

absl::StatusOr<VmRecord> VmManager::StopVm(absl::string_view id_in, bool force,
                                           absl::Duration timeout, absl::string_view actor) {
  const absl::Time t0 = absl::Now();
  absl::Status result;
  absl::Cleanup observe = [&] { Observe("stop", t0, result); };
  const std::string id(id_in);
  if (timeout <= absl::ZeroDuration()) timeout = options_.default_stop_timeout;
  std::string domain;
  {
    absl::MutexLock lock(&mu_);
    auto vm = FindLocked(id);
    if (!vm.ok()) return result = vm.status();
    if ((*vm)->state == VmState::kStopped) return **vm;
    if (!IsActive((*vm)->state) && (*vm)->state != VmState::kFailed)
      return result = absl::FailedPreconditionError(
                 absl::StrCat("VM ", (*vm)->name, " is ", VmStateName((*vm)->state)));
    if (auto st = AcquireLocked(id); !st.ok()) return result = st;
    VmRecord next = **vm;
    const VmState prev = next.state;
    next.state = VmState::kStopping;
    if (auto st = CommitLocked(next, VmEventKind::kStateChanged, prev,
                               absl::StrCat(force ? "StopVm (forced) by " : "StopVm by ", actor));
        !st.ok()) {
      busy_.erase(id);
      return result = st;
    }
    domain = next.domain_name;
  }
  std::string reason = force ? "powered off" : "shut down";
  absl::Status st;
  if (force) {
    st = hv_->Destroy(domain);
  } else {
    st = hv_->Shutdown(domain);
    if (st.ok() || absl::IsFailedPrecondition(st)) {
      st = absl::OkStatus();
      const absl::Time deadline = absl::Now() + timeout;
      while (true) {
        auto s = hv_->State(domain);
        if (!s.ok() || *s == DomainRunState::kShutoff) break;
        if (absl::Now() >= deadline) {
          st = hv_->Destroy(domain);
          reason = absl::StrCat("forced off after ", absl::FormatDuration(timeout),
                                " without a guest shutdown");
          break;
        }
        absl::SleepFor(absl::Milliseconds(100));
      }
    }
  }
  FinishOperation(id, reason);
  if (!st.ok() && !absl::IsNotFound(st)) return result = st;
  absl::MutexLock lock(&mu_);
  auto vm = FindLocked(id);
  if (!vm.ok()) return result = vm.status();
  return **vm;
}

absl::Status VmManager::RemoveVm(absl::string_view id_in, bool force, absl::string_view actor) {
  const absl::Time t0 = absl::Now();
  absl::Status result;
  absl::Cleanup observe = [&] { Observe("remove", t0, result); };
  const std::string id(id_in);
  VmRecord vm;
  {
    absl::MutexLock lock(&mu_);
    auto found = FindLocked(id);
    if (!found.ok()) return result = found.status();
    if (IsActive((*found)->state) && !force)
      return result = absl::FailedPreconditionError(
                 absl::StrCat("VM ", (*found)->name, " is ", VmStateName((*found)->state),
                              "; stop it first or remove with force"));
    if (auto st = AcquireLocked(id); !st.ok()) return result = st;
    vm = **found;
    const VmState prev = vm.state;
    vm.state = VmState::kRemoving;
    if (auto st = CommitLocked(vm, VmEventKind::kStateChanged, prev, absl::StrCat("RemoveVm by ", actor));
        !st.ok()) {
      busy_.erase(id);
      return result = st;
    }
  }
  absl::Status st = hv_->Destroy(vm.domain_name);
  if (st.ok() || absl::IsNotFound(st)) st = hv_->Undefine(vm.domain_name);
  if (!st.ok()) {
    absl::MutexLock lock(&mu_);
    busy_.erase(id);
    VmRecord failed = vm;
    failed.state = VmState::kFailed;
    failed.failure_reason = absl::StrCat("RemoveVm failed: ", st.message());
    CommitLocked(failed, VmEventKind::kStateChanged, VmState::kRemoving, "remove failed").IgnoreError();  // returned below
    return result = st;
  }
  std::error_code ec;
  std::filesystem::remove_all(VmDir(id), ec);
  absl::MutexLock lock(&mu_);
  busy_.erase(id);
  if (auto s = store_->Delete(id); !s.ok()) return result = s;  // row stays REMOVING; restart finishes
  for (auto it = gpu_claims_.begin(); it != gpu_claims_.end();) it = it->second == id ? gpu_claims_.erase(it) : std::next(it);
  for (auto it = port_claims_.begin(); it != port_claims_.end();) it = it->second == id ? port_claims_.erase(it) : std::next(it);
  order_.erase(vm.create_seq);
  by_name_.erase(vm.name);
  by_request_.erase(vm.request_id);
  by_domain_.erase(vm.domain_name);
  vms_.erase(id);
  PublishLocked(VmEventKind::kRemoved, vm, VmState::kRemoving, absl::StrCat("RemoveVm by ", actor));
  ReportCountsLocked();
  return absl::OkStatus();
}

absl::StatusOr<VmRecord> VmManager::GetVm(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  PML_ASSIGN_OR_RETURN(VmRecord * vm, FindLocked(id));
  return *vm;
}

absl::StatusOr<ListResult> VmManager::ListVms(const ListQuery& q) {
  if (q.page_size < 0) return absl::InvalidArgumentError("page_size: must not be negative");
  const int size = q.page_size == 0 ? kDefaultPageSize : std::min(q.page_size, kMaxPageSize);
  int64_t after = 0;
  if (!q.page_token.empty()) {
    if (!absl::StartsWith(q.page_token, "s") || !absl::SimpleAtoi(q.page_token.substr(1), &after) ||
        after < 0)
      return absl::InvalidArgumentError("page_token: not a token this server issued");
  }
  const std::set<VmState> states(q.states.begin(), q.states.end());
  ListResult out;
  absl::MutexLock lock(&mu_);
  for (const auto& [seq, id] : order_) {
    const VmRecord& vm = vms_.at(id);
    if (!states.empty() && !states.count(vm.state)) continue;
    if (!q.name_filter.empty() && !absl::StrContains(vm.name, q.name_filter)) continue;
    ++out.total_size;
    if (seq <= after) continue;
    if (static_cast<int>(out.vms.size()) < size) {
      out.vms.push_back(vm);
    } else if (out.next_page_token.empty()) {
      out.next_page_token = absl::StrCat("s", out.vms.back().create_seq);
    }
  }
  return out;
}

absl::StatusOr<VmRecord> VmManager::UpdateVm(absl::string_view id_in, const VmSpec& values,
                                             const std::vector<std::string>& mask,
                                             absl::string_view actor) {
  const absl::Time t0 = absl::Now();
  absl::Status result;
  absl::Cleanup observe = [&] { Observe("update", t0, result); };
  const std::string id(id_in);
  if (mask.empty()) return result = absl::InvalidArgumentError("update_mask: empty");
  VmRecord vm;
  {
    absl::MutexLock lock(&mu_);
    auto found = FindLocked(id);
    if (!found.ok()) return result = found.status();
    vm = **found;
  }
  VmSpec spec = vm.spec;
  const uint32_t old_disk = spec.disk_size_gib;
  for (const std::string& path : mask) {
    if (path == "app_compose") spec.app_compose = values.app_compose;
    else if (path == "encrypted_env") spec.encrypted_env = values.encrypted_env;
    else if (path == "ports") spec.ports = values.ports;
    else if (path == "vcpus") spec.vcpus = values.vcpus;
    else if (path == "memory_mib") spec.memory_mib = values.memory_mib;
    else if (path == "disk_size_gib") {
      if (values.disk_size_gib < old_disk)
        return result = absl::InvalidArgumentError(absl::StrCat(
                   "spec.disk_size_gib: disks only grow (", old_disk, " GiB now)"));
      spec.disk_size_gib = values.disk_size_gib;
    } else if (path == "gpus") {
      spec.gpu_slots = values.gpu_slots;
      spec.all_gpus = values.all_gpus;
    } else if (path == "kms_urls") spec.kms_urls = values.kms_urls;
    else if (path == "hugepages") spec.hugepages = values.hugepages;
    else if (path == "pin_numa") spec.pin_numa = values.pin_numa;
    else if (path == "numa_node") spec.numa_node = values.numa_node;
    else if (path == "name" || path == "image" || path == "tee_mode" || path == "app_id")
      return result = absl::InvalidArgumentError(absl::StrCat("update_mask: ", path, " cannot change"));
    else
      return result = absl::InvalidArgumentError(
                 absl::StrCat("update_mask: unknown path \"", path.substr(0, 64), "\""));
  }
  if (auto st = ValidateSpec(spec); !st.ok()) return result = st;
  auto image = images_.Get(spec.image);
  if (!image.ok()) return result = core::Annotate(image.status(), "spec.image");
  std::vector<GpuDevice> scanned;
  if (spec.all_gpus || !spec.gpu_slots.empty()) {
    auto s = ScanGpus(options_.sysfs_root);
    if (!s.ok()) return result = s.status();
    scanned = *std::move(s);
  }
  Resolved res;
  {
    absl::MutexLock lock(&mu_);
    auto found = FindLocked(id);
    if (!found.ok()) return result = found.status();
    if ((*found)->state != VmState::kStopped)
      return result = absl::FailedPreconditionError(absl::StrCat(
                 "VM ", (*found)->name, " is ", VmStateName((*found)->state), "; UpdateVm needs it stopped"));
    if (auto st = AcquireLocked(id); !st.ok()) return result = st;
    auto r = ResolveLocked(spec, id, scanned);
    if (!r.ok()) {
      busy_.erase(id);
      return result = r.status();
    }
    res = *std::move(r);
    if (spec.all_gpus) {
      spec.all_gpus = false;
      spec.gpu_slots = res.slots;
    }
  }
  absl::Cleanup release = [&] {
    absl::MutexLock lock(&mu_);
    busy_.erase(id);
  };
  VmRecord next = vm;
  next.spec = spec;
  const AppIdentity ident = ComputeAppIdentity(spec.app_compose, vm.app_id);  // app id stays
  next.compose_hash.assign(ident.compose_hash.begin(), ident.compose_hash.end());
  if (spec.tee_mode == TeeMode::kTdx) next.mrconfigid.assign(ident.mrconfigid.begin(), ident.mrconfigid.end());
  if (auto st = WriteVmFiles(next, *image, res, old_disk); !st.ok()) return result = st;
  auto uuid = DefineDomain(next, *image, res);
  if (!uuid.ok()) {
    // Put the old definition back so the VM stays as it was.
    auto old_res = [&]() -> absl::StatusOr<Resolved> {
      absl::MutexLock lock(&mu_);
      return ResolveLocked(vm.spec, id, scanned);
    }();
    if (old_res.ok()) {
      WriteVmFiles(vm, *image, *old_res, vm.spec.disk_size_gib).IgnoreError();  // best effort restore
      DefineDomain(vm, *image, *old_res).IgnoreError();                          // best effort restore
    }
    return result = uuid.status();
  }
  absl::MutexLock lock(&mu_);
  next.update_time = absl::Now();
  if (auto st = store_->UpdateWithClaims(next, res.slots, res.ports); !st.ok()) return result = st;
  for (auto it = gpu_claims_.begin(); it != gpu_claims_.end();) it = it->second == id ? gpu_claims_.erase(it) : std::next(it);
  for (auto it = port_claims_.begin(); it != port_claims_.end();) it = it->second == id ? port_claims_.erase(it) : std::next(it);
  for (const auto& s : res.slots) gpu_claims_[s] = id;
  for (const auto& p : res.ports) port_claims_[p] = id;
  vms_[id] = next;
  PublishLocked(VmEventKind::kUpdated, next, next.state, absl::StrCat("UpdateVm by ", actor));
  return next;
}

absl::StatusOr<std::vector<GpuView>> VmManager::ListGpus() {
  PML_ASSIGN_OR_RETURN(std::vector<GpuDevice> devices, ScanGpus(options_.sysfs_root));
  std::vector<GpuView> out;
  absl::MutexLock lock(&mu_);
  for (auto& d : devices) {
    GpuView v;
    auto c = gpu_claims_.find(d.slot);
    if (c != gpu_claims_.end()) {
      v.vm_id = c->second;
      auto vm = vms_.find(c->second);
      if (vm != vms_.end()) v.vm_name = vm->second.name;
    }
    v.device = std::move(d);
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<ImageInfo> VmManager::ListImages() { return images_.List(); }

absl::StatusOr<HostInfo> VmManager::GetHostInfo() {
  HostInfo h;
  PML_ASSIGN_OR_RETURN(h.caps, hv_->Capabilities());
  h.host_cpus = static_cast<uint32_t>(sysconf(_SC_NPROCESSORS_ONLN));
  h.host_memory_mib = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                      static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) / (1 << 20);
  auto numa = Numa();
  if (numa.ok()) h.numa_nodes = *std::move(numa);
  auto meminfo = core::ReadFile("/proc/meminfo", 1 << 16);
  if (meminfo.ok()) {
    for (absl::string_view line : absl::StrSplit(*meminfo, '\n')) {
      if (absl::ConsumePrefix(&line, "Hugepagesize:")) {
        line = absl::StripAsciiWhitespace(line);
        absl::ConsumeSuffix(&line, "kB");
        uint64_t kib = 0;
        if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kib)) h.hugepage_size_kib = kib;
      }
    }
  }
  h.max_vcpus = options_.max_vcpus != 0 ? options_.max_vcpus : h.host_cpus;
  h.max_memory_mib = options_.max_memory_mib != 0 ? options_.max_memory_mib : h.host_memory_mib;
  h.allowed_ports = options_.allowed_ports;
  h.virt_type = virt_type_;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, vm] : vms_) {
    h.allocated_vcpus += vm.spec.vcpus;
    h.allocated_memory_mib += vm.spec.memory_mib;
  }
  return h;
}

absl::StatusOr<std::string> VmManager::ConsoleLogPath(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  PML_ASSIGN_OR_RETURN(VmRecord * vm, FindLocked(id));
  return VmDir(vm->id) + "/console.log";
}

uint64_t VmManager::Subscribe(std::vector<std::string> vm_ids, bool send_initial,
                              std::function<void(const VmChange&)> fn) {
  absl::MutexLock lock(&mu_);
  const uint64_t sub = next_subscription_++;
  Subscriber s{std::set<std::string>(vm_ids.begin(), vm_ids.end()), std::move(fn)};
  if (send_initial) {
    for (const auto& [seq, id] : order_) {
      if (!s.vm_ids.empty() && !s.vm_ids.count(id)) continue;
      VmChange c;
      c.sequence = event_seq_;
      c.time = absl::Now();
      c.kind = VmEventKind::kInitial;
      c.vm = vms_.at(id);
      s.fn(c);
    }
  }
  subscribers_[sub] = std::move(s);
  return sub;
}

void VmManager::Unsubscribe(uint64_t subscription) {
  absl::MutexLock lock(&mu_);
  subscribers_.erase(subscription);
}

}  // namespace pml::vmm
