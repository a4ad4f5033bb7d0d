#include "lib/tee/tee_provider.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"

namespace pml::tee {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;

TEST(MakeTeeProviderTest, BuildsTheSimulatorOnlyWhenAskedByName) {
  TeeOptions options;
  options.simulator.mrtd.fill(0xAB);
  PML_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TeeProvider> tee,
                           MakeTeeProvider(TeeKind::kSimulated, options));
  EXPECT_TRUE(tee->IsSimulated());
  EXPECT_EQ(tee->Kind(), TeeKind::kSimulated);
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> quote, tee->GetQuote(std::vector<uint8_t>(64)));
  ASSERT_GT(quote.size(), 232u);
  EXPECT_EQ(quote[184], 0xAB);  // MRTD (quote v4 offset 184)
  EXPECT_THAT(tee->ExtendRtmr(3, crypto::Sha384("e")), IsOk());
}

// Hardware kinds without their kernel interface (paths that cannot exist); the providers
// themselves are tested against fakes in tee_hardware_test.cc.
TEST(MakeTeeProviderTest, HardwareKindsWithoutTheirInterfaceAreAFailedPrecondition) {
  TeeOptions options;
  options.hardware.configfs_tsm_root = "/nonexistent/pml-test/tsm/report";
  options.hardware.tdx_guest_device = "/nonexistent/pml-test/tdx_guest";
  options.hardware.tdx_measurements_dir = "/nonexistent/pml-test/measurements";
  for (TeeKind kind : {TeeKind::kConfigfsTsm, TeeKind::kTdxGuestDevice}) {
    SCOPED_TRACE(TeeKindName(kind));
    EXPECT_THAT(MakeTeeProvider(kind, options), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                         HasSubstr("/nonexistent/pml-test/")));
  }
}

TEST(TeeKindNameTest, NamesEveryKind) {
  EXPECT_EQ(TeeKindName(TeeKind::kSimulated), "simulated");
  EXPECT_EQ(TeeKindName(TeeKind::kConfigfsTsm), "configfs-tsm");
  EXPECT_EQ(TeeKindName(TeeKind::kTdxGuestDevice), "tdx-guest-device");
}

}  // namespace
}  // namespace pml::tee
