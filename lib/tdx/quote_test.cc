#include "lib/tdx/quote.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/tdx/errors.h"
#include "lib/tdx/testing/vectors.h"

namespace pml::tdx {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
namespace tv = ::pml::tdx::testing;

// Field offsets are the spec's table (shared/specs/tdx-quote-verification.md §2.2), relative to
// the start of the TD report body; the tests check the parser against the raw bytes there.
template <size_t N>
std::vector<uint8_t> At(const std::vector<uint8_t>& b, size_t off) {
  return std::vector<uint8_t>(b.begin() + static_cast<long>(off),
                              b.begin() + static_cast<long>(off + N));
}
template <size_t N>
std::vector<uint8_t> V(const std::array<uint8_t, N>& a) {
  return std::vector<uint8_t>(a.begin(), a.end());
}
uint64_t Le64(const std::vector<uint8_t>& b, size_t off) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v |= static_cast<uint64_t>(b[off + i]) << (8 * i);
  return v;
}

void ExpectTdFieldsAt(const Quote& q, const std::vector<uint8_t>& b, size_t body) {
  ASSERT_TRUE(q.td_report.has_value());
  const TdReport& td = *q.td_report;
  EXPECT_EQ(V(td.tee_tcb_svn), At<16>(b, body + 0));
  EXPECT_EQ(V(td.mr_seam), At<48>(b, body + 16));
  EXPECT_EQ(V(td.mr_signer_seam), At<48>(b, body + 64));
  EXPECT_EQ(td.seam_attributes, Le64(b, body + 112));
  EXPECT_EQ(td.td_attributes, Le64(b, body + 120));
  EXPECT_EQ(td.xfam, Le64(b, body + 128));
  EXPECT_EQ(V(td.mr_td), At<48>(b, body + 136));
  EXPECT_EQ(V(td.mr_config_id), At<48>(b, body + 184));
  EXPECT_EQ(V(td.mr_owner), At<48>(b, body + 232));
  EXPECT_EQ(V(td.mr_owner_config), At<48>(b, body + 280));
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(V(td.rtmr[i]), At<48>(b, body + 328 + 48 * i));
  EXPECT_EQ(V(td.report_data), At<64>(b, body + 520));
}

TEST(ParseQuoteTest, ParsesTdReport10FieldsOfV4) {
  const std::vector<uint8_t> b = tv::ReadQuoteBytes("tdx-v4-phala-b0c06f");
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(b));
  EXPECT_EQ(q.header.version, 4);
  EXPECT_EQ(q.header.attestation_key_type, kAttestationKeyTypeEcdsaP256);
  EXPECT_EQ(q.header.tee_type, kTeeTypeTdx);
  EXPECT_TRUE(q.is_tdx());
  EXPECT_EQ(q.header.qe_vendor_id, kIntelQeVendorId);
  EXPECT_FALSE(q.v5_body_type.has_value());
  EXPECT_EQ(q.body_type, BodyType::kTdReport10);
  EXPECT_EQ(q.signed_region_size, 632u);
  ExpectTdFieldsAt(q, b, 48);
  EXPECT_FALSE(q.td_report->tee_tcb_svn_2.has_value());
  EXPECT_FALSE(q.td_report->mr_service_td.has_value());
  EXPECT_FALSE(q.enclave_report.has_value());
}

TEST(ParseQuoteTest, ParsesSignatureDataOfV4) {
  const std::vector<uint8_t> b = tv::ReadQuoteBytes("tdx-v4-phala-b0c06f");
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(b));
  const QuoteSignatureData& sd = q.signature_data;
  const size_t s = 632 + 4;  // §2.3: S = 636 for v4
  EXPECT_EQ(V(sd.signature), At<64>(b, s));
  EXPECT_EQ(V(sd.attestation_key), At<64>(b, s + 64));
  EXPECT_EQ(V(sd.qe_report.raw), At<384>(b, s + 134));
  EXPECT_EQ(V(sd.qe_report_signature), At<64>(b, s + 518));
  EXPECT_EQ(V(sd.qe_report.mr_signer), At<32>(b, s + 134 + 128));
  EXPECT_EQ(V(sd.qe_report.report_data), At<64>(b, s + 134 + 320));
  EXPECT_EQ(sd.qe_auth_data.size(), static_cast<size_t>(b[s + 582] | b[s + 583] << 8));
  EXPECT_EQ(sd.certification_data_type, kCertDataPckCertChain);
  const std::string pem(q.PckCertChainPem());
  EXPECT_TRUE(absl::StartsWith(pem, "-----BEGIN CERTIFICATE-----"));
  EXPECT_EQ(q.trailing_bytes, b.size() - (s + 134 + 384 + 64 + 2 + sd.qe_auth_data.size() + 6 +
                                          sd.certification_data.size()));
  EXPECT_EQ(q.raw, b);
  EXPECT_EQ(q.signed_region().size(), 632u);
}

