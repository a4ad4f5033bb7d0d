#include "services/attestation/policy.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"

namespace pml::attestation {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

template <size_t N>
std::array<uint8_t, N> Filled(uint8_t value) {
  std::array<uint8_t, N> a;
  a.fill(value);
  return a;
}

// `n` bytes of `value` as hex (lower case).
std::string HexOf(size_t n, uint8_t value) {
  return core::HexEncode(std::vector<uint8_t>(n, value));
}

// Distinct 32-byte hashes, as hex.
std::string HashHex(size_t i) { return core::HexEncode(crypto::Sha256(absl::StrCat("hash-", i))); }

AppraisalPolicy FullPolicy() {
  AppraisalPolicy p;
  OsMeasurements all;
  all.mrtd = Filled<48>(0x01);
  all.rtmr0 = Filled<48>(0x02);
  all.rtmr1 = Filled<48>(0x03);
  all.rtmr2 = Filled<48>(0x04);
  OsMeasurements only_mrtd;
  only_mrtd.mrtd = Filled<48>(0xAB);
  p.allowed_os = {all, only_mrtd};
  p.allowed_os_image_hashes = {Filled<32>(0x05)};
  p.allowed_compose_hashes = {Filled<32>(0x06), Filled<32>(0x07)};
  p.allowed_app_ids = {Filled<20>(0x08)};
  p.allowed_tcb_statuses = {"UpToDate", "SWHardeningNeeded", "OutOfDate"};
  p.allowed_advisory_ids = {"INTEL-SA-00837", "INTEL-SA-00615"};
  p.allow_debug = true;
  p.allow_simulated = true;
  p.allow_expired_collateral = true;
  p.allowed_image_variants = {"production", "development"};
  p.gpu.count = 8;
  p.gpu.min_count = 1;
  p.gpu.require_cc = false;
  p.gpu.allow_devtools = true;
  p.gpu.require_measurements_match = false;
  p.gpu.allowed_driver_versions = {"550.54.15", "535.129.03"};
  p.gpu.allowed_vbios_versions = {"96.00.5E.00.01"};
  p.description = "H100 fleet, \"prod\"\n\xc3\xa9t\xc3\xa9 \\ tab\t";
  return p;
}

TEST(PolicyJsonTest, MissingFieldsTakeTheStrictDefaults) {
  absl::StatusOr<AppraisalPolicy> p =
      ParsePolicyJson(absl::StrCat(R"({"allowed_os_image_hashes": [")", HexOf(32, 1), R"("]})"));
  ASSERT_THAT(p, IsOk());
  EXPECT_FALSE(p->allow_any_os);
  EXPECT_TRUE(p->allowed_os.empty());
  EXPECT_TRUE(p->allowed_compose_hashes.empty());
  EXPECT_TRUE(p->allowed_app_ids.empty());
  EXPECT_FALSE(p->allow_any_app);
  EXPECT_THAT(p->allowed_tcb_statuses, ElementsAre("UpToDate"));
  EXPECT_TRUE(p->allowed_advisory_ids.empty());
  EXPECT_FALSE(p->allow_debug);
  EXPECT_FALSE(p->allow_simulated);
  EXPECT_FALSE(p->allow_expired_collateral);
  EXPECT_THAT(p->allowed_image_variants, ElementsAre("production"));
  EXPECT_FALSE(p->gpu.count.has_value());
  EXPECT_EQ(p->gpu.min_count, 0u);
  EXPECT_TRUE(p->gpu.require_cc);
  EXPECT_FALSE(p->gpu.allow_devtools);
  EXPECT_TRUE(p->gpu.require_measurements_match);
  EXPECT_TRUE(p->gpu.allowed_driver_versions.empty());
  EXPECT_TRUE(p->gpu.allowed_vbios_versions.empty());
  EXPECT_EQ(p->description, "");
}

TEST(PolicyJsonTest, FullPolicyRoundTripsThroughCanonicalJson) {
  const AppraisalPolicy p = FullPolicy();
  ASSERT_THAT(ValidatePolicy(p), IsOk());
  const std::string json = PolicyToJson(p);
  absl::StatusOr<AppraisalPolicy> back = ParsePolicyJson(json);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(*back, p);
  EXPECT_EQ(PolicyToJson(*back), json);
}

TEST(PolicyJsonTest, CanonicalFormIsSortedCompactAndLowerCase) {
  // Upper-case hex, shuffled keys and whitespace in; one canonical string out.
  const std::string in =
      absl::StrCat("{ \"gpu\": {\"min_count\": 1},\n  \"allowed_os\": [{\"rtmr1\": \"",
                   absl::AsciiStrToUpper(HexOf(48, 0xab)), "\"}],\n  \"description\": \"d\" }");
  absl::StatusOr<AppraisalPolicy> p = ParsePolicyJson(in);
  ASSERT_THAT(p, IsOk());
  const std::string want = absl::StrCat(
      R"({"allow_any_app":false,"allow_any_os":false,"allow_debug":false,)",
      R"("allow_expired_collateral":false,"allow_simulated":false,"allowed_advisory_ids":[],)",
      R"("allowed_app_ids":[],"allowed_compose_hashes":[],"allowed_image_variants":["production"],)",
      R"("allowed_os":[{"rtmr1":")", HexOf(48, 0xab), R"("}],"allowed_os_image_hashes":[],)",
      R"("allowed_tcb_statuses":["UpToDate"],"description":"d","gpu":{"allow_devtools":false,)",
      R"("allowed_driver_versions":[],"allowed_vbios_versions":[],"min_count":1,)",
      R"("require_cc":true,"require_measurements_match":true},"require_event_log":true})");
  EXPECT_EQ(PolicyToJson(*p), want);
}

TEST(PolicyJsonTest, GpuCountIsWrittenOnlyWhenSet) {
  AppraisalPolicy p = FullPolicy();
  p.gpu.count.reset();
  EXPECT_THAT(PolicyToJson(p), Not(HasSubstr("\"count\"")));
  p.gpu.count = 0;
  p.gpu.min_count = 0;
  const std::string json = PolicyToJson(p);
  EXPECT_THAT(json, HasSubstr("\"count\":0"));
  absl::StatusOr<AppraisalPolicy> back = ParsePolicyJson(json);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->gpu.count, std::optional<uint32_t>(0));
}

