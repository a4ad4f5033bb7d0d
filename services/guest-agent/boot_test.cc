// The boot sequence against the simulated TEE and simulated GPUs: event order and payloads,
// identities as dstack computes them, the GPU gate, key providers, and agent restarts.

#include "services/guest-agent/boot.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"
#include "lib/tee/simulator.h"

namespace pml::guest {
namespace {

using ::pml::testing::IsOk;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class BootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("pml-boot-", getpid(), "-", reinterpret_cast<uintptr_t>(this) % 100000);
    std::filesystem::create_directories(dir_ / "config");
    std::filesystem::create_directories(dir_ / "state");
    Write("config/app-compose.json",
          R"({"manifest_version":2,"name":"demo","runner":"bash","bash_script":"true",)"
          R"("key_provider":"local"})");
    OpenLog();
    options_.config_dir = (dir_ / "config").string();
    options_.state_dir = (dir_ / "state").string();
    options_.tee_kind = "simulated";
  }
  void TearDown() override {
    log_.reset();
    sim_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Write(const std::string& rel, const std::string& text) {
    std::ofstream(dir_ / rel, std::ios::binary) << text;
  }
  void OpenLog() {
    log_.reset();
    sim_.reset();
    tee::SimulatorOptions so;
    so.state_dir = (dir_ / "state").string();
    auto sim = tee::TdxSimulator::Create(so);
    ASSERT_THAT(sim, IsOk());
    sim_ = *std::move(sim);
    auto log = RuntimeEventLog::Open((dir_ / "state/runtime.log").string(), *sim_);
    ASSERT_THAT(log, IsOk());
    log_ = *std::move(log);
  }
  std::vector<std::string> Names() const {
    std::vector<std::string> out;
    for (const auto& e : log_->Events())
      out.push_back(e.name);
    return out;
  }

  std::filesystem::path dir_;
  std::unique_ptr<tee::TdxSimulator> sim_;
  std::unique_ptr<RuntimeEventLog> log_;
  BootOptions options_;
};

TEST_F(BootTest, EmitsTheBootEventsInOrderWithDstackIdentities) {
  auto st = RunBoot(options_, *log_, nullptr);
  ASSERT_THAT(st, IsOk());
  EXPECT_TRUE(st->emitted);
  EXPECT_THAT(Names(), ElementsAre("system-preparing", "app-id", "compose-hash", "instance-id",
                                   "boot-mr-done", "key-provider", "system-ready"));
  std::ifstream in(dir_ / "config/app-compose.json", std::ios::binary);
  const std::string compose((std::istreambuf_iterator<char>(in)), {});
  const auto hash = crypto::Sha256(compose);
  EXPECT_EQ(st->identity.compose_hash, std::vector<uint8_t>(hash.begin(), hash.end()));
  EXPECT_EQ(st->identity.app_id, std::vector<uint8_t>(hash.begin(), hash.begin() + 20));
  EXPECT_EQ(st->identity.instance_id.size(), 20u);
  EXPECT_EQ(st->identity.app_name, "demo");
  EXPECT_EQ(st->identity.key_provider, KeyProviderKind::kLocalDev);
  EXPECT_TRUE(st->ca.has_value());
  const auto events = log_->Events();
  EXPECT_EQ(events[1].payload, st->identity.app_id);
  EXPECT_EQ(events[2].payload, st->identity.compose_hash);
  EXPECT_EQ(events[3].payload, st->identity.instance_id);
  EXPECT_EQ(core::ToString(events[5].payload), st->identity.key_provider_info);
  EXPECT_THAT(st->identity.key_provider_info, HasSubstr("local-dev"));
}

TEST_F(BootTest, InstanceInfoPinsAppIdAndSeedAsDstackDoes) {
  const std::string seed(40, 'b');
  Write("config/.instance_info",
        absl::StrCat(R"({"app_id":")", std::string(40, 'a'), R"(","instance_id_seed":")", seed,
                     R"("})"));
  Write("config/.sys-config.json",
        R"({"vm_config":"{\"os_image_hash\":\")" + std::string(64, 'c') + R"(\",\"cpu_count\":2}"})");
  auto st = RunBoot(options_, *log_, nullptr);
  ASSERT_THAT(st, IsOk());
  EXPECT_EQ(core::HexEncode(st->identity.app_id), std::string(40, 'a'));
  std::string input(20, '\xbb');
  input.append(20, '\xaa');
  const auto want = crypto::Sha256(input);
  EXPECT_EQ(st->identity.instance_id, std::vector<uint8_t>(want.begin(), want.begin() + 20));
  EXPECT_EQ(core::HexEncode(st->identity.os_image_hash), std::string(64, 'c'));
  EXPECT_THAT(st->identity.vm_config, HasSubstr("cpu_count"));
}

