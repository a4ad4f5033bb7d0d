#include "lib/tdx/verify.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/tdx/collateral.h"
#include "lib/tdx/collateral_source.h"
#include "lib/tdx/errors.h"
#include "lib/tdx/quote.h"
#include "lib/tdx/testing/vectors.h"

namespace pml::tdx {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;
using Json = nlohmann::json;
namespace tv = ::pml::tdx::testing;

TrustAnchors VectorAnchors() {
  TrustAnchors anchors;
  absl::Status s = anchors.AddFromFile(tv::IntelRootPubkeyPath(), "Intel SGX Root CA", false);
  EXPECT_THAT(s, IsOk());
  return anchors;
}

// Parse + verify, as a caller would: a parse error is the result.
absl::StatusOr<VerifiedQuote> ParseAndVerify(const std::vector<uint8_t>& bytes,
                                             const Collateral& collateral,
                                             const TrustAnchors& anchors, absl::Time now,
                                             const VerifyOptions& options = {}) {
  auto quote = ParseQuote(bytes);
  if (!quote.ok()) return quote.status();
  return VerifyQuote(*quote, collateral, anchors, now, options);
}

// Checks a result against an expected.json "expected" object. The error class text may list
// alternatives ("A / B") and a parenthetical naming the collateral item; both are honoured.
void ExpectMatches(const absl::StatusOr<VerifiedQuote>& result, const Json& expected) {
  ASSERT_TRUE(expected.is_object());
  if (expected.value("ok", false)) {
    ASSERT_THAT(result, IsOk());
    EXPECT_EQ(TcbStatusName(result->tcb_status()), expected.at("status").get<std::string>());
    std::vector<std::string> want;
    for (const auto& id : expected.at("advisory_ids")) want.push_back(id.get<std::string>());
    EXPECT_THAT(result->advisory_ids(), UnorderedElementsAreArray(want));
    return;
  }
  ASSERT_FALSE(result.ok()) << "verified with status " << TcbStatusName(result->tcb_status());
  const absl::Status& s = result.status();
  EXPECT_TRUE(s.code() == absl::StatusCode::kFailedPrecondition ||
              s.code() == absl::StatusCode::kInvalidArgument)
      << s;
  const std::string text = expected.at("error_class").get<std::string>();
  const size_t paren = text.find(" (");
  const std::string classes = text.substr(0, paren);
  bool matched = false;
  for (absl::string_view alt : absl::StrSplit(classes, " / ")) {
    matched = matched || MatchesErrorClass(s, absl::StripAsciiWhitespace(alt));
  }
  EXPECT_TRUE(matched) << "want " << classes << ", got " << s;
  // "(qe_identity.issueDate)" / "(pck_crl.nextUpdate passed)": the bounding item is named.
  if (paren != std::string::npos && IsCollateralTimeError(s)) {
    std::string item = text.substr(paren + 2);
    item = item.substr(0, item.find_first_of(" )"));
    EXPECT_THAT(std::string(s.message()), HasSubstr(item));
  }
}

class TdxVectorTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    expected_ = tv::ReadExpected(GetParam());
    ASSERT_TRUE(expected_.is_object()) << "no expected.json in " << GetParam();
    quote_ = tv::ReadQuoteBytes(GetParam());
    ASSERT_FALSE(quote_.empty());
    auto c = LoadCollateralJsonFile(tv::VectorDir(GetParam()) + "/collateral.json");
    ASSERT_THAT(c, IsOk());
    collateral_ = *c;
    anchors_ = VectorAnchors();
  }
  absl::Time VerifyAt() const {
    return absl::FromUnixSeconds(expected_.at("verify_at_unix").get<int64_t>());
  }

  Json expected_;
  std::vector<uint8_t> quote_;
  Collateral collateral_;
  TrustAnchors anchors_;
};

