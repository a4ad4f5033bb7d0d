// pml-bench-vmm: the VMM core's CreateVm(start=true) and ListVms latency (issue 8,
// "Performance"). A report, not a test: it exits 0 whatever the verdicts, 2 when it cannot run.
// See bench/README.md.
//
// Part 1, always: libvirt's test driver (test:///default, in-process; a keeper connection holds
// its state for the whole part). VmManager as vm_manager_test.cc builds it: a fake image
// (testing::WriteFakeImage), a fake HGX H100 sysfs (testing::WriteHgxH100Host), a SQLite store
// in a temp dir, qemu_img "true", virt type "qemu", host limits out of the way. For each N of
// --sizes, VMs are created and started (one CreateVm(start=true) each, timed) until N exist;
// after each one, the peer in the same driver at the same population: BuildDomainXml of the same
// plan + virDomainDefineXMLFlags(VALIDATE) + virDomainCreate (then destroyed and undefined,
// untimed). Then ListVms of all N (page_size 1000) converted with VmToProto into a
// v1::ListVmsResponse and serialized, as VmmService::ListVms does, --list-reps times. Then the
// VMM's own steps one by one (validation, image look-up, store writes, the config share, the
// XML, libvirt's define with and without schema validation).
//
// Part 2, only with --real-uri and --real-image-dir: a real libvirtd with QEMU (TCG, domain
// type 'qemu'). For --rounds rounds, in rotating order: VmManager CreateVm(start=true) of a
// mode-none VM (1 vCPU, 256 MiB, no disk, one port forward) until it returns RUNNING (then
// RemoveVm(force)); the same domain XML (BuildDomainXml of the equivalent plan, another name
// and UUID, its <metadata> dropped so that no other pml-vmm takes it for an orphan) through
// virDomainCreateXML, what `virsh create` calls (then destroyed); the same
// through virDomainDefineXMLFlags(VALIDATE) + virDomainCreate, the libvirt calls the VMM makes
// (then destroyed and undefined); and a `virsh create FILE` subprocess. Targets: VMM overhead
// (VMM p50 - virDomainCreateXML p50) / virDomainCreateXML p50 < 10%; ListVms of 1,000 VMs
// < 50 ms. Every domain the bench makes is removed, also on failure.
//
//   pml-bench-vmm [--sizes 10,100,1000] [--list-reps 50]
//                 [--real-uri qemu:///system --real-image-dir DIR [--rounds 5]]

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "services/vmm/domain_xml.h"
#include "services/vmm/hypervisor.h"
#include "services/vmm/inventory.h"
#include "services/vmm/testing/fake_image.h"
#include "services/vmm/testing/fake_sysfs.h"
#include "services/vmm/vm_manager.h"
#include "services/vmm/vm_model.h"
#include "services/vmm/vm_spec.h"
#include "services/vmm/vm_store.h"
#include "services/vmm/vmm_convert.h"

extern char** environ;

namespace pml::bench {
namespace {

constexpr char kProgram[] = "pml-bench-vmm";
constexpr double kListTargetMs = 50;      // ListVms of 1,000 VMs
constexpr int kListTargetVms = 1000;
constexpr double kOverheadTarget = 0.10;  // (VMM - virDomainCreateXML) / virDomainCreateXML
constexpr int kStepReps = 50;
constexpr char kTestUri[] = "test:///default";
constexpr char kOwner[] = "spiffe://pml/operator/bench";
constexpr char kCompose[] =
    R"({"manifest_version":2,"name":"vmm-bench","runner":"bash","bash_script":"echo hi"})";
constexpr uint32_t kVcpus = 1;
constexpr uint64_t kMemoryMib = 256;

// Set by SIGINT/SIGTERM during the real part: the rounds stop and every domain is removed.
std::atomic<bool> g_interrupted{false};

struct Stats {
  size_t n = 0;
  double p50 = 0, p99 = 0, mean = 0, min = 0;  // ms
};

Stats Summarize(std::vector<double> ms) {
  Stats s;
  if (ms.empty()) return s;
  std::sort(ms.begin(), ms.end());
  s.n = ms.size();
  s.p50 = Percentile(ms, 0.50);
  s.p99 = Percentile(ms, 0.99);
  s.mean = Mean(ms);
  s.min = ms.front();
  return s;
}

const char* Verdict(bool pass) { return pass ? "PASS" : "MISS"; }

// ---- Raw libvirt, for the peers ----------------------------------------------------------------

template <auto kFree>
struct CDeleter {
  template <typename T>
  void operator()(T* p) const {
    if (p != nullptr) kFree(p);
  }
};
using ConnPtr = std::unique_ptr<virConnect, CDeleter<virConnectClose>>;
using DomPtr = std::unique_ptr<virDomain, CDeleter<virDomainFree>>;

absl::Status VirError(absl::string_view what) {
  virErrorPtr err = virGetLastError();
  absl::Status st = absl::InternalError(absl::StrCat(
      what, ": ",
      err != nullptr && err->message != nullptr ? err->message : "unknown libvirt error"));
  virResetLastError();
  return st;
}

// Destroys (when active) and undefines (when persistent) the domain `name`; OK when it is gone.
absl::Status RemoveDomain(virConnectPtr conn, const std::string& name) {
  DomPtr dom(virDomainLookupByName(conn, name.c_str()));
  if (!dom) {
    virErrorPtr err = virGetLastError();
    const bool gone = err != nullptr && err->code == VIR_ERR_NO_DOMAIN;
    if (gone) {
      virResetLastError();
      return absl::OkStatus();
    }
    return VirError(absl::StrCat("look up ", name));
  }
  if (virDomainIsActive(dom.get()) == 1 && virDomainDestroy(dom.get()) < 0 &&
      virDomainIsActive(dom.get()) == 1)
    return VirError(absl::StrCat("destroy ", name));
  if (virDomainIsPersistent(dom.get()) == 1 &&
      virDomainUndefineFlags(dom.get(), VIR_DOMAIN_UNDEFINE_NVRAM) < 0 &&
      virDomainUndefine(dom.get()) < 0)
    return VirError(absl::StrCat("undefine ", name));
  virResetLastError();
  return absl::OkStatus();
}

// Removes every domain registered with it when destroyed (or on Sweep): the bench leaves no
// domain behind, whatever fails.
class DomainJanitor {
 public:
  explicit DomainJanitor(virConnectPtr conn) : conn_(conn) {}
  DomainJanitor(const DomainJanitor&) = delete;
  DomainJanitor& operator=(const DomainJanitor&) = delete;
  ~DomainJanitor() {
    const absl::Status st = Sweep();
    if (!st.ok())
      std::fprintf(stderr, "pml-bench-vmm: cleanup: %s\n", std::string(st.message()).c_str());
  }
  void Add(const std::string& name) { names_.insert(name); }
  void Done(const std::string& name) { names_.erase(name); }
  absl::Status Sweep() {
    absl::Status first;
    for (auto it = names_.begin(); it != names_.end();) {
      absl::Status st = RemoveDomain(conn_, *it);
      if (st.ok()) {
        it = names_.erase(it);
      } else {
        if (first.ok()) first = st;
        ++it;
      }
    }
    return first;
  }

