#include "lib/tdx/tcb_info.h"

#include <nlohmann/json.hpp>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/tdx/collateral.h"
#include "lib/tdx/errors.h"
#include "lib/tdx/testing/vectors.h"

namespace pml::tdx {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::IsOkAndHolds;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
using Json = nlohmann::json;
namespace tv = ::pml::tdx::testing;

std::string Iso(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

class TcbInfoVectorTest : public ::testing::TestWithParam<std::string> {};

// expected.json records the header fields of each vector's TCB info and QE identity.
TEST_P(TcbInfoVectorTest, ModelMatchesExpectedHeaderFields) {
  const Json expected = tv::ReadExpected(GetParam());
  if (!expected.contains("tcb_info")) return;
  auto c = LoadCollateralJsonFile(tv::VectorDir(GetParam()) + "/collateral.json");
  ASSERT_THAT(c, IsOk());

  PML_ASSERT_OK_AND_ASSIGN(TcbInfo info, ParseTcbInfo(c->tcb_info_body));
  const Json& t = expected["tcb_info"];
  EXPECT_EQ(info.id, t.at("id").get<std::string>());
  EXPECT_EQ(info.version, t.at("version").get<int>());
  EXPECT_EQ(Iso(info.issue_date), t.at("issueDate").get<std::string>());
  EXPECT_EQ(Iso(info.next_update), t.at("nextUpdate").get<std::string>());
  EXPECT_EQ(core::HexEncode(info.fmspc), absl::AsciiStrToLower(t.at("fmspc").get<std::string>()));
  EXPECT_EQ(core::HexEncode(info.pce_id), absl::AsciiStrToLower(t.at("pceId").get<std::string>()));
  EXPECT_EQ(info.tcb_type, t.at("tcbType").get<int>());
  EXPECT_EQ(info.tcb_evaluation_data_number, t.at("tcbEvaluationDataNumber").get<int64_t>());
  EXPECT_FALSE(info.tcb_levels.empty());
  if (info.is_tdx()) {
    EXPECT_TRUE(info.tdx_module.has_value());
    for (const TcbLevel& l : info.tcb_levels) EXPECT_TRUE(l.tdx_components.has_value());
  }

  PML_ASSERT_OK_AND_ASSIGN(QeIdentity qe, ParseQeIdentity(c->qe_identity_body));
  const Json& q = expected["qe_identity"];
  EXPECT_EQ(qe.id, q.at("id").get<std::string>());
  EXPECT_EQ(qe.version, q.at("version").get<int>());
  EXPECT_EQ(Iso(qe.issue_date), q.at("issueDate").get<std::string>());
  EXPECT_EQ(Iso(qe.next_update), q.at("nextUpdate").get<std::string>());
  EXPECT_EQ(qe.tcb_evaluation_data_number, q.at("tcbEvaluationDataNumber").get<int64_t>());
  EXPECT_EQ(qe.isv_prod_id, q.at("isvprodid").get<int>());
  EXPECT_EQ(core::HexEncode(qe.mr_signer),
            absl::AsciiStrToLower(q.at("mrsigner").get<std::string>()));
  EXPECT_FALSE(qe.tcb_levels.empty());
}

INSTANTIATE_TEST_SUITE_P(Shared, TcbInfoVectorTest, ::testing::ValuesIn(tv::ListVectorDirs()),
                         tv::NameFromDir);

constexpr char kMinimalTdx[] = R"({"id":"TDX","version":3,"issueDate":"2025-06-19T10:16:03Z",
"nextUpdate":"2025-07-19T10:16:03Z","fmspc":"B0C06F000000","pceId":"0000","tcbType":0,
"tcbEvaluationDataNumber":17,
"tdxModule":{"mrsigner":"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000","attributes":"0000000000000000","attributesMask":"FFFFFFFFFFFFFFFF"},
"tdxModuleIdentities":[{"id":"TDX_01","mrsigner":"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000","attributes":"0000000000000000","attributesMask":"FFFFFFFFFFFFFFFF","tcbLevels":[{"tcb":{"isvsvn":4},"tcbDate":"2024-03-13T00:00:00Z","tcbStatus":"UpToDate"},{"tcb":{"isvsvn":2},"tcbDate":"2023-08-09T00:00:00Z","tcbStatus":"OutOfDate","advisoryIDs":["INTEL-SA-00960"]}]}],
"tcbLevels":[{"tcb":{"sgxtcbcomponents":[{"svn":2},{"svn":2},{"svn":2},{"svn":2},{"svn":3},{"svn":1},{"svn":0},{"svn":3},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0}],"pcesvn":11,
"tdxtcbcomponents":[{"svn":5},{"svn":0},{"svn":7},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0},{"svn":0}]},
"tcbDate":"2024-03-13T00:00:00Z","tcbStatus":"UpToDate"}]})";