TEST_P(TdxVectorTest, GivesExpectedResultAtVerifyTime) {
  ExpectMatches(ParseAndVerify(quote_, collateral_, anchors_, VerifyAt()), expected_["expected"]);
}

TEST_P(TdxVectorTest, GivesExpectedResultAtEachTimeCase) {
  if (!expected_.contains("time_cases")) return;  // negatives have none
  for (const Json& tc : expected_["time_cases"]) {
    const absl::Time t = absl::FromUnixSeconds(tc.at("verify_at_unix").get<int64_t>());
    SCOPED_TRACE(absl::FormatTime(t));
    ExpectMatches(ParseAndVerify(quote_, collateral_, anchors_, t), tc.at("expected"));
  }
}

// QvE semantics: with allow_expired_collateral, a time case that failed only on collateral time
// verifies and reports the expiry instead, with the result the vector gives at verify time.
TEST_P(TdxVectorTest, ReportsExpiryInsteadOfFailingWhenAllowed) {
  if (!expected_.contains("time_cases") || !expected_["expected"].value("ok", false)) return;
  VerifyOptions options{.allow_expired_collateral = true};
  for (const Json& tc : expected_["time_cases"]) {
    const absl::Time t = absl::FromUnixSeconds(tc.at("verify_at_unix").get<int64_t>());
    SCOPED_TRACE(absl::FormatTime(t));
    auto r = ParseAndVerify(quote_, collateral_, anchors_, t, options);
    ExpectMatches(r, expected_["expected"]);
    if (r.ok()) {
      EXPECT_TRUE(r->collateral_expired());
      EXPECT_NE(r->collateral_time_status(), CollateralTimeStatus::kValid);
    }
  }
}

TEST_P(TdxVectorTest, ReportsTheCollateralWindow) {
  if (!expected_.contains("collateral_window")) return;
  const Json& w = expected_["collateral_window"];
  // The window does not depend on the outcome, so read it from a run that tolerates nothing
  // but time: successful vectors only.
  auto r = ParseAndVerify(quote_, collateral_, anchors_, VerifyAt());
  if (!r.ok()) return;
  EXPECT_EQ(r->collateral_time_status(), CollateralTimeStatus::kValid);
  EXPECT_FALSE(r->collateral_expired());
  const CollateralWindow& got = r->collateral_window();
  EXPECT_EQ(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", got.not_before, absl::UTCTimeZone()),
            w.at("start").get<std::string>());
  EXPECT_EQ(got.not_before_item, w.at("start_set_by").get<std::string>());
  EXPECT_EQ(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", got.not_after, absl::UTCTimeZone()),
            w.at("end").get<std::string>());
  EXPECT_EQ(got.not_after_item, w.at("end_set_by").get<std::string>());
}

TEST_P(TdxVectorTest, PcsSplitCollateralIsTheSameCollateral) {
  auto dir = LoadCollateralDir(tv::VectorDir(GetParam()) + "/collateral");
  ASSERT_THAT(dir, IsOk());
  EXPECT_TRUE(*dir == collateral_);
  ExpectMatches(ParseAndVerify(quote_, *dir, anchors_, VerifyAt()), expected_["expected"]);
}

TEST_P(TdxVectorTest, CachingVerifierAgreesOnEveryCall) {
  Verifier verifier(anchors_);
  for (int i = 0; i < 3; ++i) {
    ExpectMatches(verifier.Verify(quote_, collateral_, VerifyAt()), expected_["expected"]);
  }
  if (expected_["expected"].value("ok", false)) {
    const Verifier::CacheStats stats = verifier.cache_stats();
    EXPECT_EQ(stats.pck_chain_misses, 1u);
    EXPECT_EQ(stats.pck_chain_hits, 2u);
    EXPECT_EQ(stats.collateral_misses, 1u);
    EXPECT_EQ(stats.collateral_hits, 2u);
  }
}

