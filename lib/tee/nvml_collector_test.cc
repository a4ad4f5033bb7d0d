#include "lib/tee/nvml_collector.h"

#include <cstdlib>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::tee {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;

// Path of the fake NVML library, baked in by CMake.
const char* FakeNvml() { return PML_FAKE_NVML_PATH; }

class NvmlCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"PML_FAKE_NVML_CC", "PML_FAKE_NVML_GPUS", "PML_FAKE_NVML_ARCH",
                          "PML_FAKE_NVML_INIT_FAIL", "PML_FAKE_NVML_NOT_ROOT"}) {
      ::unsetenv(v);
    }
  }
};

TEST_F(NvmlCollectorTest, MissingLibraryIsUnavailableAndSaysSo) {
  EXPECT_THAT(NvmlCollector::Open("/nonexistent/libnvidia-ml.so.1"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("NVML is not available")));
}

TEST_F(NvmlCollectorTest, InitFailureIsUnavailable) {
  ::setenv("PML_FAKE_NVML_INIT_FAIL", "1", 1);
  EXPECT_THAT(NvmlCollector::Open(FakeNvml()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("nvmlInit_v2 failed")));
}

TEST_F(NvmlCollectorTest, CcOffNamesTheGpusAndRefusesEvidence) {
  ::setenv("PML_FAKE_NVML_GPUS", "2", 1);
  PML_ASSERT_OK_AND_ASSIGN(auto nvml, NvmlCollector::Open(FakeNvml()));
  PML_ASSERT_OK_AND_ASSIGN(NvmlSystemState state, nvml->SystemState());
  EXPECT_FALSE(state.cc_enabled());
  EXPECT_EQ(state.driver_version, "580.159.04");
  EXPECT_TRUE(state.settings_available);
  PML_ASSERT_OK_AND_ASSIGN(auto gpus, nvml->ListGpus());
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_EQ(gpus[0].uuid, "GPU-fake-1");
  EXPECT_EQ(gpus[0].architecture_name, "Hopper");
  EXPECT_EQ(gpus[1].vbios_version, "96.00.9F.00.04");
  EXPECT_THAT(nvml->CollectEvidence(std::vector<uint8_t>(32, 7)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("confidential computing is off")));
  EXPECT_THAT(nvml->CollectEvidence(std::vector<uint8_t>(32, 7)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("GPU-fake-2 (Hopper)")));
}

TEST_F(NvmlCollectorTest, CcOnCollectsReportWithCallersNonce) {
  ::setenv("PML_FAKE_NVML_CC", "1", 1);
  PML_ASSERT_OK_AND_ASSIGN(auto nvml, NvmlCollector::Open(FakeNvml()));
  std::vector<uint8_t> nonce(32);
  for (size_t i = 0; i < nonce.size(); ++i) nonce[i] = static_cast<uint8_t>(i);
  PML_ASSERT_OK_AND_ASSIGN(auto ev, nvml->CollectEvidence(nonce));
  ASSERT_EQ(ev.size(), 1u);
  ASSERT_EQ(ev[0].report.size(), 100u);
  EXPECT_TRUE(std::equal(nonce.begin(), nonce.end(), ev[0].report.begin() + 4));
  EXPECT_THAT(ev[0].cert_chain_pem, HasSubstr("BEGIN CERTIFICATE"));
}

TEST_F(NvmlCollectorTest, RejectsWrongNonceSize) {
  ::setenv("PML_FAKE_NVML_CC", "1", 1);
  PML_ASSERT_OK_AND_ASSIGN(auto nvml, NvmlCollector::Open(FakeNvml()));
  EXPECT_THAT(nvml->CollectEvidence(std::vector<uint8_t>(31)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32 bytes, got 31")));
}

TEST_F(NvmlCollectorTest, RefusesUnsupportedArchitecture) {
  ::setenv("PML_FAKE_NVML_CC", "1", 1);
  ::setenv("PML_FAKE_NVML_ARCH", "7", 1);
  PML_ASSERT_OK_AND_ASSIGN(auto nvml, NvmlCollector::Open(FakeNvml()));
  EXPECT_THAT(nvml->CollectEvidence(std::vector<uint8_t>(32)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("Ampere")));
}

TEST_F(NvmlCollectorTest, ReadyStateNeedsRoot) {
  PML_ASSERT_OK_AND_ASSIGN(auto nvml, NvmlCollector::Open(FakeNvml()));
  EXPECT_THAT(nvml->SetReadyState(true), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(NvmlSystemState state, nvml->SystemState());
  EXPECT_TRUE(state.ready);
  ::setenv("PML_FAKE_NVML_NOT_ROOT", "1", 1);
  EXPECT_THAT(nvml->SetReadyState(true), StatusIs(absl::StatusCode::kPermissionDenied,
                                                  HasSubstr("Insufficient Permissions")));
}

}  // namespace
}  // namespace pml::tee