TEST(ParseTcbInfoTest, ParsesLevelsAndModuleIdentities) {
  PML_ASSERT_OK_AND_ASSIGN(TcbInfo info, ParseTcbInfo(kMinimalTdx));
  EXPECT_TRUE(info.is_tdx());
  ASSERT_EQ(info.tcb_levels.size(), 1u);
  const TcbLevel& l = info.tcb_levels[0];
  EXPECT_EQ(l.sgx_components[4], 3);
  EXPECT_EQ(l.pce_svn, 11);
  ASSERT_TRUE(l.tdx_components.has_value());
  EXPECT_EQ((*l.tdx_components)[0], 5);
  EXPECT_EQ((*l.tdx_components)[2], 7);
  EXPECT_EQ(l.status, TcbStatus::kUpToDate);
  EXPECT_EQ(l.tcb_date_text, "2024-03-13T00:00:00Z");
  ASSERT_EQ(info.tdx_module_identities.size(), 1u);
  const TdxModuleIdentity& m = info.tdx_module_identities[0];
  EXPECT_EQ(m.id, "TDX_01");
  ASSERT_EQ(m.tcb_levels.size(), 2u);
  EXPECT_EQ(m.tcb_levels[1].isv_svn, 2);
  EXPECT_EQ(m.tcb_levels[1].status, TcbStatus::kOutOfDate);
  EXPECT_THAT(m.tcb_levels[1].advisory_ids, ::testing::ElementsAre("INTEL-SA-00960"));
  EXPECT_EQ(m.module.attributes_mask[0], 0xff);
}

TEST(ParseTcbInfoTest, ParsesSgxVersion2Layout) {
  std::string v2 = R"({"version":2,"issueDate":"2020-01-01T00:00:00Z","nextUpdate":"2020-02-01T00:00:00Z",
"fmspc":"00906ea10000","pceId":"0000","tcbType":0,"tcbEvaluationDataNumber":5,"tcbLevels":[{"tcb":{)";
  for (int i = 1; i <= 16; ++i) v2 += "\"sgxtcbcomp" + std::string(i < 10 ? "0" : "") + std::to_string(i) + "svn\":" + std::to_string(i) + ",";
  v2 += R"("pcesvn":10},"tcbDate":"2019-11-13T00:00:00Z","tcbStatus":"SWHardeningNeeded"}]})";
  PML_ASSERT_OK_AND_ASSIGN(TcbInfo info, ParseTcbInfo(v2));
  EXPECT_EQ(info.id, "SGX");
  EXPECT_EQ(info.version, 2);
  EXPECT_EQ(info.tcb_levels[0].sgx_components[15], 16);
  EXPECT_EQ(info.tcb_levels[0].status, TcbStatus::kSWHardeningNeeded);
  EXPECT_FALSE(info.tcb_levels[0].tdx_components.has_value());
}

TEST(ParseTcbInfoTest, RejectsMalformedBodies) {
  const std::string base = kMinimalTdx;
  struct Case {
    const char* name;
    std::string body;
    const char* want;
  };
  const Case cases[] = {
      {"not json", "{", "not valid json"},
      {"array", "[]", "not a json object"},
      {"unknown status", absl::StrReplaceAll(base, {{"\"tcbStatus\":\"UpToDate\"}]}", "\"tcbStatus\":\"Great\"}]}"}}),
       "TCB_UNRECOGNIZED_STATUS"},
      {"short fmspc", absl::StrReplaceAll(base, {{"B0C06F000000", "B0C06F"}}), "fmspc"},
      {"bad hex", absl::StrReplaceAll(base, {{"B0C06F000000", "B0C06F00000Z"}}), "fmspc"},
      {"version 4", absl::StrReplaceAll(base, {{"\"version\":3", "\"version\":4"}}), "version 4"},
      {"bad id", absl::StrReplaceAll(base, {{"\"id\":\"TDX\"", "\"id\":\"SEV\""}}), "SEV"},
      {"bad date", absl::StrReplaceAll(base, {{"2025-06-19T10:16:03Z", "2025-13-19T10:16:03Z"}}),
       "ISO 8601"},
      {"svn out of range", absl::StrReplaceAll(base, {{"{\"svn\":5}", "{\"svn\":256}"}}), "svn"},
      {"svn is a string", absl::StrReplaceAll(base, {{"{\"svn\":5}", "{\"svn\":\"5\"}"}}),
       "not an integer"},
      {"module level status", absl::StrReplaceAll(base, {{"\"tcbStatus\":\"OutOfDate\"", "\"tcbStatus\":\"ConfigurationNeeded\""}}),
       "not allowed"},
      {"missing tdxModule",
       absl::StrReplaceAll(base, {{"\"tdxModule\":", "\"tdxModuleX\":"}}), "tdxModule"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = ParseTcbInfo(c.body);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.want));
    EXPECT_FALSE(ErrorClass(r.status()).empty()) << r.status();
  }
}

TEST(ParseTcbInfoTest, RejectsWrongComponentCount) {
  const std::string body = absl::StrReplaceAll(
      kMinimalTdx, {{"\"tdxtcbcomponents\":[{\"svn\":5},", "\"tdxtcbcomponents\":["}});
  EXPECT_THAT(ParseTcbInfo(body),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("15 entries, want 16")));
}

