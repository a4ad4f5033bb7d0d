#include "services/vmm/vm_spec.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"

namespace pml::vmm {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;

VmSpec Good() {
  VmSpec s;
  s.name = "web-1";
  s.image = "base";
  s.app_compose = R"({"runner":"docker-compose","docker_compose_file":"services: {}"})";
  s.vcpus = 2;
  s.memory_mib = 2048;
  s.tee_mode = TeeMode::kNone;
  s.ports = {{PortProtocol::kTcp, "127.0.0.1", 10022, 22}};
  return s;
}

TEST(ValidateSpecTest, AcceptsAGoodSpec) { EXPECT_THAT(ValidateSpec(Good()), IsOk()); }

TEST(ValidateSpecTest, NamesTheBadField) {
  struct Case {
    const char* what;
    void (*mutate)(VmSpec&);
    const char* field;
  };
  const Case cases[] = {
      {"empty name", [](VmSpec& s) { s.name = ""; }, "spec.name"},
      {"shell name", [](VmSpec& s) { s.name = "a;rm"; }, "spec.name"},
      {"xml name", [](VmSpec& s) { s.name = "<a>"; }, "spec.name"},
      {"long name", [](VmSpec& s) { s.name = std::string(64, 'a'); }, "spec.name"},
      {"dot name", [](VmSpec& s) { s.name = ".hidden"; }, "spec.name"},
      {"image path", [](VmSpec& s) { s.image = "../etc"; }, "spec.image"},
      {"no compose", [](VmSpec& s) { s.app_compose = ""; }, "spec.app_compose"},
      {"compose not json", [](VmSpec& s) { s.app_compose = "{"; }, "spec.app_compose"},
      {"compose runner", [](VmSpec& s) { s.app_compose = R"({"runner":"k8s"})"; }, "spec.app_compose"},
      {"bash without script", [](VmSpec& s) { s.app_compose = R"({"runner":"bash"})"; }, "spec.app_compose"},
      {"zero vcpus", [](VmSpec& s) { s.vcpus = 0; }, "spec.vcpus"},
      {"zero memory", [](VmSpec& s) { s.memory_mib = 0; }, "spec.memory_mib"},
      {"tiny memory", [](VmSpec& s) { s.memory_mib = 63; }, "spec.memory_mib"},
      {"slots and all", [](VmSpec& s) { s.all_gpus = true; s.gpu_slots = {"0000:18:00.0"}; }, "spec.gpus"},
      {"bad slot", [](VmSpec& s) { s.gpu_slots = {"18:00.0"}; }, "spec.gpus.slots"},
      {"upper slot", [](VmSpec& s) { s.gpu_slots = {"0000:1A:00.0"}; }, "spec.gpus.slots"},
      {"repeated slot", [](VmSpec& s) { s.gpu_slots = {"0000:18:00.0", "0000:18:00.0"}; }, "spec.gpus.slots"},
      {"port protocol", [](VmSpec& s) { s.ports[0].protocol = PortProtocol::kUnspecified; }, "spec.ports[0]"},
      {"host port 0", [](VmSpec& s) { s.ports[0].host_port = 0; }, "spec.ports[0]"},
      {"guest port 0", [](VmSpec& s) { s.ports[0].guest_port = 0; }, "spec.ports[0]"},
      {"host address", [](VmSpec& s) { s.ports[0].host_address = "localhost;x"; }, "spec.ports[0]"},
      {"port twice", [](VmSpec& s) { s.ports.push_back(s.ports[0]); }, "spec.ports[1]"},
      {"no tee", [](VmSpec& s) { s.tee_mode = TeeMode::kUnspecified; }, "spec.tee_mode"},
      {"numa", [](VmSpec& s) { s.numa_node = -1; }, "spec.numa_node"},
      {"kms url", [](VmSpec& s) { s.kms_urls = {"ftp://x"}; }, "spec.kms_urls"},
      {"kms url quote", [](VmSpec& s) { s.kms_urls = {"https://x\"y"}; }, "spec.kms_urls"},
      {"short env", [](VmSpec& s) { s.encrypted_env = std::vector<uint8_t>(10); }, "spec.encrypted_env"},
      {"app id", [](VmSpec& s) { s.app_id = std::vector<uint8_t>(19); }, "spec.app_id"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    VmSpec s = Good();
    c.mutate(s);
    EXPECT_THAT(ValidateSpec(s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
  }
}

TEST(AppIdentityTest, FollowsDstack) {
  const std::string compose = R"({"runner":"bash","bash_script":"true"})";
  const auto hash = crypto::Sha256(compose);
  const AppIdentity id = ComputeAppIdentity(compose, {});
  EXPECT_EQ(core::HexEncode(id.compose_hash), core::HexEncode(hash));
  EXPECT_EQ(core::HexEncode(id.app_id), core::HexEncode(absl::MakeSpan(hash.data(), 20)));
  EXPECT_EQ(id.mrconfigid[0], 0x01);
  EXPECT_EQ(core::HexEncode(absl::MakeSpan(id.mrconfigid.data() + 1, 32)), core::HexEncode(hash));
  EXPECT_EQ(core::HexEncode(absl::MakeSpan(id.mrconfigid.data() + 33, 15)), std::string(30, '0'));
  const std::vector<uint8_t> pinned(20, 0xab);
  EXPECT_EQ(ComputeAppIdentity(compose, pinned).app_id, pinned);
  const std::vector<uint8_t> seed(20, 0x01);
  std::string in(seed.begin(), seed.end());
  in.append(pinned.begin(), pinned.end());
  const auto want = crypto::Sha256(in);
  EXPECT_EQ(core::HexEncode(ComputeInstanceId(seed, pinned)),
            core::HexEncode(absl::MakeSpan(want.data(), 20)));
}

TEST(SpecJsonTest, RoundTripsAndRejectsForeignData) {
  VmSpec s = Good();
  s.gpu_slots = {"0000:18:00.0"};
  s.numa_node = 1;
  s.kms_urls = {"https://kms:8443"};
  s.encrypted_env = std::vector<uint8_t>(64, 0x5a);
  s.app_id = std::vector<uint8_t>(20, 0x11);
  auto back = SpecFromJson(SpecToJson(s));
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(*back, s);
  EXPECT_EQ(SpecHash(*back), SpecHash(s));
  s.vcpus = 3;
  EXPECT_NE(SpecHash(*back), SpecHash(s));
  EXPECT_THAT(SpecFromJson("[]"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not JSON")));
  EXPECT_THAT(SpecFromJson(R"({"name":1})"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("spec")));
}

}  // namespace
}  // namespace pml::vmm