TEST_P(TdxVectorTest, ResultCarriesPckFacts) {
  if (!expected_["expected"].value("ok", false)) return;
  auto r = ParseAndVerify(quote_, collateral_, anchors_, VerifyAt());
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->simulated());
  EXPECT_EQ(r->trust_anchor_name(), "Intel SGX Root CA");
  if (expected_.contains("tcb_info")) {
    auto fmspc = core::HexDecode(expected_["tcb_info"].at("fmspc").get<std::string>());
    ASSERT_THAT(fmspc, IsOk());
    EXPECT_EQ(std::vector<uint8_t>(r->fmspc().begin(), r->fmspc().end()), *fmspc);
    EXPECT_EQ(r->tcb_evaluation_data_number(),
              expected_["tcb_info"].at("tcbEvaluationDataNumber").get<int64_t>());
  }
  EXPECT_EQ(r->quote().raw, quote_);
}

INSTANTIATE_TEST_SUITE_P(Shared, TdxVectorTest, ::testing::ValuesIn(tv::ListVectorDirs()),
                         tv::NameFromDir);

// --- Tests on one real quote (tdx-v4-phala-b0c06f) -------------------------------------------

class RealQuoteTest : public ::testing::Test {
 protected:
  void Load(const std::string& name) {
    name_ = name;
    expected_ = tv::ReadExpected(name);
    ASSERT_TRUE(expected_.is_object());
    quote_ = tv::ReadQuoteBytes(name);
    auto c = LoadCollateralJsonFile(tv::VectorDir(name) + "/collateral.json");
    ASSERT_THAT(c, IsOk());
    collateral_ = *c;
    now_ = absl::FromUnixSeconds(expected_.at("verify_at_unix").get<int64_t>());
  }
  std::string name_;
  Json expected_;
  std::vector<uint8_t> quote_;
  Collateral collateral_;
  absl::Time now_;
};

// Every byte of the signed region and of the signature data before the PCK chain is covered by
// some check: flipping any bit of it must be rejected.
TEST_F(RealQuoteTest, RejectsAnyMutationOfCoveredBytes) {
  for (const char* name : {"tdx-v4-phala-b0c06f", "tdx-v5-automata-alibaba-90c06f-eval17",
                           "sgx-v3-phala-00a067110000"}) {
    SCOPED_TRACE(name);
    Load(name);
    Verifier verifier(VectorAnchors());
    ASSERT_THAT(verifier.Verify(quote_, collateral_, now_), IsOk());
    PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(quote_));
    // Signed region, then the signature data up to (not including) the PEM chain.
    const size_t covered = q.raw.size() - q.trailing_bytes -
                           q.signature_data.certification_data.size();
    for (size_t off = 0; off < covered; ++off) {
      std::vector<uint8_t> mutated = quote_;
      mutated[off] ^= 0x01;
      auto r = verifier.Verify(mutated, collateral_, now_);
      ASSERT_FALSE(r.ok()) << "flip at offset " << off << " still verifies";
    }
  }
}

// The verifier remembers QE report signatures that verified (per PCK certificate, report and
// signature): a quote whose QE report signature differs from a remembered one is checked anew.
TEST_F(RealQuoteTest, RememberedQeReportSignatureDoesNotCoverAnother) {
  Load("tdx-v4-phala-b0c06f");
  Verifier verifier(VectorAnchors());
  ASSERT_THAT(verifier.Verify(quote_, collateral_, now_), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(quote_));
  const auto& sig = q.signature_data.qe_report_signature;
  auto at = std::search(quote_.begin(), quote_.end(), sig.begin(), sig.end());
  ASSERT_NE(at, quote_.end());
  std::vector<uint8_t> mutated = quote_;
  mutated[static_cast<size_t>(at - quote_.begin()) + 40] ^= 0x01;
  EXPECT_THAT(verifier.Verify(mutated, collateral_, now_),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(std::string(error_class::kInvalidQeReportSignature))));
  EXPECT_THAT(verifier.Verify(quote_, collateral_, now_), IsOk());
}