TEST(PolicyDigestTest, IsSha256OfCanonicalJsonAndIgnoresFormatting) {
  const AppraisalPolicy p = FullPolicy();
  const std::string digest = PolicyDigest(p);
  EXPECT_EQ(digest, core::HexEncode(crypto::Sha256(PolicyToJson(p))));
  EXPECT_EQ(digest.size(), 64u);
  EXPECT_EQ(digest, absl::AsciiStrToLower(digest));

  absl::StatusOr<AppraisalPolicy> a = ParsePolicyJson(
      absl::StrCat(R"({"allow_any_os":true,"allowed_app_ids":[")", HexOf(20, 0xcd), R"("]})"));
  absl::StatusOr<AppraisalPolicy> b = ParsePolicyJson(
      absl::StrCat(R"({ "allowed_app_ids" : [ ")", absl::AsciiStrToUpper(HexOf(20, 0xcd)),
                   R"(" ], "allow_any_os" : true, "allowed_tcb_statuses": ["UpToDate"] })"));
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(PolicyDigest(*a), PolicyDigest(*b));

  AppraisalPolicy changed = p;
  changed.allow_debug = !changed.allow_debug;
  EXPECT_NE(PolicyDigest(changed), digest);
}

struct BadPolicyCase {
  const char* name;
  std::string json;
  std::string want_message;  // the whole expected prefix: path and problem
};