TEST(ParseQeIdentityTest, DecodesMiscselectBigEndian) {
  const std::string body = R"({"id":"TD_QE","version":2,"issueDate":"2025-06-19T10:32:27Z",
"nextUpdate":"2025-07-19T10:32:27Z","tcbEvaluationDataNumber":17,"miscselect":"01020304",
"miscselectMask":"FFFFFFFF","attributes":"11000000000000000000000000000000",
"attributesMask":"FBFFFFFFFFFFFFFF0000000000000000",
"mrsigner":"DC9E2A7C6F948F17474E34A7FC43ED030F7C1563F1BABDDF6340C82E0E54A8C5","isvprodid":2,
"tcbLevels":[{"tcb":{"isvsvn":4},"tcbDate":"2024-03-13T00:00:00Z","tcbStatus":"UpToDate"}]})";
  PML_ASSERT_OK_AND_ASSIGN(QeIdentity qe, ParseQeIdentity(body));
  EXPECT_EQ(qe.misc_select, 0x01020304u);
  EXPECT_EQ(qe.misc_select_mask, 0xffffffffu);
  EXPECT_EQ(qe.attributes[0], 0x11);
  EXPECT_EQ(qe.attributes_mask[0], 0xfb);
  EXPECT_EQ(qe.isv_prod_id, 2);
  EXPECT_EQ(qe.tcb_levels[0].isv_svn, 4);
  EXPECT_THAT(ParseQeIdentity(absl::StrReplaceAll(body, {{"\"version\":2", "\"version\":1"}})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("SGX_ENCLAVE_IDENTITY_UNSUPPORTED_FORMAT")));
  EXPECT_THAT(ParseQeIdentity(absl::StrReplaceAll(body, {{"\"isvprodid\":2,", ""}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("isvprodid")));
}

TEST(TcbStatusTest, NamesRoundTrip) {
  for (TcbStatus s : {TcbStatus::kUpToDate, TcbStatus::kSWHardeningNeeded,
                      TcbStatus::kConfigurationNeeded,
                      TcbStatus::kConfigurationAndSWHardeningNeeded, TcbStatus::kOutOfDate,
                      TcbStatus::kOutOfDateConfigurationNeeded, TcbStatus::kRevoked}) {
    EXPECT_THAT(ParseTcbStatus(TcbStatusName(s)), IsOkAndHolds(s));
  }
  EXPECT_EQ(TcbStatusName(TcbStatus::kTDRelaunchAdvised), "TDRelaunchAdvised");
  EXPECT_FALSE(ParseTcbStatus("TDRelaunchAdvised").ok());  // a result, never in collateral
}

TEST(ParseIntelTimeTest, AcceptsIntelFormsOnly) {
  EXPECT_THAT(ParseIntelTime("2025-06-19T10:16:03Z"), IsOkAndHolds(absl::FromUnixSeconds(1750328163)));
  EXPECT_THAT(ParseIntelTime("2025-06-19T10:16:03.123Z"), IsOk());
  EXPECT_THAT(ParseIntelTime("2025-06-19T10:16:03+00:00"), IsOk());
  EXPECT_FALSE(ParseIntelTime("2025-06-19T10:16:03+01:00").ok());
  EXPECT_FALSE(ParseIntelTime("2025-02-30T10:16:03Z").ok());
  EXPECT_FALSE(ParseIntelTime("2025-06-19 10:16:03Z").ok());
  EXPECT_FALSE(ParseIntelTime("").ok());
}

}  // namespace
}  // namespace pml::tdx