 private:
  virConnectPtr conn_;
  std::set<std::string> names_;
};

std::string NewUuid(std::mt19937_64& rng) {
  std::vector<uint8_t> b(16);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const std::string h = core::HexEncode(b);
  return absl::StrCat(h.substr(0, 8), "-", h.substr(8, 4), "-", h.substr(12, 4), "-",
                      h.substr(16, 4), "-", h.substr(20));
}

// The plan VmManager::DefineDomain builds for `spec` (mode none, no GPUs, no disk), with the
// peer's own name, UUID, VM id and directory.
vmm::DomainPlan PeerPlan(const vmm::ImageInfo& image, const vmm::VmSpec& spec,
                         const std::string& domain_name, const std::string& dir,
                         const std::string& virt_type, std::mt19937_64& rng) {
  vmm::DomainPlan plan;
  plan.domain_name = domain_name;
  plan.domain_uuid = NewUuid(rng);
  plan.vm_id = NewUuid(rng);
  plan.owner = kOwner;
  plan.spec_hash = vmm::SpecHash(spec);
  plan.tee_mode = spec.tee_mode;
  plan.vcpus = spec.vcpus;
  plan.memory_mib = spec.memory_mib;
  plan.kernel_path = absl::StrCat(image.dir, "/", image.kernel);
  plan.initrd_path = absl::StrCat(image.dir, "/", image.initrd);
  plan.cmdline = image.cmdline;
  if (!image.rootfs.empty()) plan.rootfs_path = absl::StrCat(image.dir, "/", image.rootfs);
  plan.config_dir = dir + "/config";
  plan.console_log_path = dir + "/console.log";
  plan.ports = spec.ports;
  plan.virt_type = virt_type;
  return plan;
}

vmm::VmSpec BenchSpec(const std::string& name, const std::string& image, uint16_t host_port) {
  vmm::VmSpec s;
  s.name = name;
  s.image = image;
  s.app_compose = kCompose;
  s.vcpus = kVcpus;
  s.memory_mib = kMemoryMib;
  s.tee_mode = vmm::TeeMode::kNone;
  s.ports = {{vmm::PortProtocol::kTcp, "127.0.0.1", host_port, 22}};
  return s;
}

vmm::VmmOptions ManagerOptions(const std::string& state_dir, const std::string& images_dir) {
  vmm::VmmOptions o;
  o.state_dir = state_dir;
  o.images_dir = images_dir;
  o.virt_type = "qemu";
  o.max_vcpus = 1u << 20;           // host limits out of the way: they are not measured here
  o.max_memory_mib = uint64_t{1} << 40;
  o.qemu_img = "true";              // no data disk anyway
  return o;
}

// Times `reps` calls of fn(i), sequentially; the first error stops it.
absl::StatusOr<Stats> TimeReps(int reps, const std::function<absl::Status(int)>& fn) {
  std::vector<double> ms;
  ms.reserve(static_cast<size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    const Clock::time_point t0 = Clock::now();
    PML_RETURN_IF_ERROR(fn(i));
    ms.push_back(MsSince(t0));
  }
  return Summarize(std::move(ms));
}

// ---- Part 1: the test driver -------------------------------------------------------------------

struct SizeResult {
  int vms = 0;
  Stats create;                // VmManager::CreateVm(start=true), calls that brought it to `vms`
  Stats peer;                  // BuildDomainXml + define(VALIDATE) + start, at the same populations
  Stats list_total;            // ListVms + VmToProto + serialize
  Stats list_core, list_proto, list_serialize;
  int listed = 0;
  size_t response_bytes = 0;
};

struct Step {
  std::string name;
  Stats t;
};

struct TestDriverResult {
  std::string dir;
  std::vector<SizeResult> sizes;
  std::vector<Step> steps;
};

absl::StatusOr<TestDriverResult> RunTestDriver(const std::vector<int>& sizes, int list_reps,
                                               const std::string& tmp_parent) {
  TestDriverResult out;
  // 0755 (as for the real part): the directory layout is the same.
  PML_ASSIGN_OR_RETURN(TempDir dir, TempDir::Make(tmp_parent, "pml-bench-vmm", 0755));
  out.dir = dir.path();
  const std::string images = dir.path() + "/images";
  PML_RETURN_IF_ERROR(core::MakeDirs(images));
  PML_RETURN_IF_ERROR(vmm::testing::WriteFakeImage(images, "bench"));
  PML_RETURN_IF_ERROR(vmm::testing::WriteHgxH100Host(dir.path() + "/sys"));

  // The keeper: test:///default's state lives as long as one connection to it is open.
  PML_ASSIGN_OR_RETURN(std::unique_ptr<vmm::Hypervisor> keeper, vmm::OpenLibvirt(kTestUri));
  ConnPtr raw(virConnectOpen(kTestUri));  // the peer's connection (same driver state)
  if (!raw) return VirError("open test:///default");

  vmm::VmmOptions options = ManagerOptions(dir.path() + "/state", images);
  options.sysfs_root = dir.path() + "/sys";
  PML_ASSIGN_OR_RETURN(std::unique_ptr<vmm::VmStore> store,
                       vmm::VmStore::Open(dir.path() + "/vmm.db"));
  PML_ASSIGN_OR_RETURN(std::unique_ptr<vmm::Hypervisor> hv, vmm::OpenLibvirt(kTestUri));
  PML_ASSIGN_OR_RETURN(std::unique_ptr<vmm::VmManager> manager,
                       vmm::VmManager::Create(options, std::move(hv), std::move(store)));
  vmm::ImageCatalog catalog(images);
  PML_ASSIGN_OR_RETURN(vmm::ImageInfo image, catalog.Get("bench"));
  std::mt19937_64 rng(std::random_device{}());

  int created = 0;
  for (int n : sizes) {
    SizeResult r;
    r.vms = n;
    std::vector<double> create_ms, peer_ms;
    for (; created < n; ++created) {
      const std::string name = absl::StrFormat("vm%05d", created);
      const vmm::VmSpec spec = BenchSpec(name, "bench", static_cast<uint16_t>(20000 + created));
      Clock::time_point t0 = Clock::now();
      auto vm = manager->CreateVm(spec, absl::StrCat("req-", name), kOwner, /*start=*/true);
      create_ms.push_back(MsSince(t0));
      if (!vm.ok()) return core::Annotate(vm.status(), absl::StrCat("CreateVm ", name));
      if (vm->state != vmm::VmState::kRunning)
        return absl::InternalError(absl::StrCat("CreateVm ", name, " returned state ",
                                                vmm::VmStateName(vm->state)));
      // The peer, at the same population: the same plan through raw libvirt.
      const std::string peer_name = absl::StrCat("peer-", name);
      const vmm::DomainPlan plan = PeerPlan(image, spec, peer_name,
                                            absl::StrCat(options.state_dir, "/peer/", name),
                                            "qemu", rng);
      t0 = Clock::now();
      PML_ASSIGN_OR_RETURN(std::string xml, vmm::BuildDomainXml(plan));
      DomPtr dom(virDomainDefineXMLFlags(raw.get(), xml.c_str(), VIR_DOMAIN_DEFINE_VALIDATE));
      if (!dom) return VirError(absl::StrCat("define ", peer_name));
      if (virDomainCreate(dom.get()) < 0) return VirError(absl::StrCat("start ", peer_name));
      peer_ms.push_back(MsSince(t0));
      PML_RETURN_IF_ERROR(RemoveDomain(raw.get(), peer_name));
    }
    r.create = Summarize(std::move(create_ms));
    r.peer = Summarize(std::move(peer_ms));

    // ListVms of all of them, as VmmService::ListVms answers it.
    std::vector<double> total, core_ms, proto_ms, ser_ms;
    for (int i = 0; i < list_reps; ++i) {
      const Clock::time_point t0 = Clock::now();
      vmm::ListQuery q;
      q.page_size = kListTargetVms;
      auto list = manager->ListVms(q);
      if (!list.ok()) return core::Annotate(list.status(), "ListVms");
      const Clock::time_point t1 = Clock::now();
      vmm::v1::ListVmsResponse resp;
      for (const vmm::VmRecord& vm : list->vms) vmm::VmToProto(vm, resp.add_vms());
      resp.set_next_page_token(list->next_page_token);
      resp.set_total_size(list->total_size);
      const Clock::time_point t2 = Clock::now();
      std::string bytes;
      if (!resp.SerializeToString(&bytes))
        return absl::InternalError("ListVmsResponse does not serialize");
      const Clock::time_point t3 = Clock::now();
      auto ms = [](Clock::time_point a, Clock::time_point b) {
        return std::chrono::duration<double, std::milli>(b - a).count();
      };
      total.push_back(ms(t0, t3));
      core_ms.push_back(ms(t0, t1));
      proto_ms.push_back(ms(t1, t2));
      ser_ms.push_back(ms(t2, t3));
      if (list->total_size != n)
        return absl::InternalError(
            absl::StrCat("ListVms counts ", list->total_size, " VMs, want ", n));
      r.listed = resp.vms_size();
      r.response_bytes = bytes.size();
    }
    r.list_total = Summarize(std::move(total));
    r.list_core = Summarize(std::move(core_ms));
    r.list_proto = Summarize(std::move(proto_ms));
    r.list_serialize = Summarize(std::move(ser_ms));
    out.sizes.push_back(std::move(r));
  }

  // ---- The VMM's own steps, one by one (each what CreateVm(start=true) does once or more) ----
  const vmm::VmSpec spec = BenchSpec("steps", "bench", 19999);
  auto add = [&](std::string name, absl::StatusOr<Stats> t) -> absl::Status {
    if (!t.ok()) return core::Annotate(t.status(), name);
    out.steps.push_back({std::move(name), *t});
    return absl::OkStatus();
  };
  PML_RETURN_IF_ERROR(add("ValidateSpec", TimeReps(kStepReps, [&](int) {
                            return vmm::ValidateSpec(spec);
                          })));
  PML_RETURN_IF_ERROR(add("ImageCatalog::Get (digests cached)", TimeReps(kStepReps, [&](int) {
                            return catalog.Get("bench").status();
                          })));
  PML_ASSIGN_OR_RETURN(std::unique_ptr<vmm::VmStore> steps_store,
                       vmm::VmStore::Open(dir.path() + "/steps.db"));
  std::vector<vmm::VmRecord> records;
  for (int i = 0; i < kStepReps; ++i) {
    vmm::VmRecord vm;
    vm.id = NewUuid(rng);
    vm.name = absl::StrCat("step", i);
    vm.request_id = absl::StrCat("req-step", i);
    vm.owner = kOwner;
    vm.state = vmm::VmState::kCreating;
    vm.spec = spec;
    vm.spec.name = vm.name;
    vm.spec.ports[0].host_port = static_cast<uint16_t>(10000 + i);
    vm.create_time = vm.update_time = absl::Now();
    const vmm::AppIdentity ident = vmm::ComputeAppIdentity(spec.app_compose, spec.app_id);
    vm.compose_hash.assign(ident.compose_hash.begin(), ident.compose_hash.end());
    vm.app_id = ident.app_id;
    vm.instance_seed.assign(20, static_cast<uint8_t>(i));
    vm.instance_id = vmm::ComputeInstanceId(vm.instance_seed, vm.app_id);
    vm.domain_name = absl::StrCat("pml-", vm.name);
    vm.domain_uuid = NewUuid(rng);
    vm.create_seq = i + 1;
    records.push_back(std::move(vm));
  }
  PML_RETURN_IF_ERROR(add("VmStore::Insert (VM + port claim, commit)",
                          TimeReps(kStepReps, [&](int i) {
                            const vmm::VmRecord& vm = records[static_cast<size_t>(i)];
                            return steps_store->Insert(
                                vm, {}, {{vmm::PortProtocol::kTcp, vm.spec.ports[0].host_port}});
                          })));
  PML_RETURN_IF_ERROR(add("VmStore::Update (one state change, commit)",
                          TimeReps(kStepReps, [&](int i) {
                            vmm::VmRecord& vm = records[static_cast<size_t>(i)];
                            vm.state = vmm::VmState::kStopped;
                            vm.update_time = absl::Now();
                            return steps_store->Update(vm);
                          })));
  PML_RETURN_IF_ERROR(add(
      "config share (3 files, WriteFileAtomic) + console", TimeReps(kStepReps, [&](int i) {
        const vmm::VmRecord& vm = records[static_cast<size_t>(i)];
        const std::string vm_dir = absl::StrCat(dir.path(), "/steps-vms/", vm.id);
        PML_RETURN_IF_ERROR(core::MakeDirs(vm_dir + "/config", 0755));
        for (const vmm::ConfigFile& f : vmm::GuestConfigFiles(
                 vm.spec, image, vm.app_id, vm.instance_seed, vm.instance_id, 0, 0))
          PML_RETURN_IF_ERROR(
              core::WriteFileAtomic(absl::StrCat(vm_dir, "/config/", f.name), f.content, 0644));
        std::ofstream touch(vm_dir + "/console.log", std::ios::app);
        return touch ? absl::OkStatus() : absl::InternalError("cannot create console.log");
      })));
  std::vector<std::string> xmls;
  PML_RETURN_IF_ERROR(add("BuildDomainXml", TimeReps(kStepReps, [&](int i) -> absl::Status {
                            const vmm::DomainPlan plan =
                                PeerPlan(image, spec, absl::StrCat("step-", i),
                                         dir.path() + "/steps-vms/x", "qemu", rng);
                            PML_ASSIGN_OR_RETURN(std::string xml, vmm::BuildDomainXml(plan));
                            xmls.push_back(std::move(xml));
                            return absl::OkStatus();
                          })));
  // libvirt's side, on the test driver: define with the schema validation the VMM asks for,
  // without it, and start.
  std::vector<std::string> novalidate_xmls;
  for (int i = 0; i < kStepReps; ++i) {
    const vmm::DomainPlan plan = PeerPlan(image, spec, absl::StrCat("step-nv-", i),
                                          dir.path() + "/steps-vms/x", "qemu", rng);
    PML_ASSIGN_OR_RETURN(std::string xml, vmm::BuildDomainXml(plan));
    novalidate_xmls.push_back(std::move(xml));
  }
  PML_RETURN_IF_ERROR(add("test driver: define, VIR_DOMAIN_DEFINE_VALIDATE",
                          TimeReps(kStepReps, [&](int i) -> absl::Status {
                            DomPtr dom(virDomainDefineXMLFlags(
                                raw.get(), xmls[static_cast<size_t>(i)].c_str(),
                                VIR_DOMAIN_DEFINE_VALIDATE));
                            return dom ? absl::OkStatus() : VirError("define");
                          })));
  PML_RETURN_IF_ERROR(add("test driver: define, no validation",
                          TimeReps(kStepReps, [&](int i) -> absl::Status {
                            DomPtr dom(virDomainDefineXMLFlags(
                                raw.get(), novalidate_xmls[static_cast<size_t>(i)].c_str(), 0));
                            return dom ? absl::OkStatus() : VirError("define");
                          })));
  PML_RETURN_IF_ERROR(add("test driver: look up + start (Hypervisor::Start)",
                          TimeReps(kStepReps, [&](int i) {
                            return keeper->Start(absl::StrCat("step-", i));
                          })));
  PML_RETURN_IF_ERROR(add("test driver: look up + state (Hypervisor::State)",
                          TimeReps(kStepReps, [&](int i) {
                            return keeper->State(absl::StrCat("step-", i)).status();
                          })));
  for (int i = 0; i < kStepReps; ++i) {
    PML_RETURN_IF_ERROR(RemoveDomain(raw.get(), absl::StrCat("step-", i)));
    PML_RETURN_IF_ERROR(RemoveDomain(raw.get(), absl::StrCat("step-nv-", i)));
  }
  manager.reset();  // before the keeper goes: the test driver's state goes with it
  return out;
}

// ---- Part 2: real libvirt + QEMU ---------------------------------------------------------------

// A TCP port on 127.0.0.1 that nothing listens on now (QEMU's hostfwd binds it).
absl::StatusOr<uint16_t> FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const int err = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("bind 127.0.0.1:0: ", strerror(err)));
  }
  close(fd);
  return ntohs(a.sin_port);
}

