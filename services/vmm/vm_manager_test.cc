// VmManager against libvirt's test driver (test:///default: its state is shared by every
// connection in this process while one is open, so each test holds a "keeper" connection and the
// state resets between tests), a fake sysfs tree (8 H100s, 4 NVSwitches, two NUMA nodes), fake
// images and a real SQLite file.

#include "services/vmm/vm_manager.h"

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"
#include "services/vmm/domain_xml.h"
#include "services/vmm/testing/fake_image.h"
#include "services/vmm/testing/fake_sysfs.h"
#include "services/vmm/vm_spec.h"

namespace pml::vmm {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr char kUri[] = "test:///default";
constexpr char kCompose[] = R"({"name":"app","runner":"bash","bash_script":"echo hi"})";

class VmManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/vmm-", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    ASSERT_THAT(core::MakeDirs(dir_ + "/images"), IsOk());
    ASSERT_THAT(testing::WriteFakeImage(dir_ + "/images", "base"), IsOk());
    ASSERT_THAT(testing::WriteFakeImage(dir_ + "/images", "tdx-base", {.with_firmware = true}), IsOk());
    ASSERT_THAT(testing::WriteHgxH100Host(dir_ + "/sys"), IsOk());
    auto keeper = OpenLibvirt(kUri);
    ASSERT_THAT(keeper, IsOk());
    keeper_ = *std::move(keeper);
    options_.state_dir = dir_ + "/state";
    options_.images_dir = dir_ + "/images";
    options_.sysfs_root = dir_ + "/sys";
    options_.virt_type = "qemu";
    options_.max_vcpus = 64;
    options_.max_memory_mib = 1 << 20;
    options_.qemu_img = "true";  // the test driver never reads the disk
    Open();
  }
  void TearDown() override {
    manager_.reset();
    keeper_.reset();
  }

  void Open() {
    manager_.reset();
    auto hv = OpenLibvirt(kUri);
    ASSERT_THAT(hv, IsOk());
    auto store = VmStore::Open(dir_ + "/vmm.db");
    ASSERT_THAT(store, IsOk());
    auto m = VmManager::Create(options_, *std::move(hv), *std::move(store));
    ASSERT_THAT(m, IsOk());
    manager_ = *std::move(m);
  }

  VmSpec Spec(absl::string_view name) {
    VmSpec s;
    s.name = std::string(name);
    s.image = "base";
    s.app_compose = kCompose;
    s.vcpus = 2;
    s.memory_mib = 512;
    s.tee_mode = TeeMode::kNone;
    return s;
  }

  absl::StatusOr<VmRecord> Create(const VmSpec& spec, absl::string_view request_id = "",
                                  bool start = false) {
    return manager_->CreateVm(spec, request_id.empty() ? absl::StrCat("req-", spec.name) : request_id,
                              "spiffe://pml/operator/test", start);
  }

  std::vector<std::string> OurDomains() {
    std::vector<std::string> out;
    auto list = keeper_->List();
    if (!list.ok()) return out;
    for (const auto& d : *list) {
      auto xml = keeper_->XmlDesc(d.name);
      if (xml.ok() && ParseDomainMetadata(*xml).ok()) out.push_back(d.name);
    }
    return out;
  }

  size_t VmDirs() {
    size_t n = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(options_.state_dir + "/vms", ec)) {
      (void)e;
      ++n;
    }
    return n;
  }

  std::string dir_;
  VmmOptions options_;
  std::unique_ptr<Hypervisor> keeper_;
  std::unique_ptr<VmManager> manager_;
};

