#include "lib/ratls/report_data.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"

namespace pml::ratls {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;

std::vector<uint8_t> Bytes(absl::string_view s) { return {s.begin(), s.end()}; }

TEST(ReportDataTest, RaTlsIsDstacksSha512OfPrefixAndSpki) {
  const std::vector<uint8_t> spki = Bytes("spki-der-bytes");
  auto rd = ComputeReportData(ReportDataPurpose::kRaTlsCert, spki);
  ASSERT_THAT(rd, IsOk());
  // Independently: SHA-512 over the literal dstack prefix and the value.
  const auto want = crypto::Sha512("ratls-cert:spki-der-bytes");
  EXPECT_EQ(core::HexEncode(*rd), core::HexEncode(want));
}

TEST(ReportDataTest, AppDataIsTappdsDefault) {
  auto rd = ComputeReportData(ReportDataPurpose::kAppData, Bytes("hello"));
  ASSERT_THAT(rd, IsOk());
  EXPECT_EQ(core::HexEncode(*rd), core::HexEncode(crypto::Sha512("app-data:hello")));
}

TEST(ReportDataTest, PurposesAreDomainSeparated) {
  const std::vector<uint8_t> key(32, 7);
  auto release = ComputeReportData(ReportDataPurpose::kKmsKeyRelease, key);
  auto join = ComputeReportData(ReportDataPurpose::kKmsReplicaJoin, key);
  auto app = ComputeReportData(ReportDataPurpose::kAppData, key);
  ASSERT_THAT(release, IsOk());
  ASSERT_THAT(join, IsOk());
  ASSERT_THAT(app, IsOk());
  EXPECT_NE(*release, *join);
  EXPECT_NE(*release, *app);
}

TEST(ReportDataTest, NonceIsZeroPadded) {
  auto rd = ComputeReportData(ReportDataPurpose::kNonce, Bytes("abc"));
  ASSERT_THAT(rd, IsOk());
  EXPECT_EQ((*rd)[0], 'a');
  EXPECT_EQ((*rd)[2], 'c');
  EXPECT_EQ((*rd)[3], 0);
  EXPECT_EQ((*rd)[63], 0);
}

TEST(ReportDataTest, RefusesValuesThatDoNotFitThePurpose) {
  EXPECT_THAT(ComputeReportData(ReportDataPurpose::kRaTlsCert, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(ComputeReportData(ReportDataPurpose::kKmsKeyRelease, std::vector<uint8_t>(31)),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("want 32")));
  EXPECT_THAT(ComputeReportData(ReportDataPurpose::kNonce, std::vector<uint8_t>(65)),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("1..64")));
  EXPECT_THAT(ComputeReportData(ReportDataPurpose::kNonce, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(ReportDataTest, GpuNonceBindsAllOfTheReportData) {
  ReportData a{};
  ReportData b{};
  b[63] = 1;
  EXPECT_NE(GpuNonce(a), GpuNonce(b));
  std::string input = "pml-gpu-nonce:";
  input.append(a.begin(), a.end());
  EXPECT_EQ(core::HexEncode(GpuNonce(a)), core::HexEncode(crypto::Sha256(input)));
}

}  // namespace
}  // namespace pml::ratls
