#include "tools/pmlctl/verify_cmd.h"

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/tdx/errors.h"
#include "lib/tdx/testing/vectors.h"
#include "lib/tee/simulator.h"

namespace pml::pmlctl {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
using Json = nlohmann::json;
namespace tv = ::pml::tdx::testing;

struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};

RunResult Verify(const VerifyQuoteOptions& o) {
  std::ostringstream out, err;
  RunResult r;
  r.code = RunVerifyQuote(o, out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

bool ClassMatches(const std::string& got, const Json& expected) {
  const std::string text = expected.at("error_class").get<std::string>();
  const absl::Status s = absl::FailedPreconditionError(absl::StrCat(got, ": x"));
  for (absl::string_view alt : absl::StrSplit(text.substr(0, text.find(" (")), " / ")) {
    if (tdx::MatchesErrorClass(s, absl::StripAsciiWhitespace(alt))) {
      return true;
    }
  }
  return false;
}

class VerifyQuoteVectorTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    expected_ = tv::ReadExpected(GetParam());
    ASSERT_TRUE(expected_.is_object());
    options_.quote_path = tv::VectorDir(GetParam()) + "/quote.bin";
    options_.collateral_path = tv::VectorDir(GetParam()) + "/collateral.json";
    options_.at = std::to_string(expected_.at("verify_at_unix").get<int64_t>());
    options_.json = true;
  }
  void ExpectVerdict(const RunResult& r) {
    const Json& want = expected_["expected"];
    ASSERT_EQ(r.err, "");
    const Json got = Json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(got.is_object()) << r.out;
    if (want.value("ok", false)) {
      EXPECT_EQ(r.code, kVerifyExitVerified) << r.out;
      EXPECT_TRUE(got["verified"].get<bool>());
      EXPECT_EQ(got.value("tcb_status", ""), want.at("status").get<std::string>());
      std::vector<std::string> ids = got.value("advisory_ids", std::vector<std::string>{});
      std::vector<std::string> wids = want.at("advisory_ids").get<std::vector<std::string>>();
      std::sort(ids.begin(), ids.end());
      std::sort(wids.begin(), wids.end());
      EXPECT_EQ(ids, wids);
    } else {
      EXPECT_EQ(r.code, kVerifyExitRejected) << r.out;
      EXPECT_FALSE(got["verified"].get<bool>());
      EXPECT_TRUE(ClassMatches(got["error_class"].get<std::string>(), want))
          << got["error_class"] << " vs " << want;
    }
  }

  Json expected_;
  VerifyQuoteOptions options_;
};

TEST_P(VerifyQuoteVectorTest, GivesExpectedVerdictAndExitCode) { ExpectVerdict(Verify(options_)); }

TEST_P(VerifyQuoteVectorTest, ReadsHexQuotesAndPcsSplitCollateralDirs) {
  options_.quote_path = tv::VectorDir(GetParam()) + "/quote.hex";
  ExpectVerdict(Verify(options_));
  if (core::PathExists(tv::VectorDir(GetParam()) + "/collateral/tcb_info.json")) {
    options_.quote_path = tv::VectorDir(GetParam()) + "/quote.bin";
    options_.collateral_path = tv::VectorDir(GetParam()) + "/collateral";
    ExpectVerdict(Verify(options_));
  }
}

INSTANTIATE_TEST_SUITE_P(Shared, VerifyQuoteVectorTest, ::testing::ValuesIn(tv::ListVectorDirs()),
                         tv::NameFromDir);

TEST(VerifyQuoteTest, TextVerdictNamesStatusFmspcAndCollateralWindow) {
  const std::string v = "tdx-v4-phala-b0c06f";
  const Json expected = tv::ReadExpected(v);
  VerifyQuoteOptions o;
  o.quote_path = tv::VectorDir(v) + "/quote.bin";
  o.collateral_path = tv::VectorDir(v) + "/collateral.json";
  o.at = expected.at("verify_at").get<std::string>();  // the RFC 3339 form
  const RunResult r = Verify(o);
  EXPECT_EQ(r.code, kVerifyExitVerified) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("VERIFIED  tcb_status=" +
                               expected["expected"].at("status").get<std::string>()));
  EXPECT_THAT(r.out, HasSubstr(expected["tcb_info"].at("fmspc").get<std::string>()));
  EXPECT_THAT(r.out, HasSubstr(expected["collateral_window"].at("end_set_by").get<std::string>()));
  EXPECT_THAT(r.out, HasSubstr("mrtd:"));
  EXPECT_THAT(r.out, HasSubstr("rtmr3:"));
}

