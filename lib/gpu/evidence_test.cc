#include "lib/gpu/evidence.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/gpu/errors.h"
#include "lib/gpu/testing/vectors.h"

namespace pml::gpu {
namespace {

using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
namespace tv = ::pml::gpu::testing;

TEST(ParseEvidenceJsonTest, ReadsTheNrasRequestBody) {
  const std::string dir = "h100nvl-595.71.05-azure-nras";
  auto text = core::ReadFile(tv::VectorPath(dir, "nras-request-evidence.json"));
  ASSERT_TRUE(text.ok());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<DeviceEvidence> ev, ParseEvidenceJson(*text));
  ASSERT_EQ(ev.size(), 1u);
  const tv::RealReport real = tv::AzureReport();
  EXPECT_EQ(ev[0].report, real.bytes);
  EXPECT_EQ(ev[0].certificate_chain, real.chain);
  ASSERT_TRUE(ev[0].nonce.has_value());
  EXPECT_EQ(*ev[0].nonce, real.nonce);
  EXPECT_EQ(ev[0].arch, Arch::kHopper);
}

TEST(ParseEvidenceJsonTest, ReadsNvatSerializedEvidence) {
  auto text =
      core::ReadFile(tv::VectorPath("h100-590.12-nvat-serialized", "multi_gpu_hopper.json"));
  ASSERT_TRUE(text.ok());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<DeviceEvidence> ev, ParseEvidenceJson(*text));
  EXPECT_EQ(ev.size(), 4u);
}

TEST(ParseEvidenceJsonTest, RejectsMalformedInput) {
  EXPECT_THAT(ParseEvidenceJson("{"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not valid JSON")));
  EXPECT_THAT(ParseEvidenceJson("[]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(ParseEvidenceJson(R"([{"arch":"HOPPER","certificate":"AA=="}])"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"evidence\"")));
  EXPECT_THAT(ParseEvidenceJson(R"([{"arch":"AMPERE","evidence":"AA==","certificate":"AA=="}])"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("AMPERE")));
  EXPECT_THAT(ParseEvidenceJson(R"([{"evidence":"!!","certificate":"AA=="}])"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base64")));
  EXPECT_THAT(ParseEvidenceJson(R"([{"nonce":"abcd","evidence":"AA==","certificate":"AA=="}])"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nonce")));
}

TEST(DecodeHexReportTest, IgnoresWhitespaceAndRejectsNonHex) {
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> b, DecodeHexReport("11 e0\n01ff\n"));
  EXPECT_EQ(b, (std::vector<uint8_t>{0x11, 0xe0, 0x01, 0xff}));
  EXPECT_THAT(DecodeHexReport("zz"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("EVIDENCE_MALFORMED")));
}

}  // namespace
}  // namespace pml::gpu
