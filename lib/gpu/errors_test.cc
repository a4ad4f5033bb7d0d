#include "lib/gpu/errors.h"

#include "gtest/gtest.h"

namespace pml::gpu {
namespace {

TEST(ErrorClassTest, ReadsTheUpperCasePrefix) {
  EXPECT_EQ(ErrorClass(
                MakeError(absl::StatusCode::kFailedPrecondition, error_class::kNonceMismatch, "x")),
            "NONCE_MISMATCH");
  EXPECT_EQ(ErrorClass(absl::InvalidArgumentError("lower: case")), "");
  EXPECT_EQ(ErrorClass(absl::OkStatus()), "");
}

TEST(WithClassTest, AddsAClassOnlyWhenMissing) {
  const absl::Status s =
      WithClass(absl::InvalidArgumentError("bad"), error_class::kReportMalformed);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "REPORT_MALFORMED: bad");
  EXPECT_EQ(WithClass(s, error_class::kRimMalformed).message(), "REPORT_MALFORMED: bad");
  EXPECT_TRUE(WithClass(absl::OkStatus(), error_class::kRimMalformed).ok());
}

}  // namespace
}  // namespace pml::gpu
