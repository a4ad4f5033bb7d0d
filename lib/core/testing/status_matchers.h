#pragma once
// GoogleTest matchers for absl::Status / absl::StatusOr (Abseil 20220623 ships none):
//   EXPECT_THAT(s, IsOk());
//   EXPECT_THAT(sor, IsOkAndHolds(Eq(3)));
//   EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("field")));
// Also PML_ASSERT_OK_AND_ASSIGN(lhs, expr) for tests.

#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pml::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s;
  return s.ok();
}

MATCHER_P(IsOkAndHolds, m, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(m, *arg, result_listener);
}

MATCHER_P2(StatusIs, code, msg_matcher,
           std::string("has code ") + absl::StatusCodeToString(code) + " and a matching message") {
  const absl::Status& s = GetStatus(arg);
  if (s.code() != code) {
    *result_listener << "status is " << s;
    return false;
  }
  return ::testing::ExplainMatchResult(msg_matcher, std::string(s.message()), result_listener);
}

}  // namespace pml::testing

#define PML_ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  PML_INTERNAL_TEST_ASSIGN(PML_INTERNAL_TCONCAT(pml_tsor_, __LINE__), lhs, rexpr)
#define PML_INTERNAL_TCONCAT_IMPL(a, b) a##b
#define PML_INTERNAL_TCONCAT(a, b) PML_INTERNAL_TCONCAT_IMPL(a, b)
#define PML_INTERNAL_TEST_ASSIGN(var, lhs, rexpr)      \
  auto var = (rexpr);                                 \
  ASSERT_TRUE(var.ok()) << var.status();              \
  lhs = std::move(var).value()