TEST_F(RealQuoteTest, SignedRegionMutationsGiveQuoteSignatureErrors) {
  Load("tdx-v4-phala-b0c06f");
  Verifier verifier(VectorAnchors());
  // REPORTDATA, MRTD, RTMR3 (v4 absolute offsets from the spec's table, §2.2).
  for (size_t off : {568u, 184u, 520u}) {
    std::vector<uint8_t> mutated = quote_;
    mutated[off] ^= 0x80;
    EXPECT_THAT(verifier.Verify(mutated, collateral_, now_),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr(std::string(error_class::kInvalidQuoteSignature))));
  }
}

TEST_F(RealQuoteTest, UntrustedWithoutAnchors) {
  Load("tdx-v4-phala-b0c06f");
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(quote_));
  auto r = VerifyQuote(q, collateral_, TrustAnchors(), now_);
  EXPECT_TRUE(MatchesErrorClass(r.status(), error_class::kPckCertChainUntrusted)) << r.status();
}

TEST_F(RealQuoteTest, BuiltInIntelKeyEqualsTheVectorsAnchor) {
  Load("tdx-v4-phala-b0c06f");
  TrustAnchors file = VectorAnchors();
  ASSERT_EQ(file.size(), 1u);
  TrustAnchors builtin = TrustAnchors::IntelDefault();
  EXPECT_EQ(builtin.anchors()[0]->public_key, file.anchors()[0]->public_key);
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(quote_));
  EXPECT_THAT(VerifyQuote(q, collateral_, builtin, now_), IsOk());
}

TEST_F(RealQuoteTest, SimulatedAnchorMarksTheResult) {
  Load("tdx-v4-phala-b0c06f");
  TrustAnchors anchors;
  ASSERT_THAT(anchors.AddFromFile(tv::IntelRootPubkeyPath(), "pretend-simulator", true), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(quote_));
  PML_ASSERT_OK_AND_ASSIGN(VerifiedQuote v, VerifyQuote(q, collateral_, anchors, now_));
  EXPECT_TRUE(v.simulated());
  EXPECT_EQ(v.trust_anchor_name(), "pretend-simulator");
}

TEST_F(RealQuoteTest, FakeRootAsAnchorGetsPastTheChain) {
  // The Intel QVL sample is signed by a same-name test root; with that root pinned (as a
  // simulated anchor) the chains verify and the quote fails on its own content instead.
  Load("neg-tdx-v4-intel-qvl-sample-fake-root");
  TrustAnchors anchors;
  auto der = core::ReadFileBytes(tv::VectorDir(name_) + "/collateral/test_root_ca.der");
  ASSERT_THAT(der, IsOk());
  ASSERT_THAT(anchors.AddCertificate(*der, "qvl test root", true), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(quote_));
  auto r = VerifyQuote(q, collateral_, anchors, now_, {.allow_expired_collateral = true});
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(MatchesErrorClass(r.status(), error_class::kPckCertChainUntrusted)) << r.status();
  EXPECT_FALSE(MatchesErrorClass(r.status(), error_class::kRootCaUntrusted)) << r.status();
}

TEST_F(RealQuoteTest, ReportsLevelModuleAndQeStatusesSeparately) {
  Load("tdx-v4-automata-00806f050000-outofdate");
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(quote_));
  PML_ASSERT_OK_AND_ASSIGN(VerifiedQuote v,
                           VerifyQuote(q, collateral_, VectorAnchors(), now_));
  EXPECT_EQ(TcbStatusName(v.tcb_status()), expected_["expected"]["status"].get<std::string>());
  // TEE_TCB_SVN[1] > 0: the module is judged through its identity.
  EXPECT_TRUE(v.tdx_module_status().has_value());
  EXPECT_EQ(v.pck_ca_type(), PckCaType::kPlatform);
  for (const Advisory& a : v.all_advisories()) {
    EXPECT_TRUE(absl::StartsWith(a.id, "INTEL-SA-")) << a.id;
  }
  EXPECT_GT(v.tcb_date(), absl::UnixEpoch());
}

