#include "lib/gpu/rim.h"

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/gpu/errors.h"
#include "lib/gpu/testing/vectors.h"

namespace pml::gpu {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
namespace tv = ::pml::gpu::testing;

constexpr absl::string_view kDir = "h100nvl-595.71.05-azure-nras";
constexpr absl::string_view kDriverId = "NV_GPU_DRIVER_GH100_595.71.05";

std::string ReadVector(absl::string_view file) {
  auto s = core::ReadFile(tv::VectorPath(kDir, file));
  return s.ok() ? *s : std::string();
}

size_t ActiveCount(const Rim& rim) {
  size_t n = 0;
  for (const auto& m : rim.measurements)
    n += m.active ? 1 : 0;
  return n;
}

TEST(ParseRimTest, ParsesTheDriverRim) {
  PML_ASSERT_OK_AND_ASSIGN(Rim rim, ParseRim(ReadVector("rims/NV_GPU_DRIVER_GH100_595.71.05.xml")));
  EXPECT_EQ(rim.colloquial_version, "595.71.05");
  EXPECT_EQ(rim.product, "GH100");
  EXPECT_EQ(rim.firmware_manufacturer_id, "5703");
  EXPECT_EQ(rim.measurements.size(), 64u);
  EXPECT_EQ(ActiveCount(rim), 22u);  // spec §5 "observed counts"
}

TEST(ParseRimTest, ParsesTheVbiosRim) {
  PML_ASSERT_OK_AND_ASSIGN(Rim rim,
                           ParseRim(ReadVector("rims/NV_GPU_VBIOS_1010_0210_886_96009F0004.xml")));
  EXPECT_EQ(rim.colloquial_version, "96.00.9F.00.04");
  EXPECT_EQ(ActiveCount(rim), 12u);
}

TEST(ParseRimTest, RejectsADoctype) {
  std::string xml = ReadVector("rims/NV_GPU_DRIVER_GH100_595.71.05.xml");
  xml = "<!DOCTYPE SoftwareIdentity [<!ENTITY x \"y\">]>\n" + xml;
  EXPECT_THAT(ParseRim(xml), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("DTD")));
}

TEST(ParseRimTest, RejectsNonXml) {
  EXPECT_THAT(ParseRim("not xml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RIM_MALFORMED")));
}

TEST(ParseRimTest, RejectsAShortHash) {
  std::string xml = ReadVector("rims/NV_GPU_DRIVER_GH100_595.71.05.xml");
  const size_t pos = xml.find("Hash0=\"") + 7;
  xml.erase(pos, 2);
  EXPECT_THAT(ParseRim(xml), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Hash0")));
}

class VerifyRimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto anchors = tv::VectorAnchors();
    ASSERT_THAT(anchors, IsOk());
    anchors_ = std::make_unique<TrustAnchors>(*std::move(anchors));
  }
  std::unique_ptr<TrustAnchors> anchors_;
};

TEST_F(VerifyRimTest, AcceptsTheGenuineRimAndReportsItsWindow) {
  PML_ASSERT_OK_AND_ASSIGN(Rim rim, ParseRim(ReadVector("rims/NV_GPU_DRIVER_GH100_595.71.05.xml")));
  PML_ASSERT_OK_AND_ASSIGN(RimSignature sig, VerifyRim(rim, anchors_->rim_root()));
  EXPECT_EQ(sig.chain.size(), 4u);
  // PROVENANCE.md: driver L4 2026-04-24..2028-04-23.
  EXPECT_EQ(absl::FormatTime("%Y-%m-%d", sig.not_after, absl::UTCTimeZone()), "2028-04-23");
}

TEST_F(VerifyRimTest, RejectsATamperedGoldenValue) {
  std::string xml = ReadVector("rims/NV_GPU_DRIVER_GH100_595.71.05.xml");
  const size_t pos = xml.rfind("Hash0=\"") + 7;
  xml[pos] = xml[pos] == '0' ? '1' : '0';
  PML_ASSERT_OK_AND_ASSIGN(Rim rim, ParseRim(xml));
  EXPECT_THAT(VerifyRim(rim, anchors_->rim_root()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("RIM_INVALID_SIGNATURE")));
}

TEST_F(VerifyRimTest, RejectsATamperedVersion) {
  std::string xml = ReadVector("rims/NV_GPU_DRIVER_GH100_595.71.05.xml");
  const size_t pos = xml.find("colloquialVersion=\"595.71.05\"");
  ASSERT_NE(pos, std::string::npos);
  xml.replace(pos, 29, "colloquialVersion=\"595.71.06\"");
  PML_ASSERT_OK_AND_ASSIGN(Rim rim, ParseRim(xml));
  EXPECT_THAT(VerifyRim(rim, anchors_->rim_root()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("RIM_INVALID_SIGNATURE")));
}

