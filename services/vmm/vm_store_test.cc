#include "services/vmm/vm_store.h"

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::vmm {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::SizeIs;

VmRecord Vm(const std::string& id, const std::string& name, int64_t seq) {
  VmRecord vm;
  vm.id = id;
  vm.name = name;
  vm.request_id = "req-" + name;
  vm.state = VmState::kStopped;
  vm.spec.name = name;
  vm.spec.image = "base";
  vm.spec.app_compose = R"({"runner":"bash","bash_script":"true"})";
  vm.spec.memory_mib = 256;
  vm.spec.tee_mode = TeeMode::kNone;
  vm.create_time = vm.update_time = absl::FromUnixSeconds(1700000000);
  vm.app_id = std::vector<uint8_t>(20, 1);
  vm.instance_seed = std::vector<uint8_t>(20, 2);
  vm.domain_name = "pml-" + name;
  vm.create_seq = seq;
  return vm;
}

class VmStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = absl::StrCat(::testing::TempDir(), "/vmstore-",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name(), ".db");
    std::filesystem::remove(path_);
  }
  std::string path_;
};

TEST_F(VmStoreTest, SurvivesReopen) {
  {
    auto s = VmStore::Open(path_);
    ASSERT_THAT(s, IsOk());
    VmRecord a = Vm("a", "alpha", 1);
    a.start_time = absl::FromUnixSeconds(1700000100);
    ASSERT_THAT((*s)->Insert(a, {"0000:18:00.0"}, {{PortProtocol::kTcp, 10022}}), IsOk());
    ASSERT_THAT((*s)->Insert(Vm("b", "beta", 2), {}, {}), IsOk());
  }
  auto s = VmStore::Open(path_);
  ASSERT_THAT(s, IsOk());
  auto all = (*s)->LoadAll();
  ASSERT_THAT(all, IsOk());
  ASSERT_THAT(*all, SizeIs(2));
  EXPECT_EQ((*all)[0].name, "alpha");
  EXPECT_EQ((*all)[0].spec, Vm("a", "alpha", 1).spec);
  EXPECT_EQ((*all)[0].start_time, absl::FromUnixSeconds(1700000100));
  EXPECT_EQ((*all)[0].instance_seed, std::vector<uint8_t>(20, 2));
  EXPECT_FALSE((*all)[1].start_time.has_value());
  auto claims = (*s)->LoadClaims();
  ASSERT_THAT(claims, IsOk());
  ASSERT_THAT(claims->gpus, SizeIs(1));
  EXPECT_EQ(claims->gpus[0].second, "a");
  ASSERT_THAT(claims->ports, SizeIs(1));
  EXPECT_EQ(claims->ports[0].first.host_port, 10022);
}

TEST_F(VmStoreTest, ClaimsAreExclusiveAndAtomic) {
  auto s = VmStore::Open(path_);
  ASSERT_THAT(s, IsOk());
  ASSERT_THAT((*s)->Insert(Vm("a", "alpha", 1), {"0000:18:00.0"}, {}), IsOk());
  // A second VM claiming the same GPU fails as a whole: no row for it is left.
  EXPECT_THAT((*s)->Insert(Vm("b", "beta", 2), {"0000:2a:00.0", "0000:18:00.0"}, {}),
              StatusIs(absl::StatusCode::kAlreadyExists, ::testing::_));
  auto all = (*s)->LoadAll();
  ASSERT_THAT(all, IsOk());
  EXPECT_THAT(*all, SizeIs(1));
  auto claims = (*s)->LoadClaims();
  ASSERT_THAT(claims, IsOk());
  EXPECT_THAT(claims->gpus, SizeIs(1));
  EXPECT_THAT((*s)->Insert(Vm("c", "alpha", 3), {}, {}), StatusIs(absl::StatusCode::kAlreadyExists, ::testing::_));
}

TEST_F(VmStoreTest, UpdateReleaseDelete) {
  auto s = VmStore::Open(path_);
  ASSERT_THAT(s, IsOk());
  VmRecord a = Vm("a", "alpha", 1);
  ASSERT_THAT((*s)->Insert(a, {"0000:18:00.0"}, {{PortProtocol::kUdp, 5000}}), IsOk());
  a.state = VmState::kRunning;
  a.failure_reason = "x";
  ASSERT_THAT((*s)->UpdateWithClaims(a, {"0000:2a:00.0"}, {}), IsOk());
  auto claims = (*s)->LoadClaims();
  ASSERT_THAT(claims, IsOk());
  ASSERT_THAT(claims->gpus, SizeIs(1));
  EXPECT_EQ(claims->gpus[0].first, "0000:2a:00.0");
  EXPECT_THAT(claims->ports, SizeIs(0));
  ASSERT_THAT((*s)->ReleaseClaims("a"), IsOk());
  claims = (*s)->LoadClaims();
  ASSERT_THAT(claims, IsOk());
  EXPECT_THAT(claims->gpus, SizeIs(0));
  EXPECT_EQ((*s)->LoadAll()->at(0).state, VmState::kRunning);
  ASSERT_THAT((*s)->Delete("a"), IsOk());
  EXPECT_THAT(*(*s)->LoadAll(), SizeIs(0));
  EXPECT_THAT((*s)->Update(a), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

}  // namespace
}  // namespace pml::vmm