TEST(ParseQuoteTest, ParsesTdReport15OfV5) {
  const std::vector<uint8_t> b = tv::ReadQuoteBytes("tdx-v5-automata-alibaba-90c06f-eval17");
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(b));
  EXPECT_EQ(q.header.version, 5);
  ASSERT_TRUE(q.v5_body_type.has_value());
  EXPECT_EQ(*q.v5_body_type, BodyType::kTdReport15);
  // The signed region includes the 6-byte body descriptor (§2.2).
  EXPECT_EQ(q.signed_region_size, 702u);
  ExpectTdFieldsAt(q, b, 54);
  ASSERT_TRUE(q.td_report->tee_tcb_svn_2.has_value());
  EXPECT_EQ(V(*q.td_report->tee_tcb_svn_2), At<16>(b, 54 + 584));
  ASSERT_TRUE(q.td_report->mr_service_td.has_value());
  EXPECT_EQ(V(*q.td_report->mr_service_td), At<48>(b, 54 + 600));
}

TEST(ParseQuoteTest, ParsesSgxV3) {
  const std::vector<uint8_t> b = tv::ReadQuoteBytes("sgx-v3-phala-00a067110000");
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(b));
  EXPECT_EQ(q.header.version, 3);
  EXPECT_FALSE(q.is_tdx());
  EXPECT_EQ(q.body_type, BodyType::kSgxEnclaveReport);
  ASSERT_TRUE(q.enclave_report.has_value());
  EXPECT_FALSE(q.td_report.has_value());
  EXPECT_EQ(q.signed_region_size, 432u);
  const EnclaveReport& r = *q.enclave_report;
  EXPECT_EQ(V(r.cpu_svn), At<16>(b, 48));
  EXPECT_EQ(r.misc_select, static_cast<uint32_t>(b[64] | b[65] << 8 | b[66] << 16 | b[67] << 24));
  EXPECT_EQ(V(r.attributes), At<16>(b, 48 + 48));
  EXPECT_EQ(V(r.mr_enclave), At<32>(b, 48 + 64));
  EXPECT_EQ(V(r.mr_signer), At<32>(b, 48 + 128));
  EXPECT_EQ(r.isv_prod_id, b[48 + 256] | b[48 + 257] << 8);
  EXPECT_EQ(r.isv_svn, b[48 + 258] | b[48 + 259] << 8);
  EXPECT_EQ(V(r.report_data), At<64>(b, 48 + 320));
  EXPECT_EQ(q.header.qe_svn, b[8] | b[9] << 8);
  EXPECT_EQ(q.signature_data.certification_data_type, kCertDataPckCertChain);
  EXPECT_FALSE(q.PckCertChainPem().empty());
}

TEST(ParseQuoteTest, AcceptsTrailingBytes) {
  // go-tdx-guest's SPR quote carries 39 trailing bytes.
  const std::vector<uint8_t> b = tv::ReadQuoteBytes("tdx-v4-google-spr-50806f-tcbnotsupported");
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(b));
  EXPECT_GT(q.trailing_bytes, 0u);
  std::vector<uint8_t> more = b;
  more.insert(more.end(), 1000, 0xab);
  PML_ASSERT_OK_AND_ASSIGN(Quote q2, ParseQuote(more));
  EXPECT_EQ(q2.trailing_bytes, q.trailing_bytes + 1000);
}