// Runs argv with stdin /dev/null and stdout+stderr into `log`; kInternal with the log's tail
// unless it exits 0.
absl::Status RunTool(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", argv[0], ": ", strerror(rc)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  auto text = core::ReadFile(log, 1 << 16);
  std::string tail = text.ok() ? *text : "";
  if (tail.size() > 400) tail = tail.substr(tail.size() - 400);
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
  return absl::InternalError(absl::StrCat(argv[0], " exited with status ", status, ": ", tail));
}

struct RealResult {
  std::string uri, libvirt_version, hypervisor_version, image_dir;
  std::vector<double> vmm, create_xml, define_start, virsh, remove;
  int rounds_done = 0;
};

absl::Status Interrupted() {
  return g_interrupted.load() ? absl::CancelledError("interrupted") : absl::OkStatus();
}

absl::StatusOr<RealResult> RunReal(const std::string& uri, const std::string& image_dir_in,
                                   int rounds, const std::string& tmp_parent) {
  RealResult out;
  out.uri = uri;
  std::error_code ec;
  const std::filesystem::path image_dir =
      std::filesystem::absolute(image_dir_in, ec).lexically_normal();
  if (ec) return absl::InvalidArgumentError(absl::StrCat("--real-image-dir: ", ec.message()));
  std::filesystem::path img = image_dir;
  if (img.filename().empty()) img = img.parent_path();  // trailing slash
  const std::string images_dir = img.parent_path().string();
  const std::string image_name = img.filename().string();
  out.image_dir = img.string();
  vmm::ImageCatalog catalog(images_dir);
  auto image = catalog.Get(image_name);
  if (!image.ok())
    return core::Annotate(image.status(), absl::StrCat("--real-image-dir ", img.string()));

  ConnPtr raw(virConnectOpen(uri.c_str()));
  if (!raw) return absl::UnavailableError(VirError(absl::StrCat("libvirt ", uri)).message());
  // The VMM's start-up reconciliation removes every domain carrying pml metadata that its
  // (fresh) store does not know: refuse to run next to another pml-vmm's domains.
  {
    virDomainPtr* doms = nullptr;
    const int n = virConnectListAllDomains(raw.get(), &doms, 0);
    if (n < 0) return VirError("list domains");
    std::vector<std::string> foreign;
    for (int i = 0; i < n; ++i) {
      DomPtr dom(doms[i]);
      char* xml = virDomainGetXMLDesc(dom.get(), 0);
      if (xml == nullptr) {
        virResetLastError();
        continue;
      }
      const bool ours = vmm::ParseDomainMetadata(xml).ok();
      free(xml);  // NOLINT: libvirt's string
      if (ours) foreign.push_back(virDomainGetName(dom.get()));
    }
    free(doms);  // NOLINT: libvirt's array
    if (!foreign.empty())
      return absl::FailedPreconditionError(absl::StrCat(
          uri, " already has ", foreign.size(), " domain(s) made by a pml-vmm (first: ",
          foreign.front(), "); a new VmManager would remove them as orphans, so the real part "
          "does not run"));
  }
  {
    unsigned long v = 0;  // NOLINT(runtime/int): libvirt's type
    if (virConnectGetLibVersion(raw.get(), &v) == 0)
      out.libvirt_version = absl::StrCat(v / 1000000, ".", (v / 1000) % 1000, ".", v % 1000);
    unsigned long hv = 0;  // NOLINT(runtime/int)
    if (virConnectGetVersion(raw.get(), &hv) == 0)
      out.hypervisor_version = absl::StrCat(hv / 1000000, ".", (hv / 1000) % 1000, ".", hv % 1000);
    virResetLastError();
  }

  // 0755: QEMU reads the config share and writes the console log under here.
  PML_ASSIGN_OR_RETURN(TempDir dir, TempDir::Make(tmp_parent, "pml-bench-vmm-real", 0755));
  DomainJanitor janitor(raw.get());
  const std::string prefix = absl::StrCat("vmmbench", getpid());
  vmm::VmmOptions options = ManagerOptions(dir.path() + "/state", images_dir);
  PML_ASSIGN_OR_RETURN(std::unique_ptr<vmm::VmStore> store,
                       vmm::VmStore::Open(dir.path() + "/vmm.db"));
  PML_ASSIGN_OR_RETURN(std::unique_ptr<vmm::Hypervisor> hv, vmm::OpenLibvirt(uri));
  PML_ASSIGN_OR_RETURN(std::unique_ptr<vmm::VmManager> manager,
                       vmm::VmManager::Create(options, std::move(hv), std::move(store)));
  if (manager->reconcile_report().orphans_removed != 0)
    return absl::AbortedError("the VmManager removed a pml domain that appeared meanwhile");
  std::mt19937_64 rng(std::random_device{}());

  // A peer domain: the VMM's plan for the same spec under another name and UUID, without the
  // <metadata> element (inert for QEMU): a pml-vmm starting on the same libvirtd meanwhile would
  // otherwise destroy it as an orphan.
  auto peer_xml = [&](const std::string& name, uint16_t port) -> absl::StatusOr<std::string> {
    const vmm::VmSpec spec = BenchSpec(name, image_name, port);
    const std::string peer_dir = absl::StrCat(dir.path(), "/peers/", name);
    PML_RETURN_IF_ERROR(core::MakeDirs(peer_dir + "/config", 0755));
    PML_ASSIGN_OR_RETURN(std::string xml,
                         vmm::BuildDomainXml(PeerPlan(*image, spec, absl::StrCat("pml-", name),
                                                      peer_dir, "qemu", rng)));
    const size_t begin = xml.find("<metadata>");
    const size_t end = xml.find("</metadata>");
    if (begin == std::string::npos || end == std::string::npos || end < begin)
      return absl::InternalError("BuildDomainXml wrote no <metadata> element");
    xml.erase(begin, end + std::string_view("</metadata>").size() - begin);
    if (vmm::ParseDomainMetadata(xml).ok())
      return absl::InternalError("the peer's XML still carries pml metadata");
    return xml;
  };
  auto create_xml = [&](const std::string& name) -> absl::StatusOr<double> {
    PML_ASSIGN_OR_RETURN(uint16_t port, FreePort());
    PML_ASSIGN_OR_RETURN(std::string xml, peer_xml(name, port));
    const std::string domain = absl::StrCat("pml-", name);
    janitor.Add(domain);
    const Clock::time_point t0 = Clock::now();
    DomPtr dom(virDomainCreateXML(raw.get(), xml.c_str(), 0));
    const double ms = MsSince(t0);
    if (!dom) return VirError(absl::StrCat("virDomainCreateXML ", domain));
    PML_RETURN_IF_ERROR(RemoveDomain(raw.get(), domain));
    janitor.Done(domain);
    return ms;
  };

  // Warm-up, untimed: the first QEMU start of a run pays for cold caches. The VMM goes first so
  // that a domain QEMU refuses is reported as CreateVm's error.
  {
    PML_ASSIGN_OR_RETURN(uint16_t port, FreePort());
    const std::string name = absl::StrCat(prefix, "-w");
    janitor.Add(absl::StrCat("pml-", name));
    auto vm = manager->CreateVm(BenchSpec(name, image_name, port), absl::StrCat("req-", name),
                                kOwner, /*start=*/true);
    if (!vm.ok()) return core::Annotate(vm.status(), absl::StrCat("CreateVm ", name));
    PML_RETURN_IF_ERROR(manager->RemoveVm(vm->id, /*force=*/true, "bench"));
    janitor.Done(absl::StrCat("pml-", name));
  }
  PML_RETURN_IF_ERROR(create_xml(absl::StrCat(prefix, "-cw")).status());

  enum Kind { kVmm, kCreateXml, kDefineStart, kVirsh, kKinds };
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < kKinds; ++k) {
      PML_RETURN_IF_ERROR(Interrupted());
      switch ((k + r) % kKinds) {  // rotating order: no kind always runs first
        case kVmm: {
          PML_ASSIGN_OR_RETURN(uint16_t port, FreePort());
          const std::string name = absl::StrCat(prefix, "-v", r);
          janitor.Add(absl::StrCat("pml-", name));
          const Clock::time_point t0 = Clock::now();
          auto vm = manager->CreateVm(BenchSpec(name, image_name, port),
                                      absl::StrCat("req-", name), kOwner, /*start=*/true);
          const double ms = MsSince(t0);
          if (!vm.ok()) return core::Annotate(vm.status(), absl::StrCat("CreateVm ", name));
          if (vm->state != vmm::VmState::kRunning)
            return absl::InternalError(absl::StrCat("CreateVm ", name, " returned state ",
                                                    vmm::VmStateName(vm->state)));
          out.vmm.push_back(ms);
          const Clock::time_point t1 = Clock::now();
          PML_RETURN_IF_ERROR(manager->RemoveVm(vm->id, /*force=*/true, "bench"));
          out.remove.push_back(MsSince(t1));
          janitor.Done(absl::StrCat("pml-", name));
          break;
        }
        case kCreateXml: {
          PML_ASSIGN_OR_RETURN(double ms, create_xml(absl::StrCat(prefix, "-c", r)));
          out.create_xml.push_back(ms);
          break;
        }
        case kDefineStart: {
          PML_ASSIGN_OR_RETURN(uint16_t port, FreePort());
          const std::string name = absl::StrCat(prefix, "-d", r);
          PML_ASSIGN_OR_RETURN(std::string xml, peer_xml(name, port));
          const std::string domain = absl::StrCat("pml-", name);
          janitor.Add(domain);
          const Clock::time_point t0 = Clock::now();
          DomPtr dom(virDomainDefineXMLFlags(raw.get(), xml.c_str(), VIR_DOMAIN_DEFINE_VALIDATE));
          if (!dom) return VirError(absl::StrCat("define ", domain));
          if (virDomainCreate(dom.get()) < 0) return VirError(absl::StrCat("start ", domain));
          out.define_start.push_back(MsSince(t0));
          PML_RETURN_IF_ERROR(RemoveDomain(raw.get(), domain));
          janitor.Done(domain);
          break;
        }
        case kVirsh: {
          PML_ASSIGN_OR_RETURN(uint16_t port, FreePort());
          const std::string name = absl::StrCat(prefix, "-s", r);
          PML_ASSIGN_OR_RETURN(std::string xml, peer_xml(name, port));
          const std::string file = absl::StrCat(dir.path(), "/peers/", name, ".xml");
          PML_RETURN_IF_ERROR(core::WriteFileAtomic(file, xml, 0644));
          const std::string domain = absl::StrCat("pml-", name);
          janitor.Add(domain);
          const Clock::time_point t0 = Clock::now();
          PML_RETURN_IF_ERROR(RunTool({"virsh", "-q", "-c", uri, "create", file}, file + ".log"));
          out.virsh.push_back(MsSince(t0));
          PML_RETURN_IF_ERROR(RemoveDomain(raw.get(), domain));
          janitor.Done(domain);
          break;
        }
        default:
          break;
      }
    }
    ++out.rounds_done;
  }
  manager.reset();
  PML_RETURN_IF_ERROR(janitor.Sweep());
  return out;
}