TEST_F(BootTest, ARestartEmitsNothingAndKeepsTheIdentity) {
  auto first = RunBoot(options_, *log_, nullptr);
  ASSERT_THAT(first, IsOk());
  OpenLog();
  options_.emit = false;
  auto again = RunBoot(options_, *log_, nullptr);
  ASSERT_THAT(again, IsOk());
  EXPECT_FALSE(again->emitted);
  EXPECT_EQ(log_->Size(), 7u);
  EXPECT_EQ(again->identity.instance_id, first->identity.instance_id);
  EXPECT_EQ(again->app_key.span().size(), 32u);
  EXPECT_TRUE(std::equal(again->app_key.span().begin(), again->app_key.span().end(),
                         first->app_key.span().begin()));
}

TEST_F(BootTest, AConfigChangedUnderAMeasuredBootIsRefused) {
  ASSERT_THAT(RunBoot(options_, *log_, nullptr), IsOk());
  Write("config/app-compose.json", R"({"name":"evil","runner":"bash","key_provider":"local"})");
  auto st = RunBoot(options_, *log_, nullptr);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("changed"));
}

TEST_F(BootTest, ServingWithoutBootIsRefused) {
  options_.emit = false;
  auto st = RunBoot(options_, *log_, nullptr);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("boot"));
  EXPECT_EQ(log_->Size(), 0u);
}

TEST_F(BootTest, SimulatedGpusPassTheGateAndAreMeasured) {
  auto gpus = MakeSimulatedGpus(2);
  ASSERT_THAT(gpus, IsOk());
  auto st = RunBoot(options_, *log_, gpus->get());
  ASSERT_THAT(st, IsOk());
  EXPECT_THAT(Names(), ElementsAre("system-preparing", "app-id", "compose-hash",
                                   "gpu-attestation", "instance-id", "boot-mr-done",
                                   "key-provider", "system-ready"));
  ASSERT_EQ(st->identity.gpus.size(), 2u);
  const auto ev = nlohmann::json::parse(core::ToString(log_->Events()[3].payload));
  EXPECT_EQ(ev["devices"].size(), 2u);
  EXPECT_TRUE(ev["simulated"].get<bool>());
  const auto digest = crypto::Sha256(st->identity.gpu_evidence_json);
  EXPECT_EQ(ev["evidence_sha256"], core::HexEncode(digest));
}

TEST_F(BootTest, ABootInterruptedBeforeTheKeysCompletesOnRestart) {
  // A crash after boot-mr-done leaves the first five events; the restart adds the rest, in order.
  const std::string seed(20, '\x5e');
  Write("state/instance-id-seed", seed);
  std::ifstream in(dir_ / "config/app-compose.json", std::ios::binary);
  const std::string compose((std::istreambuf_iterator<char>(in)), {});
  const auto hash = crypto::Sha256(compose);
  const std::vector<uint8_t> app(hash.begin(), hash.begin() + 20);
  const auto inst = crypto::Sha256(seed + std::string(app.begin(), app.end()));
  ASSERT_THAT(log_->Emit("system-preparing", {}), IsOk());
  ASSERT_THAT(log_->Emit("app-id", app), IsOk());
  ASSERT_THAT(log_->Emit("compose-hash", std::vector<uint8_t>(hash.begin(), hash.end())), IsOk());
  ASSERT_THAT(log_->Emit("instance-id", std::vector<uint8_t>(inst.begin(), inst.begin() + 20)),
              IsOk());
  ASSERT_THAT(log_->Emit("boot-mr-done", {}), IsOk());
  auto st = RunBoot(options_, *log_, nullptr);
  ASSERT_THAT(st, IsOk());
  EXPECT_FALSE(st->emitted);
  EXPECT_THAT(Names(), ElementsAre("system-preparing", "app-id", "compose-hash", "instance-id",
                                   "boot-mr-done", "key-provider", "system-ready"));
}