TEST_F(VmManagerTest, FullLifecycle) {
  VmSpec spec = Spec("web");
  spec.gpu_slots = {"0000:18:00.0"};
  spec.ports = {{PortProtocol::kTcp, "127.0.0.1", 10022, 22}};
  spec.kms_urls = {"https://127.0.0.1:8443"};
  auto vm = Create(spec);
  ASSERT_THAT(vm, IsOk());
  EXPECT_EQ(vm->state, VmState::kStopped);
  EXPECT_EQ(vm->domain_name, "pml-web");
  const auto hash = crypto::Sha256(std::string(kCompose));
  EXPECT_EQ(core::HexEncode(vm->compose_hash), core::HexEncode(hash));
  EXPECT_EQ(core::HexEncode(vm->app_id), core::HexEncode(absl::MakeSpan(hash.data(), 20)));
  EXPECT_EQ(vm->instance_id, ComputeInstanceId(vm->instance_seed, vm->app_id));
  EXPECT_TRUE(vm->mrconfigid.empty());  // mode none

  // The domain carries our metadata and the XML the generator made.
  auto xml = keeper_->XmlDesc("pml-web");
  ASSERT_THAT(xml, IsOk());
  auto meta = ParseDomainMetadata(*xml);
  ASSERT_THAT(meta, IsOk());
  EXPECT_EQ(meta->vm_id, vm->id);
  EXPECT_EQ(meta->owner, "spiffe://pml/operator/test");
  EXPECT_EQ(meta->spec_hash, SpecHash(vm->spec));
  // The guest's config share holds dstack's files.
  const std::string config = absl::StrCat(options_.state_dir, "/vms/", vm->id, "/config");
  EXPECT_THAT(core::ReadFile(config + "/app-compose.json"), ::pml::testing::IsOkAndHolds(std::string(kCompose)));
  auto sys = core::ReadFile(config + "/.sys-config.json");
  ASSERT_THAT(sys, IsOk());
  EXPECT_THAT(*sys, HasSubstr("https://127.0.0.1:8443"));
  auto inst = core::ReadFile(config + "/.instance_info");
  ASSERT_THAT(inst, IsOk());
  EXPECT_THAT(*inst, HasSubstr(core::HexEncode(vm->instance_id)));

  auto gpus = manager_->ListGpus();
  ASSERT_THAT(gpus, IsOk());
  for (const auto& g : *gpus) {
    EXPECT_EQ(g.vm_id, g.device.slot == "0000:18:00.0" ? vm->id : "") << g.device.slot;
  }

  auto started = manager_->StartVm(vm->id, "t");
  ASSERT_THAT(started, IsOk());
  EXPECT_EQ(started->state, VmState::kRunning);
  EXPECT_TRUE(started->start_time.has_value());
  EXPECT_THAT(keeper_->State("pml-web"), ::pml::testing::IsOkAndHolds(DomainRunState::kRunning));

  EXPECT_THAT(manager_->RemoveVm(vm->id, false, "t"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("stop it first")));

  auto stopped = manager_->StopVm(vm->id, false, absl::Seconds(5), "t");
  ASSERT_THAT(stopped, IsOk());
  EXPECT_EQ(stopped->state, VmState::kStopped);

  ASSERT_THAT(manager_->RemoveVm(vm->id, false, "t"), IsOk());
  EXPECT_THAT(manager_->GetVm(vm->id), StatusIs(absl::StatusCode::kNotFound, HasSubstr(vm->id)));
  EXPECT_THAT(OurDomains(), IsEmpty());
  EXPECT_EQ(VmDirs(), 0u);
  gpus = manager_->ListGpus();
  ASSERT_THAT(gpus, IsOk());
  for (const auto& g : *gpus) EXPECT_EQ(g.vm_id, "") << g.device.slot;
  // The released GPU and port can be taken again.
  EXPECT_THAT(Create(spec, "req-again"), IsOk());
}

TEST_F(VmManagerTest, CreateIsIdempotentPerRequestId) {
  auto a = Create(Spec("a"), "r1");
  ASSERT_THAT(a, IsOk());
  auto again = Create(Spec("a"), "r1");
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->id, a->id);
  VmSpec other = Spec("a");
  other.vcpus = 4;
  EXPECT_THAT(Create(other, "r1"),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("different spec")));
  EXPECT_THAT(Create(Spec("a"), "r2"), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("spec.name")));
  auto list = manager_->ListVms({});
  ASSERT_THAT(list, IsOk());
  EXPECT_EQ(list->total_size, 1);
}

TEST_F(VmManagerTest, GpuAndPortConflictsNameTheHolder) {
  VmSpec a = Spec("a");
  a.gpu_slots = {"0000:2a:00.0"};
  a.ports = {{PortProtocol::kTcp, "127.0.0.1", 20000, 22}};
  auto first = Create(a);
  ASSERT_THAT(first, IsOk());
  VmSpec b = Spec("b");
  b.gpu_slots = {"0000:2a:00.0"};
  EXPECT_THAT(Create(b), StatusIs(absl::StatusCode::kResourceExhausted,
                                  HasSubstr(absl::StrCat("held by VM a (", first->id, ")"))));
  VmSpec c = Spec("c");
  c.ports = {{PortProtocol::kTcp, "0.0.0.0", 20000, 80}};
  EXPECT_THAT(Create(c), StatusIs(absl::StatusCode::kResourceExhausted,
                                  HasSubstr("host port tcp:20000 is held by VM a")));
  // UDP on the same number is a different port.
  c.ports[0].protocol = PortProtocol::kUdp;
  EXPECT_THAT(Create(c), IsOk());
  // gpus.all takes what is free and fails on what is held.
  VmSpec d = Spec("d");
  d.all_gpus = true;
  EXPECT_THAT(Create(d), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("0000:2a:00.0")));
  EXPECT_THAT(OurDomains(), SizeIs(2));
}

