#include "lib/core/hex.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::core {
namespace {

using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(HexTest, EncodesLowerCase) {
  const std::vector<uint8_t> b = {0x00, 0xab, 0xFF};
  EXPECT_EQ(HexEncode(b), "00abff");
}

TEST(HexTest, DecodesEitherCaseAndPrefix) {
  EXPECT_THAT(HexDecode("0x00AbfF"), IsOkAndHolds(ElementsAre(0x00, 0xab, 0xff)));
}

TEST(HexTest, RejectsOddLength) {
  EXPECT_THAT(HexDecode("abc"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("odd")));
}

TEST(HexTest, RejectsNonHexAndNamesOffset) {
  EXPECT_THAT(HexDecode("00zz"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("offset 2")));
  EXPECT_THAT(HexDecode("0 "), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("offset 1")));
}

TEST(Base64Test, RoundTripsStandardAndUrl) {
  const std::vector<uint8_t> b = {0xfb, 0xff, 0x01, 0x02};
  EXPECT_EQ(Base64Encode(b), "+/8BAg==");
  EXPECT_EQ(Base64UrlEncode(b), "-_8BAg");
  EXPECT_THAT(Base64Decode("+/8BAg=="), IsOkAndHolds(ElementsAre(0xfb, 0xff, 0x01, 0x02)));
  EXPECT_THAT(Base64UrlDecode("-_8BAg"), IsOkAndHolds(ElementsAre(0xfb, 0xff, 0x01, 0x02)));
}

TEST(Base64Test, RejectsWrongAlphabet) {
  EXPECT_THAT(Base64Decode("-_8BAg=="), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base64")));
  EXPECT_THAT(Base64UrlDecode("+/8BAg"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base64url")));
  EXPECT_THAT(Base64Decode("AA=A"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base64")));
}

}  // namespace
}  // namespace pml::core