TEST_F(BootTest, AGpuWithCcOffStopsTheBootBeforeAnyKeyOrEvent) {
  auto gpus = MakeSimulatedGpus(1, /*cc_off=*/true);
  ASSERT_THAT(gpus, IsOk());
  auto st = RunBoot(options_, *log_, gpus->get());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("confidential computing is off"));
  EXPECT_EQ(log_->Size(), 0u);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "state/dev-app-key-seed"));
}

// NVML's path, against the fake libnvidia-ml (lib/tee/testing/fake_nvml.c): CC off is refused by
// the gate; with CC on its reports are not real SPDM evidence, so verification refuses them.
TEST_F(BootTest, NvmlGpusThatAreNotConfidentialOrNotGenuineStopTheBoot) {
  setenv("PML_FAKE_NVML_GPUS", "2", 1);
  setenv("PML_FAKE_NVML_CC", "0", 1);
  auto off = MakeNvmlGpus(PML_FAKE_NVML_PATH);
  ASSERT_THAT(off, IsOk());
  auto st = RunBoot(options_, *log_, off->get());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("confidential computing is off"));
  off->reset();
  setenv("PML_FAKE_NVML_CC", "1", 1);
  auto on = MakeNvmlGpus(PML_FAKE_NVML_PATH);
  ASSERT_THAT(on, IsOk());
  options_.gpu.offline = true;
  st = RunBoot(options_, *log_, on->get());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("failed verification"));
  EXPECT_EQ(log_->Size(), 0u);
  unsetenv("PML_FAKE_NVML_GPUS");
  unsetenv("PML_FAKE_NVML_CC");
}

TEST_F(BootTest, KeyProvidersAndBadConfig) {
  // The KMS provider without an address, and without a pin: nothing is sent anywhere.
  Write("config/app-compose.json", R"({"name":"k","kms_enabled":true})");
  auto kms = RunBoot(options_, *log_, nullptr);
  EXPECT_EQ(kms.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(kms.status().message()), HasSubstr("KMS address"));
  options_.kms_address = "127.0.0.1:1";
  options_.kms_root_ca = (dir_ / "config/nope.pem").string();
  auto unpinned = RunBoot(options_, *log_, nullptr);
  EXPECT_EQ(unpinned.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(unpinned.status().message()), HasSubstr("key_provider_id"));
  options_.kms_address.clear();
  log_.reset();
  std::filesystem::remove_all(dir_ / "state");
  std::filesystem::create_directories(dir_ / "state");
  OpenLog();
  options_.key_provider = "bogus";
  EXPECT_EQ(RunBoot(options_, *log_, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  options_.key_provider = "auto";
  Write("config/app-compose.json", "[1,2]");
  EXPECT_EQ(RunBoot(options_, *log_, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  Write("config/app-compose.json", R"({"runner":"systemd"})");
  EXPECT_EQ(RunBoot(options_, *log_, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  Write("config/app-compose.json", R"({"name":"x"})");
  Write("config/.instance_info", R"({"app_id":"zz"})");
  EXPECT_EQ(RunBoot(options_, *log_, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(BootTest, NoInstanceIdLeavesItEmpty) {
  Write("config/app-compose.json", R"({"name":"n","no_instance_id":true,"key_provider":"none"})");
  auto st = RunBoot(options_, *log_, nullptr);
  ASSERT_THAT(st, IsOk());
  EXPECT_TRUE(st->identity.instance_id.empty());
  EXPECT_EQ(st->identity.key_provider, KeyProviderKind::kNone);
}

}  // namespace
}  // namespace pml::guest