TEST(VerifyQuoteTest, ExpiredCollateralIsRejectedButStillShowsTheTcbStatus) {
  const std::string v = "tdx-v4-phala-b0c06f";
  const Json expected = tv::ReadExpected(v);
  VerifyQuoteOptions o;
  o.quote_path = tv::VectorDir(v) + "/quote.bin";
  o.collateral_path = tv::VectorDir(v) + "/collateral.json";
  o.at = std::to_string(expected["time_cases"][0].at("verify_at_unix").get<int64_t>());
  const RunResult r = Verify(o);
  EXPECT_EQ(r.code, kVerifyExitRejected);
  EXPECT_THAT(r.out, HasSubstr("REJECTED  error_class="));
  EXPECT_THAT(r.out, HasSubstr("evaluated despite the collateral time"));
}

TEST(VerifyQuoteTest, UsageAndIoErrorsExitTwo) {
  const std::string v = tv::VectorDir("tdx-v4-phala-b0c06f");
  struct Case {
    const char* name;
    VerifyQuoteOptions o;
    const char* message;
  };
  std::vector<Case> cases;
  cases.push_back({"no file", {}, "FILE"});
  VerifyQuoteOptions base;
  base.quote_path = v + "/quote.bin";
  base.collateral_path = v + "/collateral.json";
  {
    Case c{"no collateral", base, "--collateral is required"};
    c.o.collateral_path.clear();
    cases.push_back(c);
  }
  {
    Case c{"missing quote file", base, "no-such-quote"};
    c.o.quote_path = v + "/no-such-quote";
    cases.push_back(c);
  }
  {
    Case c{"bad time", base, "--at"};
    c.o.at = "yesterday";
    cases.push_back(c);
  }
  {
    Case c{"collateral not json", base, "--collateral"};
    c.o.collateral_path = v + "/quote.hex";
    cases.push_back(c);
  }
  {
    Case c{"extra argument", base, "unexpected argument --frobnicate"};
    c.o.extras = {"--frobnicate"};
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const RunResult r = Verify(c.o);
    EXPECT_EQ(r.code, kVerifyExitUsage);
    EXPECT_THAT(r.err, HasSubstr(c.message));
    EXPECT_EQ(r.out, "");
  }
}

TEST(ParseVerifyTimeTest, AcceptsRfc3339AndUnixSeconds) {
  EXPECT_THAT(ParseVerifyTime("1751328000"),
              ::pml::testing::IsOkAndHolds(absl::FromUnixSeconds(1751328000)));
  EXPECT_THAT(ParseVerifyTime("2025-07-01T02:00:00+02:00"),
              ::pml::testing::IsOkAndHolds(absl::FromUnixSeconds(1751328000)));
  EXPECT_THAT(ParseVerifyTime("July"), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

// Simulated quotes: verified only with --trust-simulated-tee, and then marked.
class VerifyQuoteSimulatedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pml-vq-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    PML_ASSERT_OK_AND_ASSIGN(auto sim, tee::TdxSimulator::Create(tee::SimulatorOptions{}));
    PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> q, sim->GetQuote(std::vector<uint8_t>(64, 7)));
    PML_ASSERT_OK_AND_ASSIGN(auto c, sim->Collateral(absl::Now()));
    ASSERT_THAT(core::WriteFileAtomic(dir_ + "/quote.bin", std::string(q.begin(), q.end())),
                IsOk());
    ASSERT_THAT(core::WriteFileAtomic(dir_ + "/collateral.json", c.ToJson()), IsOk());
    options_.quote_path = dir_ + "/quote.bin";
    options_.collateral_path = dir_ + "/collateral.json";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string dir_;
  VerifyQuoteOptions options_;
};

TEST_F(VerifyQuoteSimulatedTest, VerifiesAndSaysSimulatedWhenTrusted) {
  options_.trust_simulated_tee = true;
  const RunResult r = Verify(options_);
  EXPECT_EQ(r.code, kVerifyExitVerified) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("SIMULATED"));
}

TEST_F(VerifyQuoteSimulatedTest, RejectsAsUntrustedWithoutTheFlag) {
  const RunResult r = Verify(options_);
  EXPECT_EQ(r.code, kVerifyExitRejected) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(std::string(tdx::error_class::kPckCertChainUntrusted)));
}

}  // namespace
}  // namespace pml::pmlctl