std::vector<BadPolicyCase> BadPolicyCases() {
  const std::string any_os = R"("allow_any_os": true)";
  const std::string h = HashHex(0);
  const auto with = [&](const std::string& fields) { return "{" + any_os + ", " + fields + "}"; };
  return {
      {"UnknownRootField", with(R"("allow_anything": true)"),
       "policy.allow_anything: unknown field"},
      {"UnknownGpuField", with(R"("gpu": {"cont": 2})"), "policy.gpu.cont: unknown field"},
      {"UnknownOsField", absl::StrCat(R"({"allowed_os": [{"rtmr3": ")", HexOf(48, 1), R"("}]})"),
       "policy.allowed_os[0].rtmr3: unknown field"},
      {"OddKeyIsQuoted", with(R"("a b\n": 1)"), R"(policy["a b\n"]: unknown field)"},
      {"RootNotObject", "[]", "policy: want an object"},
      {"GpuNotObject", with(R"("gpu": [])"), "policy.gpu: want an object"},
      {"BoolAsString", with(R"("allow_debug": "yes")"), "policy.allow_debug: want true or false"},
      {"BoolAsNull", with(R"("allow_simulated": null)"),
       "policy.allow_simulated: want true or false"},
      {"ListAsString", with(R"("allowed_compose_hashes": "ab")"),
       "policy.allowed_compose_hashes: want a list"},
      {"HashTooShort",
       with(absl::StrCat(R"("allowed_compose_hashes": [")", HashHex(0), R"(", ")", HashHex(1),
                         R"(", "abcd"])")),
       "policy.allowed_compose_hashes[2]: want 64 hex digits"},
      {"HashNotHex",
       with(absl::StrCat(R"("allowed_compose_hashes": [")", std::string(64, 'g'), R"("])")),
       "policy.allowed_compose_hashes[0]: want 64 hex digits"},
      {"HashWith0xPrefix",
       with(absl::StrCat(R"("allowed_os_image_hashes": ["0x)", h.substr(2), R"("])")),
       "policy.allowed_os_image_hashes[0]: want 64 hex digits"},
      {"HashAsNumber", with(R"("allowed_compose_hashes": [12])"),
       "policy.allowed_compose_hashes[0]: want 64 hex digits"},
      {"AppIdWrongLength", with(absl::StrCat(R"("allowed_app_ids": [")", h, R"("])")),
       "policy.allowed_app_ids[0]: want 40 hex digits"},
      {"MrtdWrongLength", absl::StrCat(R"({"allowed_os": [{"mrtd": ")", h, R"("}]})"),
       "policy.allowed_os[0].mrtd: want 96 hex digits"},
      {"EmptyOsEntry", absl::StrCat(R"({"allowed_os": [{}]})"),
       "policy.allowed_os[0]: want at least one of mrtd, rtmr0, rtmr1, rtmr2"},
      {"NoOsStated", "{}", "policy.allowed_os: want at least one entry"},
      {"NoOsStatedWithAnyOsFalse", R"({"allow_any_os": false, "allowed_os": []})",
       "policy.allowed_os: want at least one entry"},
      {"AnyOsWithEntries",
       absl::StrCat(R"({"allow_any_os": true, "allowed_os_image_hashes": [")", h, R"("]})"),
       "policy.allow_any_os: true while"},
      {"AnyAppWithEntries",
       with(absl::StrCat(R"("allow_any_app": true, "allowed_compose_hashes": [")", h, R"("])")),
       "policy.allow_any_app: true while"},
      {"UnknownTcbStatus", with(R"("allowed_tcb_statuses": ["UpToDate", "Fine"])"),
       R"(policy.allowed_tcb_statuses[1]: unknown TCB status "Fine")"},
      {"TcbStatusIsCaseSensitive", with(R"("allowed_tcb_statuses": ["uptodate"])"),
       "policy.allowed_tcb_statuses[0]: unknown TCB status"},
      {"RevokedNeverAllowed", with(R"("allowed_tcb_statuses": ["UpToDate", "Revoked"])"),
       "policy.allowed_tcb_statuses[1]: Revoked may never be allowed"},
      {"NoTcbStatus", with(R"("allowed_tcb_statuses": [])"),
       "policy.allowed_tcb_statuses: want at least one status"},
      {"DuplicateTcbStatus", with(R"("allowed_tcb_statuses": ["OutOfDate", "OutOfDate"])"),
       "policy.allowed_tcb_statuses[1]: duplicate of [0]"},
      {"DuplicateHashAcrossCase",
       with(absl::StrCat(R"("allowed_compose_hashes": [")", HashHex(5), R"(", ")", HashHex(6),
                         R"(", ")", absl::AsciiStrToUpper(HashHex(5)), R"("])")),
       "policy.allowed_compose_hashes[2]: duplicate of [0]"},
      {"DuplicateOsEntry",
       absl::StrCat(R"({"allowed_os": [{"mrtd": ")", HexOf(48, 1), R"("}, {"mrtd": ")",
                    HexOf(48, 1), R"("}]})"),
       "policy.allowed_os[1]: duplicate of [0]"},
      {"BadAdvisoryId", with(R"("allowed_advisory_ids": ["intel-sa-00837"])"),
       R"(policy.allowed_advisory_ids[0]: want an advisory id like INTEL-SA-00837, got "intel-sa-00837")"},
      {"AdvisoryIdWithEmptyGroup", with(R"("allowed_advisory_ids": ["INTEL--00837"])"),
       "policy.allowed_advisory_ids[0]: want an advisory id"},
      {"UnknownImageVariant", with(R"("allowed_image_variants": ["staging"])"),
       R"(policy.allowed_image_variants[0]: want "production" or "development", got "staging")"},
      {"NoImageVariant", with(R"("allowed_image_variants": [])"),
       "policy.allowed_image_variants: want at least one variant"},
      {"NegativeGpuCount", with(R"("gpu": {"count": -1})"),
       "policy.gpu.count: want a whole number from 0 to 64"},
      {"FractionalGpuCount", with(R"("gpu": {"count": 1.5})"),
       "policy.gpu.count: want a whole number from 0 to 64"},
      {"GpuCountTooLarge", with(R"("gpu": {"min_count": 65})"),
       "policy.gpu.min_count: want a whole number from 0 to 64"},
      {"GpuCountOverflow", with(R"("gpu": {"count": 18446744073709551616})"),
       "policy.gpu.count: want a whole number from 0 to 64"},
      {"GpuCountBelowMin", with(R"("gpu": {"count": 1, "min_count": 2})"),
       "policy.gpu.count: 1 is below min_count 2"},
      {"BadDriverVersion", with(R"("gpu": {"allowed_driver_versions": ["550 54"]})"),
       "policy.gpu.allowed_driver_versions[0]: want a version"},
      {"DuplicateVbiosVersion", with(R"("gpu": {"allowed_vbios_versions": ["1.0", "1.0"]})"),
       "policy.gpu.allowed_vbios_versions[1]: duplicate of [0]"},
      {"DescriptionTooLong",
       with(absl::StrCat(R"("description": ")", std::string(1025, 'd'), "\"")),
       "policy.description: 1025 bytes, over the 1024 byte limit"},
      {"DescriptionWithEscape", with(R"("description": "red \u001b[31m")"),
       "policy.description: control character at byte 4"},
      {"DescriptionWithC1Control", with(R"("description": "a\u0085")"),
       "policy.description: control character at byte 1"},
      {"DescriptionNull", with(R"("description": null)"), "policy.description: want a string"},
      {"MalformedJson", R"({"allow_any_os": tru})", "policy: malformed JSON at byte"},
      {"TrailingGarbage", R"({"allow_any_os": true} x)", "policy: malformed JSON at byte"},
      {"CommentsRefused", R"({"allow_any_os": true /* c */})", "policy: malformed JSON at byte"},
      {"InvalidUtf8", "{\"allow_any_os\": true, \"description\": \"\xff\"}",
       "policy: malformed JSON at byte"},
      {"Empty", "", "policy: malformed JSON at byte"},
      {"DuplicateKey", R"({"allow_any_os": true, "allow_debug": true, "allow_debug": false})",
       R"(policy: duplicate key "allow_debug")"},
      {"DuplicateNestedKey", with(R"("gpu": {"min_count": 1, "min_count": 1})"),
       R"(policy: duplicate key "min_count")"},
      {"TooDeep", with(R"("description": [[[[[[[[[[[["x"]]]]]]]]]]]])"),
       "policy: nested deeper than 8"},
  };
}