TEST_F(VerifyRimTest, RejectsARimWithoutSignature) {
  std::string xml = ReadVector("rims/NV_GPU_DRIVER_GH100_595.71.05.xml");
  const size_t start = xml.find("<ds:Signature");
  const size_t end = xml.find("</ds:Signature>");
  ASSERT_NE(start, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  xml.erase(start, end + 15 - start);
  PML_ASSERT_OK_AND_ASSIGN(Rim rim, ParseRim(xml));
  EXPECT_THAT(
      VerifyRim(rim, anchors_->rim_root()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("want one enveloped Signature")));
}

TEST_F(VerifyRimTest, RejectsTheDeviceRootAsRimRoot) {
  PML_ASSERT_OK_AND_ASSIGN(Rim rim, ParseRim(ReadVector("rims/NV_GPU_DRIVER_GH100_595.71.05.xml")));
  EXPECT_THAT(VerifyRim(rim, anchors_->device_root()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("RIM_CHAIN_UNTRUSTED")));
}

TEST(MatchMeasurementsTest, SameRimTwiceIsAConflict) {
  PML_ASSERT_OK_AND_ASSIGN(Rim rim, ParseRim(ReadVector("rims/NV_GPU_DRIVER_GH100_595.71.05.xml")));
  const tv::RealReport real = tv::AzureReport();
  PML_ASSERT_OK_AND_ASSIGN(Report report, ParseReport(real.bytes));
  PML_ASSERT_OK_AND_ASSIGN(MatchResult m, MatchMeasurements(report, &rim, &rim));
  EXPECT_FALSE(m.index_no_conflict);
  EXPECT_FALSE(m.success());
}

TEST(MatchMeasurementsTest, ReportsAChangedRuntimeValue) {
  PML_ASSERT_OK_AND_ASSIGN(Rim driver,
                           ParseRim(ReadVector("rims/NV_GPU_DRIVER_GH100_595.71.05.xml")));
  PML_ASSERT_OK_AND_ASSIGN(Rim vbios,
                           ParseRim(ReadVector("rims/NV_GPU_VBIOS_1010_0210_886_96009F0004.xml")));
  const tv::RealReport real = tv::AzureReport();
  PML_ASSERT_OK_AND_ASSIGN(Report report, ParseReport(real.bytes));
  PML_ASSERT_OK_AND_ASSIGN(MatchResult ok, MatchMeasurements(report, &driver, &vbios));
  EXPECT_TRUE(ok.success());
  EXPECT_EQ(ok.compared, 33u);
  // Corrupt the runtime value of the first active driver index.
  uint32_t idx = 0;
  for (const auto& m : driver.measurements) {
    if (m.active && m.index != 35) {
      idx = m.index;
      break;
    }
  }
  for (auto& b : report.blocks) {
    if (b.index == idx + 1)
      b.value[0] ^= 1;
  }
  PML_ASSERT_OK_AND_ASSIGN(MatchResult bad, MatchMeasurements(report, &driver, &vbios));
  ASSERT_EQ(bad.mismatches.size(), 1u);
  EXPECT_EQ(bad.mismatches[0].index, idx);
  EXPECT_EQ(bad.mismatches[0].source, RimKind::kDriver);
}

TEST(MatchMeasurementsTest, RejectsAnUnknownNvdecStatus) {
  const tv::RealReport real = tv::AzureReport();
  PML_ASSERT_OK_AND_ASSIGN(Report report, ParseReport(real.bytes));
  for (auto& f : report.opaque) {
    if (f.type == opaque::kNvdec0Status)
      f.value[0] = 0x12;
  }
  EXPECT_THAT(MatchMeasurements(report, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NVDEC0_STATUS")));
}

TEST(DirectoryRimSourceTest, ReadsXmlByIdAndRefusesTraversal) {
  DirectoryRimSource src(tv::VectorPath(kDir, "rims"));
  EXPECT_THAT(src.GetRim(kDriverId),
              IsOkAndHolds(ReadVector("rims/NV_GPU_DRIVER_GH100_595.71.05.xml")));
  EXPECT_THAT(src.GetRim("../cert-chain"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RIM id")));
  EXPECT_THAT(src.GetRim("NV_GPU_DRIVER_GH100_1.2.3"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("RIM_NOT_FOUND")));
}

TEST(DirectoryRimSourceTest, FallsBackToRimServiceResponses) {
  const std::string tmp = ::testing::TempDir() + "/gpu_rim_dir";
  ASSERT_THAT(core::MakeDirs(tmp), IsOk());
  ASSERT_THAT(core::WriteFileAtomic(
                  tmp + "/rim-service-response_" + std::string(kDriverId) + ".json",
                  ReadVector("rims/rim-service-response_NV_GPU_DRIVER_GH100_595.71.05.json")),
              IsOk());
  DirectoryRimSource src(tmp);
  EXPECT_THAT(src.GetRim(kDriverId),
              IsOkAndHolds(ReadVector("rims/NV_GPU_DRIVER_GH100_595.71.05.xml")));
}

TEST(DecodeRimServiceResponseTest, ChecksIdAndSha256) {
  const std::string json =
      ReadVector("rims/rim-service-response_NV_GPU_DRIVER_GH100_595.71.05.json");
  EXPECT_THAT(DecodeRimServiceResponse(json, "NV_GPU_DRIVER_GH100_595.71.04"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("RIM_ID_MISMATCH")));
  nlohmann::json j = nlohmann::json::parse(json);
  std::string sha = j["sha256"].get<std::string>();
  sha[0] = sha[0] == '0' ? '1' : '0';
  j["sha256"] = sha;
  EXPECT_THAT(DecodeRimServiceResponse(j.dump(), kDriverId),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sha256")));
}

}  // namespace
}  // namespace pml::gpu