TEST_F(RealQuoteTest, SourcePathVerifiesAndCachesPerFmspc) {
  Load("tdx-v4-phala-b0c06f");
  class Fixed : public CollateralSource {
   public:
    explicit Fixed(Collateral c) : c_(std::move(c)) {}
    absl::StatusOr<Collateral> GetCollateral(const Fmspc&, PckCaType ca, bool is_tdx) override {
      ++calls;
      EXPECT_EQ(ca, PckCaType::kPlatform);
      EXPECT_TRUE(is_tdx);
      return c_;
    }
    int calls = 0;

   private:
    Collateral c_;
  } source(collateral_);
  Verifier verifier(VectorAnchors());
  for (int i = 0; i < 3; ++i) {
    PML_ASSERT_OK_AND_ASSIGN(VerifiedQuote v, verifier.Verify(quote_, source, now_));
    EXPECT_EQ(TcbStatusName(v.tcb_status()), expected_["expected"]["status"].get<std::string>());
  }
  EXPECT_EQ(source.calls, 1);
  EXPECT_EQ(verifier.cache_stats().source_hits, 2u);
  // Past the collateral's end the per-FMSPC entry is refetched.
  const absl::Time late = absl::FromUnixSeconds(
      expected_["time_cases"][1].at("verify_at_unix").get<int64_t>());
  EXPECT_FALSE(verifier.Verify(quote_, source, late).ok());
  EXPECT_EQ(source.calls, 2);
}

TEST_F(RealQuoteTest, VerifierIsSafeToShareAcrossThreads) {
  Load("tdx-v4-phala-b0c06f");
  Verifier verifier(VectorAnchors());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        if (t == 0 && i % 5 == 0) verifier.ClearCaches();
        auto r = verifier.Verify(quote_, collateral_, now_);
        if (!r.ok() || r->tcb_status() != TcbStatus::kUpToDate) ++failures;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(RealQuoteTest, MismatchedCaCrlIsRejected) {
  // The SGX vector's PCK CRL comes from the Processor CA; the TDX quote's PCK from the Platform
  // CA: the CRL does not cover the PCK.
  Load("tdx-v4-phala-b0c06f");
  auto other = LoadCollateralJsonFile(tv::VectorDir("sgx-v3-phala-00a067110000") +
                                      "/collateral.json");
  ASSERT_THAT(other, IsOk());
  Collateral mixed = collateral_;
  mixed.pck_crl = other->pck_crl;
  mixed.pck_crl_issuer_chain = other->pck_crl_issuer_chain;
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(quote_));
  auto r = VerifyQuote(q, mixed, VectorAnchors(), now_);
  EXPECT_TRUE(MatchesErrorClass(r.status(), error_class::kInvalidPckCrl)) << r.status();
}

TEST_F(RealQuoteTest, SgxCollateralForTdxQuoteIsATcbInfoMismatch) {
  Load("tdx-v4-phala-b0c06f");
  auto sgx = LoadCollateralJsonFile(tv::VectorDir("sgx-v3-phala-00a067110000") +
                                    "/collateral.json");
  ASSERT_THAT(sgx, IsOk());
  Collateral mixed = collateral_;
  mixed.tcb_info_body = sgx->tcb_info_body;
  mixed.tcb_info_signature = sgx->tcb_info_signature;
  mixed.tcb_info_issuer_chain = sgx->tcb_info_issuer_chain;
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(quote_));
  auto r = VerifyQuote(q, mixed, VectorAnchors(), now_);
  EXPECT_TRUE(MatchesErrorClass(r.status(), error_class::kTcbInfoMismatch)) << r.status();
}

}  // namespace
}  // namespace pml::tdx
