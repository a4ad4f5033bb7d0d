#include "lib/rpc/logging.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/rpc/status_convert.h"

namespace pml::rpc {
namespace {

TEST(LoggingTest, SplitsEventAndFields) {
  EXPECT_EQ(MessageToJsonFields("vm_started vm_id=abc tee=none"),
            R"("event":"vm_started","vm_id":"abc","tee":"none")");
}

TEST(LoggingTest, QuotedValuesAreUnescapedThenJsonEscaped) {
  EXPECT_EQ(MessageToJsonFields(R"(denied name="a \"b\" c")"),
            R"("event":"denied","name":"a \"b\" c")");
}

TEST(LoggingTest, FreeTextFallsBackToMsg) {
  EXPECT_EQ(MessageToJsonFields("hello world\n"),
            R"("event":"hello","msg":"hello world\n")");
}

TEST(StatusConvertTest, InternalIsHiddenBehindCorrelationId) {
  grpc::Status s = ToGrpcStatus(absl::InternalError("sqlite said secret path /x"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("correlation id"));
  EXPECT_THAT(s.error_message(), ::testing::Not(::testing::HasSubstr("secret")));
}

TEST(StatusConvertTest, OtherCodesKeepMessage) {
  grpc::Status s = ToGrpcStatus(absl::InvalidArgumentError("memory_mib must be > 0"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "memory_mib must be > 0");
  EXPECT_STREQ(GrpcCodeName(grpc::StatusCode::PERMISSION_DENIED), "PermissionDenied");
}

}  // namespace
}  // namespace pml::rpc
