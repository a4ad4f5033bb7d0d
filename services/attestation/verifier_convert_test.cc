#include "services/attestation/verifier_convert.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/hash.h"
#include "lib/tdx/collateral.h"
#include "lib/tdx/quote.h"
#include "lib/tdx/testing/vectors.h"

namespace pml::attestation {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
using Json = nlohmann::json;
namespace tv = ::pml::tdx::testing;

constexpr char kVector[] = "tdx-v4-phala-b0c06f";

std::string CollateralJson(absl::string_view vector) {
  auto c = core::ReadFile(tv::VectorDir(vector) + "/collateral.json");
  PML_CHECK(c.ok());
  return *c;
}

std::string AsString(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

v1::QuoteCollateral FieldsOf(const tdx::Collateral& c) {
  v1::QuoteCollateral p;
  p.set_pck_crl_issuer_chain(c.pck_crl_issuer_chain);
  p.set_root_ca_crl(AsString(c.root_ca_crl));
  p.set_pck_crl(AsString(c.pck_crl));
  p.set_tcb_info_issuer_chain(c.tcb_info_issuer_chain);
  p.set_tcb_info(c.tcb_info_body);
  p.set_tcb_info_signature(AsString(c.tcb_info_signature));
  p.set_qe_identity_issuer_chain(c.qe_identity_issuer_chain);
  p.set_qe_identity(c.qe_identity_body);
  p.set_qe_identity_signature(AsString(c.qe_identity_signature));
  p.set_pck_certificate_chain(c.pck_certificate_chain);
  return p;
}

TEST(TdxVerifyInputFromProtoTest, CarriesQuoteCollateralJsonTimeAndFlags) {
  v1::VerifyTdxQuoteRequest req;
  const std::vector<uint8_t> quote = tv::ReadQuoteBytes(kVector);
  req.set_quote(AsString(quote));
  req.set_collateral_json(CollateralJson(kVector));
  req.mutable_verification_time()->set_seconds(1751328000);
  req.mutable_verification_time()->set_nanos(5);
  req.set_event_log("[]");
  req.set_offline(true);
  PML_ASSERT_OK_AND_ASSIGN(TdxVerifyInput in, TdxVerifyInputFromProto(req));
  EXPECT_EQ(in.quote, quote);
  PML_ASSERT_OK_AND_ASSIGN(tdx::Collateral want, tdx::ParseCollateralJson(CollateralJson(kVector)));
  ASSERT_TRUE(in.collateral.has_value());
  EXPECT_EQ(*in.collateral, want);
  EXPECT_EQ(in.at, absl::FromUnixSeconds(1751328000) + absl::Nanoseconds(5));
  EXPECT_EQ(in.event_log, "[]");
  EXPECT_TRUE(in.offline);
}

TEST(TdxVerifyInputFromProtoTest, CollateralFieldsEqualTheJsonForm) {
  PML_ASSERT_OK_AND_ASSIGN(tdx::Collateral want, tdx::ParseCollateralJson(CollateralJson(kVector)));
  v1::VerifyTdxQuoteRequest req;
  req.set_quote("q");
  *req.mutable_collateral_fields() = FieldsOf(want);
  PML_ASSERT_OK_AND_ASSIGN(TdxVerifyInput in, TdxVerifyInputFromProto(req));
  ASSERT_TRUE(in.collateral.has_value());
  EXPECT_EQ(*in.collateral, want);
}

TEST(TdxVerifyInputFromProtoTest, NoCollateralAndNoTimeStayUnset) {
  v1::VerifyTdxQuoteRequest req;
  req.set_quote("q");
  PML_ASSERT_OK_AND_ASSIGN(TdxVerifyInput in, TdxVerifyInputFromProto(req));
  EXPECT_FALSE(in.collateral.has_value());
  EXPECT_FALSE(in.at.has_value());
}

TEST(TdxVerifyInputFromProtoTest, BadInputNamesTheField) {
  PML_ASSERT_OK_AND_ASSIGN(tdx::Collateral good, tdx::ParseCollateralJson(CollateralJson(kVector)));
  struct Case {
    const char* name;
    v1::VerifyTdxQuoteRequest req;
    const char* field;
  };
  std::vector<Case> cases;
  {
    Case c{"empty quote", {}, "quote: empty"};
    cases.push_back(c);
  }
  {
    Case c{"collateral json not json", {}, "collateral_json: "};
    c.req.set_quote("q");
    c.req.set_collateral_json("{");
    cases.push_back(c);
  }
  {
    Case c{"collateral field missing", {}, "collateral_fields.tcb_info: missing"};
    c.req.set_quote("q");
    *c.req.mutable_collateral_fields() = FieldsOf(good);
    c.req.mutable_collateral_fields()->clear_tcb_info();
    cases.push_back(c);
  }
  {
    Case c{"time out of range", {}, "verification_time: seconds"};
    c.req.set_quote("q");
    c.req.mutable_verification_time()->set_seconds(int64_t{1} << 50);
    cases.push_back(c);
  }
  {
    Case c{"nanos out of range", {}, "verification_time: nanos"};
    c.req.set_quote("q");
    c.req.mutable_verification_time()->set_nanos(-1);
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(TdxVerifyInputFromProto(c.req),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
  }
}

TEST(TcbStatusToProtoTest, MapsEveryStatusToADistinctValue) {
  std::set<int> seen;
  for (tdx::TcbStatus s :
       {tdx::TcbStatus::kUpToDate, tdx::TcbStatus::kSWHardeningNeeded,
        tdx::TcbStatus::kConfigurationNeeded, tdx::TcbStatus::kConfigurationAndSWHardeningNeeded,
        tdx::TcbStatus::kOutOfDate, tdx::TcbStatus::kOutOfDateConfigurationNeeded,
        tdx::TcbStatus::kRevoked, tdx::TcbStatus::kTDRelaunchAdvised,
        tdx::TcbStatus::kTDRelaunchAdvisedConfigurationNeeded}) {
    const v1::TcbStatus p = TcbStatusToProto(s);
    EXPECT_NE(p, v1::TCB_STATUS_UNSPECIFIED);
    seen.insert(p);
  }
  EXPECT_EQ(seen.size(), 9u);
}

// A real vector through the core and into the proto: every field comes from the quote bytes, the
// vector's expected.json or the lib/tdx parse of the same bytes.
class TdxVerificationToProtoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    expected_ = tv::ReadExpected(kVector);
    ASSERT_TRUE(expected_.is_object());
    quote_ = tv::ReadQuoteBytes(kVector);
    clock_.Set(absl::FromUnixSeconds(expected_.at("verify_at_unix").get<int64_t>()));
    VerifierCoreOptions o;
    PML_ASSERT_OK_AND_ASSIGN(o.anchors, MakeTrustAnchors(false));
    PML_ASSERT_OK_AND_ASSIGN(core_, VerifierCore::Create(std::move(o), clock_, nullptr));
    TdxVerifyInput in;
    in.quote = quote_;
    PML_ASSERT_OK_AND_ASSIGN(in.collateral, tdx::ParseCollateralJson(CollateralJson(kVector)));
    PML_ASSERT_OK_AND_ASSIGN(TdxVerification v, core_->VerifyTdx(in));
    TdxVerificationToProto(v, &out_);
  }
  std::string QuoteBytes(size_t offset, size_t n) const {
    return std::string(quote_.begin() + offset, quote_.begin() + offset + n);
  }

  core::FakeClock clock_{absl::UnixEpoch()};
  Json expected_;
  std::vector<uint8_t> quote_;
  std::unique_ptr<VerifierCore> core_;
  v1::TdxQuoteVerification out_;
};

TEST_F(TdxVerificationToProtoTest, ReportsTheVerdictFromExpectedJson) {
  EXPECT_TRUE(out_.verified());
  EXPECT_EQ(out_.error_class(), "");
  const std::string want = expected_["expected"].at("status").get<std::string>();
  PML_ASSERT_OK_AND_ASSIGN(tdx::TcbStatus status, tdx::ParseTcbStatus(want));
  EXPECT_EQ(out_.tcb_status(), TcbStatusToProto(status));
  EXPECT_EQ(out_.advisory_ids_size(),
            static_cast<int>(expected_["expected"].at("advisory_ids").size()));
  EXPECT_EQ(absl::AsciiStrToLower(core::HexEncode(out_.fmspc())),
            absl::AsciiStrToLower(expected_["tcb_info"].at("fmspc").get<std::string>()));
  EXPECT_EQ(core::HexEncode(out_.pce_id()),
            absl::AsciiStrToLower(expected_["tcb_info"].at("pceId").get<std::string>()));
  EXPECT_EQ(out_.tcb_evaluation_data_number(),
            expected_["tcb_info"].at("tcbEvaluationDataNumber").get<uint32_t>());
  EXPECT_EQ(out_.collateral_expiry_item(),
            expected_["collateral_window"].at("end_set_by").get<std::string>());
  absl::Time end;
  std::string err;
  ASSERT_TRUE(absl::ParseTime(
      absl::RFC3339_full, expected_["collateral_window"].at("end").get<std::string>(), &end, &err));
  EXPECT_EQ(out_.collateral_expires_at().seconds(), absl::ToUnixSeconds(end));
  EXPECT_FALSE(out_.collateral_expired());
  EXPECT_FALSE(out_.simulated());
  EXPECT_EQ(out_.collateral_source(), v1::COLLATERAL_SOURCE_REQUEST);
  EXPECT_EQ(out_.verification_time().seconds(), expected_.at("verify_at_unix").get<int64_t>());
  EXPECT_EQ(out_.device_id().size(), 32u);
}

TEST_F(TdxVerificationToProtoTest, CarriesEveryTdReportFieldAtItsQuoteOffset) {
  // Quote v4: 48-byte header, then the TD report 1.0 (tdx-quote-verification.md §2.2).
  constexpr size_t kBody = 48;
  EXPECT_EQ(out_.header().version(), quote_[0] | (quote_[1] << 8));
  EXPECT_EQ(out_.header().tee_type(), 0x81u);
  EXPECT_EQ(out_.header().qe_vendor_id(), QuoteBytes(12, 16));
  EXPECT_EQ(out_.header().user_data(), QuoteBytes(28, 20));
  ASSERT_TRUE(out_.has_td_report());
  const v1::TdReport& td = out_.td_report();
  EXPECT_EQ(td.tee_tcb_svn(), QuoteBytes(kBody + 0, 16));
  EXPECT_EQ(td.mrseam(), QuoteBytes(kBody + 16, 48));
  EXPECT_EQ(td.mrsignerseam(), QuoteBytes(kBody + 64, 48));
  EXPECT_EQ(td.seam_attributes(), QuoteBytes(kBody + 112, 8));
  EXPECT_EQ(td.td_attributes(), QuoteBytes(kBody + 120, 8));
  EXPECT_EQ(td.xfam(), QuoteBytes(kBody + 128, 8));
  EXPECT_EQ(td.mrtd(), QuoteBytes(kBody + 136, 48));
  EXPECT_EQ(td.mrconfigid(), QuoteBytes(kBody + 184, 48));
  EXPECT_EQ(td.mrowner(), QuoteBytes(kBody + 232, 48));
  EXPECT_EQ(td.mrownerconfig(), QuoteBytes(kBody + 280, 48));
  EXPECT_EQ(td.rtmr0(), QuoteBytes(kBody + 328, 48));
  EXPECT_EQ(td.rtmr1(), QuoteBytes(kBody + 376, 48));
  EXPECT_EQ(td.rtmr2(), QuoteBytes(kBody + 424, 48));
  EXPECT_EQ(td.rtmr3(), QuoteBytes(kBody + 472, 48));
  EXPECT_EQ(td.report_data(), QuoteBytes(kBody + 520, 64));
  EXPECT_EQ(td.version(), "1.0");
  EXPECT_EQ(td.debug(), (quote_[kBody + 120] & 1) != 0);
  EXPECT_EQ(td.tee_tcb_svn_2(), "");
  EXPECT_EQ(td.mrservicetd(), "");
}

TEST(TdxVerificationToProtoRejectedTest, ReportsClassAndMessageWithoutEvaluation) {
  TdxVerification v;
  v.verified = false;
  v.error_class = "INVALID_QUOTE_SIGNATURE";
  v.error_message = "INVALID_QUOTE_SIGNATURE: quote signature does not verify";
  v.collateral_origin = CollateralOrigin::kCache;
  v1::TdxQuoteVerification out;
  TdxVerificationToProto(v, &out);
  EXPECT_FALSE(out.verified());
  EXPECT_EQ(out.error_class(), "INVALID_QUOTE_SIGNATURE");
  EXPECT_THAT(out.error_message(), HasSubstr("does not verify"));
  EXPECT_EQ(out.tcb_status(), v1::TCB_STATUS_UNSPECIFIED);
  EXPECT_EQ(out.collateral_source(), v1::COLLATERAL_SOURCE_CACHE);
  EXPECT_FALSE(out.collateral_expired());
}

TEST(RefreshInputFromProtoTest, RejectsAnFmspcOfTheWrongLength) {
  v1::RefreshCollateralRequest req;
  req.add_fmspcs(std::string(6, '\1'));
  req.add_fmspcs(std::string(5, '\1'));
  bool intel = false;
  EXPECT_THAT(RefreshInputFromProto(req, &intel),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("fmspcs[1]: 5 bytes")));
}

