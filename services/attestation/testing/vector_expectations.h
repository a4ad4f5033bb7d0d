#pragma once
// Test-only: checks a VerifierCore result against a shared vector's expected.json "expected"
// object (STYLE.md §7: expectations come from the vector, never from code).

#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "lib/tdx/errors.h"
#include "lib/tdx/tcb_info.h"
#include "services/attestation/verifier_core.h"

namespace pml::attestation::testing {

// "SGX_CRL_INVALID_SIGNATURE / INVALID_PCK_CRL" or "COLLATERAL_EXPIRED (pck_crl... passed)":
// the alternatives before any parenthetical.
inline std::vector<std::string> ExpectedClasses(const nlohmann::json& expected) {
  const std::string text = expected.at("error_class").get<std::string>();
  std::vector<std::string> out;
  for (absl::string_view alt : absl::StrSplit(text.substr(0, text.find(" (")), " / ")) {
    out.emplace_back(absl::StripAsciiWhitespace(alt));
  }
  return out;
}

inline bool ClassMatches(absl::string_view cls, const std::vector<std::string>& alternatives) {
  const absl::Status s = absl::FailedPreconditionError(absl::StrCat(cls, ": detail"));
  return std::any_of(alternatives.begin(), alternatives.end(),
                     [&](const std::string& a) { return tdx::MatchesErrorClass(s, a); });
}

inline ::testing::AssertionResult MatchesExpected(const absl::StatusOr<TdxVerification>& r,
                                                  const nlohmann::json& expected) {
  if (expected.value("ok", false)) {
    if (!r.ok())
      return ::testing::AssertionFailure() << "error " << r.status();
    if (!r->verified) {
      return ::testing::AssertionFailure() << "rejected: " << r->error_message;
    }
    const std::string status(tdx::TcbStatusName(r->evaluation->tcb_status()));
    if (status != expected.at("status").get<std::string>()) {
      return ::testing::AssertionFailure() << "status " << status << ", want " << expected;
    }
    std::vector<std::string> want;
    for (const auto& id : expected.at("advisory_ids"))
      want.push_back(id.get<std::string>());
    std::vector<std::string> got = r->evaluation->advisory_ids();
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    if (got != want) {
      return ::testing::AssertionFailure() << "advisories " << absl::StrJoin(got, ",");
    }
    return ::testing::AssertionSuccess();
  }
  const std::vector<std::string> classes = ExpectedClasses(expected);
  if (!r.ok()) {
    // Only unparseable quotes are errors; their class must still match.
    if (!absl::IsInvalidArgument(r.status())) {
      return ::testing::AssertionFailure() << "unexpected error " << r.status();
    }
    const std::string msg(r.status().message());
    for (const std::string& c : classes) {
      if (msg.find(c) != std::string::npos)
        return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "error " << r.status() << ", want " << expected;
  }
  if (r->verified)
    return ::testing::AssertionFailure() << "verified, want " << expected;
  if (!ClassMatches(r->error_class, classes)) {
    return ::testing::AssertionFailure()
           << "class " << r->error_class << " (" << r->error_message << "), want " << expected;
  }
  return ::testing::AssertionSuccess();
}

}  // namespace pml::attestation::testing