TEST(PolicyJsonTest, RefusesBadPoliciesNamingThePath) {
  for (const BadPolicyCase& c : BadPolicyCases()) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ParsePolicyJson(c.json),
                StatusIs(absl::StatusCode::kInvalidArgument, StartsWith(c.want_message)));
  }
}

TEST(PolicyJsonTest, SameKeyInSiblingObjectsIsNotADuplicate) {
  const std::string json =
      absl::StrCat(R"({"allowed_os": [{"mrtd": ")", HexOf(48, 1), R"("}, {"mrtd": ")", HexOf(48, 2),
                   R"("}],)", R"("gpu": {"min_count": 1}, "description": "x"})");
  EXPECT_THAT(ParsePolicyJson(json), IsOk());
}

TEST(PolicyJsonTest, MalformedJsonMessageDoesNotEchoTheInput) {
  EXPECT_THAT(ParsePolicyJson(R"({"description": "secret-value" "allow_any_os": true})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("byte"), Not(HasSubstr("secret-value")))));
}

TEST(PolicyJsonTest, RefusesDocumentsOverOneMebibyte) {
  std::string json = R"({"allow_any_os": true})";
  json.append(kMaxPolicyJsonBytes + 1 - json.size(), ' ');
  EXPECT_THAT(ParsePolicyJson(json),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "policy: document is 1048577 bytes, over the 1048576 byte limit"));
  json.pop_back();
  EXPECT_THAT(ParsePolicyJson(json), IsOk());
}

std::string ComposeHashesJson(size_t n) {
  std::vector<std::string> hashes;
  hashes.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    hashes.push_back(absl::StrCat("\"", HashHex(i), "\""));
  }
  return absl::StrCat(R"({"allow_any_os": true, "allowed_compose_hashes": [)",
                      absl::StrJoin(hashes, ","), "]}");
}

