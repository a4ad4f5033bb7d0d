#include "tools/pmlctl/cli_util.h"

#include <cstdint>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::pmlctl {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::string_view kAppHex = "0123456789abcdef0123456789abcdef01234567";

std::string AppBytes() { return core::ToString(*core::HexDecode(kAppHex)); }

google::protobuf::Timestamp Ts(int64_t seconds, int32_t nanos = 0) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(seconds);
  ts.set_nanos(nanos);
  return ts;
}

// ---- errors

TEST(PrintErrorTest, PrintsCommandAndStatusToStderrAndReturnsTheCode) {
  std::ostringstream err;
  std::streambuf* old = std::cerr.rdbuf(err.rdbuf());
  const int code = PrintError("kms policy get", kExitRefused, absl::NotFoundError("no binding"));
  std::cerr.rdbuf(old);
  EXPECT_EQ(code, kExitRefused);
  EXPECT_EQ(err.str(), "pmlctl kms policy get: error: NOT_FOUND: no binding\n");
}

// ---- paging

TEST(FollowPagesTest, FollowsTokensFromTheFirstUntilAnEmptyOne) {
  std::vector<std::string> asked;
  auto fetch = [&](const std::string& token) -> absl::StatusOr<std::string> {
    asked.push_back(token);
    if (token == "start")
      return std::string("p2");
    if (token == "p2")
      return std::string("p3");
    return std::string();
  };
  EXPECT_THAT(FollowPages(10, "start", fetch), IsOk());
  EXPECT_THAT(asked, ElementsAre("start", "p2", "p3"));
}

TEST(FollowPagesTest, StopsWhenTheCallbackReturnsNoToken) {
  int calls = 0;
  auto fetch = [&](const std::string&) -> absl::StatusOr<std::string> {
    ++calls;
    return std::string();
  };
  EXPECT_THAT(FollowPages(10, "", fetch), IsOk());
  EXPECT_EQ(calls, 1);
}

TEST(FollowPagesTest, RefusesARepeatedToken) {
  int calls = 0;
  auto fetch = [&](const std::string&) -> absl::StatusOr<std::string> {
    ++calls;
    return std::string("same");
  };
  EXPECT_THAT(FollowPages(10, "", fetch),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("same page token twice")));
  EXPECT_EQ(calls, 2);
}

TEST(FollowPagesTest, RefusesMoreThanMaxPages) {
  int calls = 0;
  auto fetch = [&](const std::string&) -> absl::StatusOr<std::string> {
    return absl::StrCat("t", ++calls);
  };
  EXPECT_THAT(FollowPages(3, "", fetch),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("more than 3 pages")));
  EXPECT_EQ(calls, 3);
}

TEST(FollowPagesTest, PassesTheCallbacksErrorThrough) {
  auto fetch = [](const std::string&) -> absl::StatusOr<std::string> {
    return absl::UnavailableError("connection refused");
  };
  EXPECT_THAT(FollowPages(10, "", fetch),
              StatusIs(absl::StatusCode::kUnavailable, "connection refused"));
}

// ---- input

TEST(ReadFileOrStdinTest, FileErrorsKeepTheirCodeAndPath) {
  EXPECT_THAT(ReadFileOrStdin("/nonexistent/pmlctl-policy.json", 1024),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/pmlctl-policy.json")));
}

TEST(ParseAppIdFlagTest, AcceptsFortyHexDigitsInEitherCaseWithOptionalPrefix) {
  EXPECT_THAT(ParseAppIdFlag("--app-id", kAppHex), IsOkAndHolds(AppBytes()));
  EXPECT_THAT(ParseAppIdFlag("--app-id", "0x0123456789ABCDEF0123456789ABCDEF01234567"),
              IsOkAndHolds(AppBytes()));
}

TEST(ParseAppIdFlagTest, RejectsWrongLengthNamingFlagAndDigitCount) {
  EXPECT_THAT(ParseAppIdFlag("--app-id", kAppHex.substr(0, 38)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--app-id \"0123456789abcdef0123456789abcdef012345\": want 40 "
                                 "hex digits (20 bytes), got 38")));
  EXPECT_THAT(ParseAppIdFlag("--app-id", absl::StrCat(kAppHex, "00")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got 42")));
  EXPECT_THAT(ParseAppIdFlag("--app-id", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got 0")));
}

TEST(ParseAppIdFlagTest, RejectsNonHexAndBoundsTheEcho) {
  EXPECT_THAT(ParseAppIdFlag("--app-id", "zz23456789abcdef0123456789abcdef01234567"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--app-id \"zz23")));
  const std::string long_text(500, 'g');
  auto s = ParseAppIdFlag("--app-id", long_text);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), Not(HasSubstr(std::string(65, 'g'))));
}

// ---- output

TEST(FormatTableTest, PadsColumnsTwoApartAndStripsTrailingSpace) {
  EXPECT_EQ(
      FormatTable({{"ID", "NAME", "STATE"}, {"1", "web-server", ""}, {"22", "db", "ok"}}, "  "),
      "  ID  NAME        STATE\n"
      "  1   web-server\n"
      "  22  db          ok\n");
}

TEST(FormatTableTest, RowsMayDifferInLength) {
  EXPECT_EQ(FormatTable({{"A", "B"}, {"long"}}, ""), "A     B\nlong\n");
  EXPECT_EQ(FormatTable({}, ""), "");
}

TEST(HexTest, EncodesLowerCaseAndDashesEmpty) {
  EXPECT_EQ(Hex(std::string("\x01\xab", 2)), "01ab");
  EXPECT_EQ(HexOrDash(std::string("\xff", 1)), "ff");
  EXPECT_EQ(HexOrDash(""), "-");
  EXPECT_EQ(OrDash("x"), "x");
  EXPECT_EQ(OrDash(""), "-");
}

TEST(FormatTimestampTest, PrintsUtcWithFractionsOnlyWhenPresent) {
  EXPECT_EQ(FormatTimestamp(Ts(1751328000)), "2025-07-01T00:00:00Z");
  EXPECT_EQ(FormatTimestamp(Ts(1751328000, 250000000)), "2025-07-01T00:00:00.25Z");
  EXPECT_EQ(FormatTimestamp(Ts(0)), "-");
}

}  // namespace
}  // namespace pml::pmlctl
