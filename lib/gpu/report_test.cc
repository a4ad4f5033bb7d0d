#include "lib/gpu/report.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/gpu/errors.h"
#include "lib/gpu/evidence.h"
#include "lib/gpu/testing/vectors.h"

namespace pml::gpu {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
namespace tv = ::pml::gpu::testing;

class ParseReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    real_ = tv::AzureReport();
    ASSERT_FALSE(real_.bytes.empty());
  }
  // Offset of the opaque data in the Azure report (spec §2 table: 79 + L1).
  static constexpr size_t kOpaqueOffset = 79 + 3520;
  tv::RealReport real_;
};

TEST_F(ParseReportTest, ParsesTheAzureReportLayout) {
  PML_ASSERT_OK_AND_ASSIGN(Report r, ParseReport(real_.bytes));
  EXPECT_EQ(r.raw.size(), 4129u);
  EXPECT_EQ(r.request_param1, 0x01);
  EXPECT_EQ(r.request_param2, 0xFF);
  EXPECT_EQ(r.nonce, real_.nonce);
  EXPECT_EQ(r.blocks.size(), 64u);
  EXPECT_EQ(r.blocks[0].index, 1);
  EXPECT_EQ(r.blocks[0].value.size(), 48u);
  EXPECT_EQ(r.SignedBytes().size(), 4129u - 96u);
  EXPECT_EQ(r.Signature().size(), 96u);
  EXPECT_THAT(DriverVersion(r), IsOkAndHolds("595.71.05"));
  EXPECT_THAT(VbiosVersion(r, Arch::kHopper), IsOkAndHolds("96.00.9F.00.04"));
  EXPECT_THAT(Nvdec0Status(r), IsOkAndHolds(0x55));
  EXPECT_THAT(OpaqueString(r, opaque::kProject), IsOkAndHolds("1010"));
  EXPECT_THAT(OpaqueString(r, opaque::kProjectSku), IsOkAndHolds("0210"));
  EXPECT_THAT(OpaqueString(r, opaque::kChipSku), IsOkAndHolds("886"));
  EXPECT_THAT(OpaqueDataVersion(r), IsOkAndHolds(std::optional<uint16_t>(1)));
  EXPECT_THAT(FeatureFlag(r), IsOkAndHolds(std::optional<uint16_t>(0)));
  EXPECT_THAT(ProtectedPcieStatus(r), IsOkAndHolds(std::optional<uint8_t>(0x55)));
  auto fwid = Fwid(r);
  ASSERT_THAT(fwid, IsOk());
  ASSERT_TRUE(fwid->has_value());
  EXPECT_EQ((*fwid)->size(), 48u);
  EXPECT_THAT(DriverRimId(r, Arch::kHopper), IsOkAndHolds("NV_GPU_DRIVER_GH100_595.71.05"));
  EXPECT_THAT(VbiosRimId(r, Arch::kHopper), IsOkAndHolds("NV_GPU_VBIOS_1010_0210_886_96009F0004"));
  EXPECT_THAT(DriverRimId(r, Arch::kBlackwell), IsOkAndHolds("NV_GPU_CC_DRIVER_GB100_595.71.05"));
  EXPECT_THAT(DriverRimId(r, Arch::kLs10),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UNSUPPORTED_ARCH")));
}

TEST_F(ParseReportTest, TruncationAtEveryOffsetIsAnError) {
  for (size_t n = 0; n < real_.bytes.size(); ++n) {
    auto r = ParseReport(absl::MakeConstSpan(real_.bytes).first(n));
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ErrorClass(r.status()), "REPORT_MALFORMED") << r.status();
  }
}

TEST_F(ParseReportTest, RejectsTrailingBytes) {
  std::vector<uint8_t> b = real_.bytes;
  b.push_back(0);
  EXPECT_THAT(ParseReport(b), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("trailing")));
}