// ---- The report --------------------------------------------------------------------------------

struct Options {
  std::vector<int> sizes = {10, 100, 1000};
  int list_reps = 50;
  std::string real_uri;
  std::string real_image_dir;
  int rounds = 5;
  std::string tmp_dir;
};

void PrintStatsRow(const char* label, int vms, const Stats& s) {
  std::printf("  %-58s %5d %6zu %9.3f %9.3f %9.3f\n", label, vms, s.n, s.p50, s.p99, s.mean);
}

int Run(Options o) {
  std::sort(o.sizes.begin(), o.sizes.end());
  o.sizes.erase(std::unique(o.sizes.begin(), o.sizes.end()), o.sizes.end());
  const bool real = !o.real_uri.empty() || !o.real_image_dir.empty();
  if (real && (o.real_uri.empty() || o.real_image_dir.empty()))
    return Fail(kProgram,
                absl::InvalidArgumentError("--real-uri and --real-image-dir go together"));
  const Clock::time_point run_start = Clock::now();

  auto td = RunTestDriver(o.sizes, o.list_reps, o.tmp_dir);
  if (!td.ok())
    return Fail(kProgram, core::Annotate(td.status(), "test driver part"));

  std::printf(
      "pml-bench-vmm: VmManager (services/vmm), %u CPUs available; VMs of 1 vCPU, %llu MiB, one "
      "port forward, no disk, tee_mode none\n",
      std::thread::hardware_concurrency(), static_cast<unsigned long long>(kMemoryMib));
  std::printf(
      "test driver (%s, in-process), fake image and HGX sysfs, SQLite store in %s (WAL, "
      "synchronous=FULL)\n",
      kTestUri, td->dir.c_str());
  std::printf("  %-58s %5s %6s %9s %9s %9s\n", "", "VMs", "calls", "p50 ms", "p99 ms", "mean ms");
  for (const SizeResult& s : td->sizes) {
    PrintStatsRow("VMM CreateVm(start=true)", s.vms, s.create);
    PrintStatsRow("peer: BuildDomainXml + define(VALIDATE) + virDomainCreate", s.vms, s.peer);
    std::printf("  %-58s %5d %6s %9.3f  (VMM p50 / peer p50 = %.1fx; no target)\n",
                "  VMM added over the test driver", s.vms, "", s.create.p50 - s.peer.p50,
                s.peer.p50 > 0 ? s.create.p50 / s.peer.p50 : 0.0);
  }
  std::printf(
      "ListVms (page_size %d) + VmToProto + ListVmsResponse serialized, as VmmService::ListVms "
      "answers, %d reps\n",
      kListTargetVms, o.list_reps);
  std::printf("  %5s %6s %9s %9s %10s %10s %10s %9s %11s\n", "VMs", "listed", "p50 ms", "p99 ms",
              "ListVms", "VmToProto", "serialize", "KiB", "p99 / 50 ms");
  for (const SizeResult& s : td->sizes) {
    const bool target = s.vms == kListTargetVms;
    std::printf("  %5d %6d %9.3f %9.3f %10.3f %10.3f %10.3f %9.1f %11.3f %s\n", s.vms, s.listed,
                s.list_total.p50, s.list_total.p99, s.list_core.p50, s.list_proto.p50,
                s.list_serialize.p50, static_cast<double>(s.response_bytes) / 1024,
                s.list_total.p99 / kListTargetMs,
                target ? Verdict(s.list_total.p99 < kListTargetMs) : "(no target)");
  }
  std::printf("  (the ListVms/VmToProto/serialize columns are the p50 of each part)\n");
  std::printf("VMM steps one by one (in-process, sequential, %d each; same temp filesystem)\n",
              kStepReps);
  std::printf("  %-58s %9s %9s\n", "", "p50 ms", "p99 ms");
  for (const Step& s : td->steps)
    std::printf("  %-58s %9.3f %9.3f\n", s.name.c_str(), s.t.p50, s.t.p99);
  auto step = [&](absl::string_view prefix) {
    for (const Step& s : td->steps)
      if (absl::StartsWith(s.name, prefix)) return s.t.p50;
    return 0.0;
  };
  const double store_ms = step("VmStore::Insert") + 3 * step("VmStore::Update");
  std::printf(
      "  CreateVm(start=true) commits the store 4 times (insert; defined; starting; running): "
      "~%.3f ms, and writes the config share: ~%.3f ms\n",
      store_ms, step("config share"));
  std::printf(
      "  schema validation (VIR_DOMAIN_DEFINE_VALIDATE) costs ~%.3f ms per define on the test "
      "driver\n",
      step("test driver: define, VIR") - step("test driver: define, no"));

  std::fflush(stdout);
  int rc = 0;
  if (!real) {
    std::printf(
        "real libvirt: not run (give --real-uri qemu:///system --real-image-dir DIR; see "
        "bench/README.md)\n");
  } else {
    struct sigaction sa {};
    sa.sa_handler = [](int) { g_interrupted.store(true); };
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    auto rr = RunReal(o.real_uri, o.real_image_dir, o.rounds, o.tmp_dir);
    if (!rr.ok()) {
      rc = Fail(kProgram, core::Annotate(rr.status(), "real libvirt part"));
      std::printf("real libvirt: FAILED (see the error); no overhead measured\n");
    } else {
      const Stats vmm_s = Summarize(rr->vmm), cx = Summarize(rr->create_xml),
                  ds = Summarize(rr->define_start), vs = Summarize(rr->virsh),
                  rm = Summarize(rr->remove);
      std::printf(
          "real libvirt (%s: libvirt %s, QEMU %s, domain type qemu = TCG), image %s, %d rounds "
          "(rotating order, one untimed warm-up)\n",
          rr->uri.c_str(), rr->libvirt_version.c_str(), rr->hypervisor_version.c_str(),
          rr->image_dir.c_str(), rr->rounds_done);
      std::printf("  %-58s %6s %9s %9s %9s\n", "", "calls", "p50 ms", "min ms", "mean ms");
      auto row = [](const char* label, const Stats& s) {
        std::printf("  %-58s %6zu %9.1f %9.1f %9.1f\n", label, s.n, s.p50, s.min, s.mean);
      };
      row("VMM CreateVm(start=true) until it returns RUNNING", vmm_s);
      row("virDomainCreateXML (what `virsh create` calls)", cx);
      row("virDomainDefineXMLFlags(VALIDATE) + virDomainCreate", ds);
      row("`virsh create FILE` subprocess", vs);
      row("VMM RemoveVm(force) (not a target)", rm);
      const double overhead = cx.p50 > 0 ? (vmm_s.p50 - cx.p50) / cx.p50 : 0;
      const double over_ds = ds.p50 > 0 ? (vmm_s.p50 - ds.p50) / ds.p50 : 0;
      std::printf("targets\n");
      std::printf(
          "  VMM overhead = (VMM p50 %.1f - virDomainCreateXML p50 %.1f) / %.1f = %.1f%% (target "
          "< %.0f%%)  %s\n",
          vmm_s.p50, cx.p50, cx.p50, 100 * overhead, 100 * kOverheadTarget,
          Verdict(overhead < kOverheadTarget));
      std::printf(
          "  (over define(VALIDATE)+start, the libvirt calls the VMM makes: %+.1f ms, %.1f%%; "
          "virsh create p50 / virDomainCreateXML p50 = %.2fx)\n",
          vmm_s.p50 - ds.p50, 100 * over_ds, cx.p50 > 0 ? vs.p50 / cx.p50 : 0.0);
    }
  }
  if (!real || rc != 0) std::printf("targets\n");
  const SizeResult* at = nullptr;
  for (const SizeResult& s : td->sizes)
    if (s.vms == kListTargetVms) at = &s;
  if (at == nullptr) {
    std::printf("  ListVms of %d VMs: not measured (--sizes lacks %d)\n", kListTargetVms,
                kListTargetVms);
  } else {
    std::printf("  ListVms of %d VMs: p50 %.3f ms, p99 %.3f ms (target < %.0f ms): p99 / bound = "
                "%.3f  %s\n",
                kListTargetVms, at->list_total.p50, at->list_total.p99, kListTargetMs,
                at->list_total.p99 / kListTargetMs, Verdict(at->list_total.p99 < kListTargetMs));
  }
  if (!real) std::printf("  VMM overhead over real libvirt: not measured (no --real-uri)\n");
  if (real && rc != 0)
    std::printf("  VMM overhead over real libvirt: not measured (the real part failed)\n");
  std::printf("(whole run %.1f s)\n", MsSince(run_start) / 1000);
  return rc;
}

}  // namespace
}  // namespace pml::bench