// Truncating a real quote anywhere before the end of its declared signature data must give an
// error (never a crash); at or after that end, the rest is trailing padding.
TEST(ParseQuoteTest, RejectsEveryTruncation) {
  for (const std::string& name : tv::ListVectorDirs()) {
    const std::vector<uint8_t> b = tv::ReadQuoteBytes(name);
    auto full = ParseQuote(b);
    if (!full.ok()) continue;  // the truncated negative vector itself
    SCOPED_TRACE(name);
    const size_t end = b.size() - full->trailing_bytes;
    for (size_t n = 0; n < end; ++n) {
      auto r = ParseQuote(absl::MakeConstSpan(b.data(), n));
      ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes parsed";
      ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
      ASSERT_EQ(ErrorClass(r.status()), error_class::kUnsupportedQuoteFormat) << r.status();
    }
    EXPECT_THAT(ParseQuote(absl::MakeConstSpan(b.data(), end)), IsOk());
  }
}

TEST(ParseQuoteTest, RejectsTheTruncatedVector) {
  const std::vector<uint8_t> b = tv::ReadQuoteBytes("neg-tdx-v4-truncated");
  EXPECT_THAT(ParseQuote(b), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("UNSUPPORTED_QUOTE_FORMAT: signature data")));
}

class MutatedHeaderTest : public ::testing::Test {
 protected:
  void SetUp() override { b_ = tv::ReadQuoteBytes("tdx-v4-phala-b0c06f"); }
  std::vector<uint8_t> b_;
};

TEST_F(MutatedHeaderTest, RejectsUnknownVersion) {
  b_[0] = 6;
  EXPECT_THAT(ParseQuote(b_), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("UNSUPPORTED_QUOTE_FORMAT: quote version 6")));
}

TEST_F(MutatedHeaderTest, RejectsP384AttestationKey) {
  b_[2] = 3;
  EXPECT_THAT(ParseQuote(b_), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("UNSUPPORTED_ATTESTATION_KEY_TYPE")));
}

TEST_F(MutatedHeaderTest, RejectsUnknownTeeType) {
  b_[4] = 0x82;
  EXPECT_THAT(ParseQuote(b_), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tee type")));
}

TEST_F(MutatedHeaderTest, RejectsForeignQeVendor) {
  b_[12] ^= 0xff;
  EXPECT_THAT(ParseQuote(b_), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("UNSUPPORTED_QE_VENDOR")));
}

TEST_F(MutatedHeaderTest, RejectsV3WithTdxTeeType) {
  b_[0] = 3;
  EXPECT_THAT(ParseQuote(b_), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("v3 quotes must have tee type sgx")));
}

TEST_F(MutatedHeaderTest, RejectsOversizedSignatureData) {
  // u32 signature data length right after the 632-byte signed region.
  b_[632 + 3] = 0x7f;
  EXPECT_THAT(ParseQuote(b_), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("signature data exceeds quote")));
}

TEST_F(MutatedHeaderTest, RejectsOuterCertificationTypeOtherThanSix) {
  b_[636 + 128] = 5;
  EXPECT_THAT(ParseQuote(b_), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("certification data type 5")));
}

TEST(ParseQuoteV5Test, RejectsBodySizeNotMatchingType) {
  std::vector<uint8_t> b = tv::ReadQuoteBytes("tdx-v5-automata-alibaba-90c06f-eval17");
  b[48] = 2;  // body type 2 (TD 1.0) with size 648
  EXPECT_THAT(ParseQuote(b), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("does not match body type")));
  b[48] = 1;  // SGX body in a TDX quote
  b[50] = 0x80;
  b[51] = 0x01;  // size 384
  EXPECT_THAT(ParseQuote(b), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("does not match the tee type")));
  b[48] = 9;
  EXPECT_THAT(ParseQuote(b), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("v5 body type 9")));
}

TEST(ParseQuoteTest, RejectsEmptyAndHugeInput) {
  EXPECT_THAT(ParseQuote({}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("header")));
  std::vector<uint8_t> huge(kMaxQuoteSize + 1, 0);
  EXPECT_THAT(ParseQuote(huge), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than")));
}

TEST(ParseQuoteTest, QuoteWithoutPemChainReportsNone) {
  // Intel's QVL sample has cert data type 5 holding DER, not PEM.
  const std::vector<uint8_t> b = tv::ReadQuoteBytes("neg-tdx-v4-intel-qvl-sample-fake-root");
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(b));
  EXPECT_EQ(q.signature_data.certification_data_type, kCertDataPckCertChain);
  EXPECT_TRUE(q.PckCertChainPem().empty());
}

}  // namespace
}  // namespace pml::tdx