TEST(PolicyJsonTest, AcceptsListsOfUpTo4096Entries) {
  absl::StatusOr<AppraisalPolicy> p = ParsePolicyJson(ComposeHashesJson(kMaxPolicyListEntries));
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->allowed_compose_hashes.size(), kMaxPolicyListEntries);
}

TEST(PolicyJsonTest, RefusesListsOverTheLimit) {
  EXPECT_THAT(ParsePolicyJson(ComposeHashesJson(kMaxPolicyListEntries + 1)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "policy.allowed_compose_hashes: 4097 entries, over the 4096 limit"));
}

TEST(ValidatePolicyTest, DefaultPolicyNeedsAnOsStatement) {
  AppraisalPolicy p;
  EXPECT_THAT(ValidatePolicy(p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("policy.allowed_os")));
  p.allow_any_os = true;
  EXPECT_THAT(ValidatePolicy(p), IsOk());
}

TEST(ValidatePolicyTest, ChecksPoliciesBuiltInCode) {
  AppraisalPolicy p = FullPolicy();
  p.allowed_tcb_statuses.push_back("Revoked");
  EXPECT_THAT(ValidatePolicy(p),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "policy.allowed_tcb_statuses[3]: Revoked may never be allowed"));

  p = FullPolicy();
  p.description = "bad \xc3";  // truncated UTF-8 sequence
  EXPECT_THAT(ValidatePolicy(p),
              StatusIs(absl::StatusCode::kInvalidArgument, "policy.description: not valid UTF-8"));

  p = FullPolicy();
  p.description = "overlong \xc0\xaf";
  EXPECT_THAT(ValidatePolicy(p),
              StatusIs(absl::StatusCode::kInvalidArgument, "policy.description: not valid UTF-8"));

  p = FullPolicy();
  p.gpu.count = 65;
  EXPECT_THAT(ValidatePolicy(p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("policy.gpu.count")));

  p = FullPolicy();
  p.allowed_os.push_back(OsMeasurements{});
  EXPECT_THAT(ValidatePolicy(p), StatusIs(absl::StatusCode::kInvalidArgument,
                                          StartsWith("policy.allowed_os[2]: want at least one")));
}

TEST(ValidatePolicyTest, AcceptsEveryIntelTcbStatusButRevoked) {
  AppraisalPolicy p = FullPolicy();
  p.allowed_tcb_statuses = {"UpToDate",
                            "SWHardeningNeeded",
                            "ConfigurationNeeded",
                            "ConfigurationAndSWHardeningNeeded",
                            "OutOfDate",
                            "OutOfDateConfigurationNeeded",
                            "TDRelaunchAdvised",
                            "TDRelaunchAdvisedConfigurationNeeded"};
  EXPECT_THAT(ValidatePolicy(p), IsOk());
}

TEST(PolicyIdTest, AcceptsOnlyTheDocumentedAlphabetAndLength) {
  struct Case {
    std::string id;
    bool valid;
  };
  const Case cases[] = {
      {"a", true},
      {"0", true},
      {"prod-h100.v2_x", true},
      {std::string(63, 'a'), true},
      {std::string(64, 'a'), false},
      {"", false},
      {"-lead", false},
      {".lead", false},
      {"_lead", false},
      {"Upper", false},
      {"sp ace", false},
      {"sl/ash", false},
      {"uni\xc3\xa9", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.id);
    EXPECT_EQ(IsValidPolicyId(c.id), c.valid);
  }
}

}  // namespace
}  // namespace pml::attestation