int main(int argc, char** argv) {
  pml::bench::Options o;
  CLI::App app(
      "pml-bench-vmm: VmManager CreateVm(start=true) and ListVms latency with 10, 100 and 1,000 "
      "VMs on libvirt's test driver next to raw libvirt calls, and optionally CreateVm until "
      "RUNNING on a real libvirtd/QEMU next to virDomainCreateXML and `virsh create` of the same "
      "XML (see bench/README.md). Always exits 0 once measured; 2 when it cannot run.",
      "pml-bench-vmm");
  app.add_option("--sizes", o.sizes,
                 "VM populations to measure, comma-separated; VMs are created until each exists "
                 "(1 to 5000)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(1, 5000));
  app.add_option("--list-reps", o.list_reps, "ListVms calls per population (1 to 100000)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--real-uri", o.real_uri,
                 "a real libvirt URI (qemu:///system) for the CreateVm-until-running part; needs "
                 "--real-image-dir");
  app.add_option("--real-image-dir", o.real_image_dir,
                 "an image directory in the VMM's format (metadata.json, vmlinuz, initramfs), "
                 "e.g. tests/integration/test_guest.py's cached_test_image()");
  app.add_option("--rounds", o.rounds, "rounds of the real part (1 to 1000)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--tmp-dir", o.tmp_dir,
                 "where the temp dirs (SQLite store, VM state) go; its filesystem sets the cost of "
                 "the store's and config share's fsyncs (default: $TMPDIR or /tmp)");
  return pml::bench::ParseAndRun(app, argc, argv, pml::bench::kProgram,
                                 [&o] { return pml::bench::Run(o); });
}
