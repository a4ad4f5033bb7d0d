#include "lib/core/byte_reader.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::core {
namespace {

using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ByteReaderTest, ReadsLittleEndian) {
  const std::vector<uint8_t> b = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
  ByteReader r(b);
  EXPECT_THAT(r.U16("a"), IsOkAndHolds(0x0201));
  EXPECT_THAT(r.U32("b"), IsOkAndHolds(0x06050403u));
  EXPECT_EQ(r.remaining(), 1u);
}

TEST(ByteReaderTest, ShortReadNamesFieldAndOffset) {
  const std::vector<uint8_t> b = {0x01, 0x02, 0x03};
  ByteReader r(b, "quote");
  ASSERT_TRUE(r.U16("version").ok());
  EXPECT_THAT(r.U32("tee_type"), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("quote: tee_type at offset 2 needs 4 bytes, 1 remain")));
}

TEST(ByteReaderTest, HugeLengthDoesNotOverflow) {
  const std::vector<uint8_t> b = {0x01};
  ByteReader r(b);
  EXPECT_THAT(r.Bytes(SIZE_MAX, "x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x")));
}

}  // namespace
}  // namespace pml::core