TEST_F(VmManagerTest, AllGpusWithNumaPinning) {
  VmSpec s = Spec("big");
  s.all_gpus = true;
  s.pin_numa = true;
  EXPECT_THAT(Create(s), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("span NUMA nodes 0,1")));
  s.numa_node = 1;
  auto vm = Create(s);
  ASSERT_THAT(vm, IsOk());
  EXPECT_THAT(vm->spec.gpu_slots, SizeIs(12));  // 8 GPUs + 4 NVSwitches, resolved
  EXPECT_FALSE(vm->spec.all_gpus);
  auto xml = keeper_->XmlDesc("pml-big");
  ASSERT_THAT(xml, IsOk());
  EXPECT_THAT(*xml, HasSubstr("nodeset='1'"));
  EXPECT_THAT(*xml, HasSubstr("48-95,144-191"));
  auto gpus = manager_->ListGpus();
  ASSERT_THAT(gpus, IsOk());
  for (const auto& g : *gpus) EXPECT_EQ(g.vm_id, vm->id);
}

TEST_F(VmManagerTest, BadInputLeavesNothingBehind) {
  VmSpec s = Spec("x");
  s.image = "nope";
  EXPECT_THAT(Create(s), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("unknown image nope")));
  s = Spec("x");
  s.memory_mib = 0;
  EXPECT_THAT(Create(s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.memory_mib")));
  for (const char* name : {"a;rm -rf /", "<x>", "a'b", "a\"b", "", "-lead"}) {
    s = Spec(name);
    EXPECT_THAT(Create(s, "rq"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.name")))
        << name;
  }
  s = Spec("x");
  s.gpu_slots = {"0000:18:00.0; reboot"};
  EXPECT_THAT(Create(s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.gpus.slots")));
  s = Spec("x");
  s.gpu_slots = {"0000:99:00.0"};
  EXPECT_THAT(Create(s), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no NVIDIA GPU")));
  s = Spec("x");
  s.tee_mode = TeeMode::kTdx;
  s.image = "tdx-base";
  EXPECT_THAT(Create(s), StatusIs(absl::StatusCode::kFailedPrecondition,
                                  HasSubstr("this host cannot launch TDX VMs")));
  s = Spec("x");
  s.ports = {{PortProtocol::kTcp, "127.0.0.1", 80, 80}};
  EXPECT_THAT(Create(s), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("outside the allowed ranges")));
  s = Spec("x");
  s.app_compose = "{not json";
  EXPECT_THAT(Create(s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.app_compose")));
  s = Spec("x");
  s.vcpus = 65;
  EXPECT_THAT(Create(s), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("allows 64 vCPUs")));

  auto list = manager_->ListVms({});
  ASSERT_THAT(list, IsOk());
  EXPECT_EQ(list->total_size, 0);
  EXPECT_THAT(OurDomains(), IsEmpty());
  EXPECT_EQ(VmDirs(), 0u);
}

TEST_F(VmManagerTest, GpuNotBoundToVfioIsRefused) {
  ASSERT_THAT(testing::WriteFakePciDevice(dir_ + "/sys", {.slot = "0000:c1:00.0", .numa_node = 1,
                                                          .iommu_group = 90, .driver = "nvidia"}),
              IsOk());
  VmSpec s = Spec("x");
  s.gpu_slots = {"0000:c1:00.0"};
  EXPECT_THAT(Create(s), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("nvidia")));
  EXPECT_THAT(OurDomains(), IsEmpty());
}

TEST_F(VmManagerTest, ListVmsPagesAndFilters) {
  for (int i = 0; i < 25; ++i) {
    ASSERT_THAT(Create(Spec(absl::StrCat(i % 2 ? "odd-" : "even-", i))), IsOk());
  }
  std::vector<std::string> names;
  ListQuery q;
  q.page_size = 10;
  int pages = 0;
  while (true) {
    auto r = manager_->ListVms(q);
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->total_size, 25);
    ++pages;
    for (const auto& vm : r->vms) names.push_back(vm.name);
    if (r->next_page_token.empty()) break;
    q.page_token = r->next_page_token;
  }
  EXPECT_EQ(pages, 3);
  ASSERT_THAT(names, SizeIs(25));
  EXPECT_EQ(names.front(), "even-0");
  EXPECT_EQ(names.back(), "even-24");
  ListQuery odd;
  odd.name_filter = "odd-";
  auto r = manager_->ListVms(odd);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->total_size, 12);
  ListQuery running;
  running.states = {VmState::kRunning};
  r = manager_->ListVms(running);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->total_size, 0);
  EXPECT_THAT(manager_->ListVms({.page_token = "garbage"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

TEST_F(VmManagerTest, UpdateKeepsAppIdAndNeedsStopped) {
  auto vm = Create(Spec("u"));
  ASSERT_THAT(vm, IsOk());
  VmSpec values;
  values.app_compose = R"({"name":"app","runner":"bash","bash_script":"echo v2"})";
  values.vcpus = 4;
  auto updated = manager_->UpdateVm(vm->id, values, {"app_compose", "vcpus"}, "t");
  ASSERT_THAT(updated, IsOk());
  EXPECT_EQ(updated->spec.vcpus, 4u);
  EXPECT_EQ(updated->app_id, vm->app_id);
  EXPECT_EQ(updated->instance_id, vm->instance_id);
  EXPECT_NE(updated->compose_hash, vm->compose_hash);
  auto xml = keeper_->XmlDesc("pml-u");
  ASSERT_THAT(xml, IsOk());
  EXPECT_THAT(*xml, HasSubstr(">4</vcpu>"));
  EXPECT_THAT(manager_->UpdateVm(vm->id, values, {"name"}, "t"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot change")));
  EXPECT_THAT(manager_->UpdateVm(vm->id, values, {}, "t"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("update_mask")));
  ASSERT_THAT(manager_->StartVm(vm->id, "t"), IsOk());
  EXPECT_THAT(manager_->UpdateVm(vm->id, values, {"vcpus"}, "t"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("needs it stopped")));
}

TEST_F(VmManagerTest, WatchSeesInitialAndChanges) {
  auto vm = Create(Spec("w"));
  ASSERT_THAT(vm, IsOk());
  absl::Mutex mu;
  std::vector<std::pair<VmEventKind, VmState>> seen;
  const uint64_t sub = manager_->Subscribe({}, true, [&](const VmChange& c) {
    absl::MutexLock lock(&mu);
    seen.push_back({c.kind, c.vm.state});
  });
  ASSERT_THAT(manager_->StartVm(vm->id, "t"), IsOk());
  ASSERT_THAT(manager_->RemoveVm(vm->id, true, "t"), IsOk());
  manager_->Unsubscribe(sub);
  absl::MutexLock lock(&mu);
  EXPECT_THAT(seen, ElementsAre(std::pair(VmEventKind::kInitial, VmState::kStopped),
                                std::pair(VmEventKind::kStateChanged, VmState::kStarting),
                                std::pair(VmEventKind::kStateChanged, VmState::kRunning),
                                std::pair(VmEventKind::kStateChanged, VmState::kRemoving),
                                std::pair(VmEventKind::kRemoved, VmState::kRemoving)));
}

TEST_F(VmManagerTest, LibvirtEventsKeepStateCurrent) {
  auto vm = Create(Spec("ev"), "", /*start=*/true);
  ASSERT_THAT(vm, IsOk());
  ASSERT_EQ(vm->state, VmState::kRunning);
  ASSERT_THAT(keeper_->Destroy("pml-ev"), IsOk());  // behind the VMM's back
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    auto got = manager_->GetVm(vm->id);
    ASSERT_THAT(got, IsOk());
    if (got->state == VmState::kStopped) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(manager_->GetVm(vm->id)->state, VmState::kStopped);
}

TEST_F(VmManagerTest, RestartReconcilesWithLibvirt) {
  auto kept = Create(Spec("kept"), "", true);
  ASSERT_THAT(kept, IsOk());
  VmSpec lost_spec = Spec("lost");
  lost_spec.gpu_slots = {"0000:3a:00.0"};
  auto lost = Create(lost_spec);
  ASSERT_THAT(lost, IsOk());
  manager_.reset();
  // While the VMM is down: its domain for "lost" disappears, and a domain with VMM metadata but
  // no stored VM appears (as if a crash hit between define and the store write).
  ASSERT_THAT(keeper_->Undefine("pml-lost"), IsOk());
  DomainPlan orphan;
  orphan.domain_name = "pml-orphan";
  orphan.domain_uuid = "6a1f3e0c-8a53-4d3b-9b8e-0a7e5c1d2f3a";
  orphan.vm_id = "00000000-0000-4000-8000-000000000000";
  orphan.owner = "spiffe://pml/operator/test";
  orphan.spec_hash = std::string(64, '0');
  orphan.vcpus = 1;
  orphan.memory_mib = 128;
  orphan.kernel_path = "/boot/vmlinuz";
  orphan.initrd_path = "/boot/initrd.img";
  orphan.virt_type = "qemu";
  {
    auto store = VmStore::Open(dir_ + "/vmm.db");
    ASSERT_THAT(store, IsOk());
    auto instance = (*store)->InstanceId();
    ASSERT_THAT(instance, IsOk());
    orphan.vmm_instance = *instance;
  }
  auto xml = BuildDomainXml(orphan);
  ASSERT_THAT(xml, IsOk());
  ASSERT_THAT(keeper_->Define(*xml), IsOk());
  // Another VMM's domain on the same libvirt: not ours to touch.
  DomainPlan foreign = orphan;
  foreign.domain_name = "pml-foreign";
  foreign.domain_uuid = "7b2f4e1d-9b64-4e4c-8c9f-1b8f6d2e3f4b";
  foreign.vmm_instance = "ffffffff-ffff-4fff-8fff-ffffffffffff";
  xml = BuildDomainXml(foreign);
  ASSERT_THAT(xml, IsOk());
  ASSERT_THAT(keeper_->Define(*xml), IsOk());
  // And a stored VM caught mid-create.
  {
    auto store = VmStore::Open(dir_ + "/vmm.db");
    ASSERT_THAT(store, IsOk());
    VmRecord half;
    half.id = "11111111-1111-4111-8111-111111111111";
    half.name = "half";
    half.state = VmState::kCreating;
    half.spec = Spec("half");
    half.request_id = "req-half";
    half.domain_name = "pml-half";
    half.create_seq = 99;
    half.create_time = half.update_time = absl::Now();
    ASSERT_THAT((*store)->Insert(half, {"0000:5d:00.0"}, {{PortProtocol::kTcp, 30000}}), IsOk());
    ASSERT_THAT(core::MakeDirs(options_.state_dir + "/vms/" + half.id), IsOk());
  }
  Open();
  const ReconcileReport& r = manager_->reconcile_report();
  EXPECT_EQ(r.adopted, 1);
  EXPECT_EQ(r.cleaned_up, 1);
  EXPECT_EQ(r.lost, 1);
  EXPECT_EQ(r.orphans_removed, 1);
  EXPECT_THAT(OurDomains(), ::testing::UnorderedElementsAre("pml-kept", "pml-foreign"));
  EXPECT_EQ(manager_->GetVm(kept->id)->state, VmState::kRunning);
  auto lost_now = manager_->GetVm(lost->id);
  ASSERT_THAT(lost_now, IsOk());
  EXPECT_EQ(lost_now->state, VmState::kFailed);
  EXPECT_THAT(lost_now->failure_reason, HasSubstr("is gone"));
  EXPECT_THAT(manager_->GetVm("11111111-1111-4111-8111-111111111111"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no VM")));
  // Nothing holds a GPU any more (the lost VM's claim and the half-made VM's claim are free).
  auto gpus = manager_->ListGpus();
  ASSERT_THAT(gpus, IsOk());
  for (const auto& g : *gpus) EXPECT_EQ(g.vm_id, "") << g.device.slot;
  // The half-made VM's request id can be used again, and its port.
  VmSpec half = Spec("half");
  half.ports = {{PortProtocol::kTcp, "127.0.0.1", 30000, 22}};
  EXPECT_THAT(Create(half, "req-half"), IsOk());
  // The predefined foreign domain of the test driver ("test") was left alone.
  EXPECT_THAT(keeper_->State("test"), IsOk());
  EXPECT_EQ(VmDirs(), 3u);  // kept, lost, half (new)
  EXPECT_THAT(manager_->RemoveVm(lost->id, false, "t"), IsOk());
}

}  // namespace
}  // namespace pml::vmm