TEST_F(ParseReportTest, RejectsOversizedInput) {
  std::vector<uint8_t> b(kMaxReportSize + 1, 0x11);
  EXPECT_THAT(ParseReport(b), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than")));
}

TEST_F(ParseReportTest, RejectsWrongSpdmVersion) {
  std::vector<uint8_t> b = real_.bytes;
  b[0] = 0x12;
  EXPECT_THAT(ParseReport(b),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("SPDMVersion")));
}

TEST_F(ParseReportTest, RejectsWrongResponseCode) {
  std::vector<uint8_t> b = real_.bytes;
  b[38] = 0x61;
  EXPECT_THAT(ParseReport(b),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MEASUREMENTS")));
}

TEST_F(ParseReportTest, RejectsZeroBlocks) {
  std::vector<uint8_t> b = real_.bytes;
  b[41] = 0;
  EXPECT_THAT(ParseReport(b),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NumberOfBlocks is 0")));
}

TEST_F(ParseReportTest, RejectsABlockCountThatDisagreesWithTheRecord) {
  std::vector<uint8_t> b = real_.bytes;
  b[41] = 63;
  EXPECT_THAT(ParseReport(b),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("after block 63")));
}

TEST_F(ParseReportTest, RejectsANonDmtfBlock) {
  std::vector<uint8_t> b = real_.bytes;
  b[45 + 1] = 2;  // block 1 MeasurementSpecification
  EXPECT_THAT(ParseReport(b), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not DMTF")));
}

TEST_F(ParseReportTest, RejectsDuplicateIndices) {
  std::vector<uint8_t> b = real_.bytes;
  b[45 + 55] = 1;  // block 2's index := 1
  EXPECT_THAT(ParseReport(b), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("repeats")));
}

TEST_F(ParseReportTest, RejectsVersionedOpaqueData) {
  std::vector<uint8_t> b = real_.bytes;
  const std::string magic = "NVDAOD";
  std::copy(magic.begin(), magic.end(), b.begin() + kOpaqueOffset);
  EXPECT_THAT(ParseReport(b),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("OPAQUE_DATA_UNSUPPORTED")));
}

TEST_F(ParseReportTest, RejectsUnknownOpaqueType) {
  std::vector<uint8_t> b = real_.bytes;
  b[kOpaqueOffset] = 200;  // first TLV's type, low byte
  b[kOpaqueOffset + 1] = 0;
  EXPECT_THAT(ParseReport(b),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside 1..36")));
}

TEST_F(ParseReportTest, MissingFieldIsNotFound) {
  PML_ASSERT_OK_AND_ASSIGN(Report r, ParseReport(real_.bytes));
  EXPECT_THAT(OpaqueString(r, opaque::kChipInfo),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("CHIP_INFO absent")));
  EXPECT_THAT(SwitchGpuPdis(r),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("SWITCH_GPU_PDIS")));
}

TEST(ParseArchTest, AcceptsNvatSpellings) {
  EXPECT_THAT(ParseArch("HOPPER"), IsOkAndHolds(Arch::kHopper));
  EXPECT_THAT(ParseArch("blackwell"), IsOkAndHolds(Arch::kBlackwell));
  EXPECT_THAT(ParseArch("LS10"), IsOkAndHolds(Arch::kLs10));
  EXPECT_THAT(ParseArch("AMPERE"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UNSUPPORTED_ARCH")));
}

TEST(VbiosVersionTest, SwitchVersionIsAscii) {
  auto hex = core::ReadFile(
      tv::VectorPath("ls10-nvswitch-96.10.55.00.01-nvat-full", "switchAttestationReport.hex.txt"));
  ASSERT_THAT(hex, IsOk());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> bytes, DecodeHexReport(*hex));
  PML_ASSERT_OK_AND_ASSIGN(Report r, ParseReport(bytes));
  EXPECT_EQ(r.blocks.size(), 31u);
  EXPECT_THAT(VbiosVersion(r, Arch::kLs10), IsOkAndHolds("96.10.55.00.01"));
  EXPECT_THAT(VbiosRimId(r, Arch::kLs10), IsOkAndHolds("NV_SWITCH_BIOS_5612_0002_890_9610550001"));
}

}  // namespace
}  // namespace pml::gpu