TEST(RefreshInputFromProtoTest, KindsWithoutIntelLeaveNothingToDo) {
  v1::RefreshCollateralRequest req;
  req.add_kinds(v1::COLLATERAL_KIND_NVIDIA_RIM);
  bool intel = true;
  PML_ASSERT_OK_AND_ASSIGN(RefreshInput in, RefreshInputFromProto(req, &intel));
  EXPECT_FALSE(intel);
  EXPECT_FALSE(in.import_json.has_value());
}

TEST(CacheStatusToProtoTest, FiltersByKindAndCarriesCounters) {
  CacheStatus s;
  s.entries.push_back(CachedCollateral{});
  s.entries[0].fmspc = {0xB0, 0xC0, 0x6F, 0, 0, 0};
  s.hits = 7;
  s.misses = 2;
  s.upstream_name = "https://pccs.test";
  v1::GetCollateralCacheStatusRequest all;
  v1::GetCollateralCacheStatusResponse out;
  CacheStatusToProto(s, all, &out);
  ASSERT_EQ(out.entries_size(), 1);
  EXPECT_EQ(out.entries(0).key(), "B0C06F000000");
  EXPECT_EQ(out.entries(0).kind(), v1::COLLATERAL_KIND_INTEL_TCB);
  EXPECT_EQ(out.hits(), 7u);
  EXPECT_EQ(out.misses(), 2u);
  EXPECT_EQ(out.pcs_url(), "https://pccs.test");
  v1::GetCollateralCacheStatusRequest rims;
  rims.add_kinds(v1::COLLATERAL_KIND_NVIDIA_RIM);
  v1::GetCollateralCacheStatusResponse none;
  CacheStatusToProto(s, rims, &none);
  EXPECT_EQ(none.entries_size(), 0);
}

}  // namespace
}  // namespace pml::attestation
