#include "lib/tdx/collateral.h"

#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/tdx/errors.h"
#include "lib/tdx/testing/vectors.h"

namespace pml::tdx {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
namespace tv = ::pml::tdx::testing;

std::string VectorFile(const std::string& vector, const std::string& file) {
  auto text = core::ReadFile(tv::VectorDir(vector) + "/" + file);
  EXPECT_THAT(text, IsOk());
  return text.ok() ? *text : "";
}

TEST(ParsePcsSignedJsonTest, CutsTheBodyOutByteExact) {
  const std::string doc = VectorFile("tdx-v4-phala-b0c06f", "collateral/tcb_info.json");
  PML_ASSERT_OK_AND_ASSIGN(SignedJsonBody s, ParsePcsSignedJson(doc, "tcbInfo"));
  PML_ASSERT_OK_AND_ASSIGN(Collateral c, LoadCollateralJsonFile(tv::VectorDir("tdx-v4-phala-b0c06f") +
                                                                "/collateral.json"));
  EXPECT_EQ(s.body, c.tcb_info_body);
  EXPECT_EQ(s.signature, c.tcb_info_signature);
}

TEST(ParsePcsSignedJsonTest, KeepsWhitespaceInsideTheBody) {
  // The reserialized negative vector: same JSON value, different bytes. The scanner must hand
  // out those different bytes (so the signature check fails), not a normalized form.
  const std::string doc =
      VectorFile("neg-tdx-v4-tcbinfo-reserialized", "collateral/tcb_info.json");
  PML_ASSERT_OK_AND_ASSIGN(SignedJsonBody s, ParsePcsSignedJson(doc, "tcbInfo"));
  EXPECT_THAT(s.body, HasSubstr("\n"));
  EXPECT_EQ(s.body.front(), '{');
  EXPECT_EQ(s.body.back(), '}');
}

TEST(ParsePcsSignedJsonTest, HandlesKeyOrderWhitespaceAndBracesInStrings) {
  const std::string sig(128, 'a');
  const std::string doc = " { \"signature\" : \"" + sig +
                          "\" ,\n \"enclaveIdentity\" : {\"a\":\"}{\\\"]\",\"b\":[1,{\"c\":2}]} }\n";
  PML_ASSERT_OK_AND_ASSIGN(SignedJsonBody s, ParsePcsSignedJson(doc, "enclaveIdentity"));
  EXPECT_EQ(s.body, "{\"a\":\"}{\\\"]\",\"b\":[1,{\"c\":2}]}");
  EXPECT_EQ(s.signature.size(), 64u);
}

TEST(ParsePcsSignedJsonTest, RejectsAmbiguousOrBrokenDocuments) {
  const std::string sig = "\"signature\":\"" + std::string(128, 'b') + "\"";
  const std::string body = "\"tcbInfo\":{\"x\":1}";
  struct Case {
    std::string doc;
    const char* want;
  };
  const Case cases[] = {
      {"{" + body + "," + body + "," + sig + "}", "twice"},
      {"{" + body + "," + sig + "," + sig + "}", "twice"},
      {"{" + body + "}", "missing signature"},
      {"{" + sig + "}", "missing body"},
      {"{" + body + "," + sig + "} x", "trailing"},
      {"{\"tcbInfo\":[1]," + sig + "}", "not an object"},
      {"{\"tcbInfo\":{\"x\":1", "unterminated"},
      {"{" + body + ",\"signature\":\"abc\"}", "signature"},
      {"{" + body + ",\"signature\":\"" + std::string(126, 'c') + "\"}", "want 64"},
      {"{\"tcbInfo\":{\"x\":}," + sig + "}", "not valid json"},
      {"[]", "not a json object"},
      {std::string(100, '['), "not a json object"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.doc.substr(0, 80));
    auto r = ParsePcsSignedJson(c.doc, "tcbInfo");
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.want)));
    EXPECT_EQ(ErrorClass(r.status()), error_class::kTcbInfoUnsupportedFormat);
  }
  // Deep nesting is bounded, not recursed.
  const std::string deep = "{\"tcbInfo\":" + std::string(10000, '{') + "," + sig + "}";
  EXPECT_THAT(ParsePcsSignedJson(deep, "tcbInfo"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too deep")));
}

TEST(CollateralJsonTest, RoundTripsByteExact) {
  PML_ASSERT_OK_AND_ASSIGN(Collateral c, LoadCollateralJsonFile(tv::VectorDir("tdx-v4-phala-b0c06f") +
                                                                "/collateral.json"));
  PML_ASSERT_OK_AND_ASSIGN(std::string json, CollateralToJson(c));
  PML_ASSERT_OK_AND_ASSIGN(Collateral back, ParseCollateralJson(json));
  EXPECT_TRUE(back == c);
  EXPECT_EQ(CollateralDigest(back), CollateralDigest(c));
}

TEST(CollateralJsonTest, DigestChangesWithAnyField) {
  PML_ASSERT_OK_AND_ASSIGN(Collateral c, LoadCollateralJsonFile(tv::VectorDir("tdx-v4-phala-b0c06f") +
                                                                "/collateral.json"));
  const auto base = CollateralDigest(c);
  Collateral a = c;
  a.pck_crl.back() ^= 1;
  EXPECT_NE(CollateralDigest(a), base);
  Collateral b = c;
  b.tcb_info_body += " ";
  EXPECT_NE(CollateralDigest(b), base);
  // Moving bytes between adjacent fields changes the digest (length prefixes).
  Collateral d = c;
  d.tcb_info_issuer_chain = d.tcb_info_body.substr(d.tcb_info_body.size() - 1) +
                            d.tcb_info_issuer_chain;
  d.tcb_info_body.pop_back();
  EXPECT_NE(CollateralDigest(d), base);
}

TEST(CollateralJsonTest, NamesTheMissingOrBadField) {
  PML_ASSERT_OK_AND_ASSIGN(Collateral c, LoadCollateralJsonFile(tv::VectorDir("tdx-v4-phala-b0c06f") +
                                                                "/collateral.json"));
  PML_ASSERT_OK_AND_ASSIGN(std::string json, CollateralToJson(c));
  EXPECT_THAT(ParseCollateralJson(absl::StrReplaceAll(json, {{"\"pck_crl\":", "\"pck_crlx\":"}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MISSING_PARAMETERS: pck_crl")));
  const std::string sig = core::HexEncode(c.tcb_info_signature);
  EXPECT_THAT(ParseCollateralJson(absl::StrReplaceAll(json, {{sig, sig.substr(2)}})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("SGX_TCB_INFO_UNSUPPORTED_FORMAT: tcb_info_signature")));
  EXPECT_THAT(ParseCollateralJson(absl::StrReplaceAll(json, {{sig, "zz" + sig.substr(2)}})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tcb_info_signature")));
  EXPECT_THAT(ParseCollateralJson("[1]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a json object")));
}

TEST(DecodeCrlBytesTest, AcceptsDerPemAndHex) {
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> der, core::ReadFileBytes(
      tv::VectorDir("tdx-v4-phala-b0c06f") + "/collateral/root_ca_crl.der"));
  EXPECT_THAT(DecodeCrlBytes(der), ::pml::testing::IsOkAndHolds(der));
  const std::string hex = core::HexEncode(der) + "\n";
  EXPECT_THAT(DecodeCrlBytes(core::AsBytes(hex)), ::pml::testing::IsOkAndHolds(der));
  const std::string pem = "-----BEGIN X509 CRL-----\n" + core::Base64Encode(der) +
                          "\n-----END X509 CRL-----\n";
  EXPECT_THAT(DecodeCrlBytes(core::AsBytes(pem)), ::pml::testing::IsOkAndHolds(der));
  EXPECT_THAT(DecodeCrlBytes(core::AsBytes(std::string("hello"))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("SGX_CRL_UNSUPPORTED_FORMAT")));
}

TEST(LoadCollateralDirTest, ReadsTheOutOfBandPckChain) {
  PML_ASSERT_OK_AND_ASSIGN(Collateral c, LoadCollateralDir(
      tv::VectorDir("neg-tdx-v4-intel-qvl-sample-fake-root") + "/collateral"));
  EXPECT_THAT(c.pck_certificate_chain, HasSubstr("-----BEGIN CERTIFICATE-----"));
}

TEST(LoadCollateralDirTest, MissingFileIsNotFound) {
  EXPECT_THAT(LoadCollateralDir("/nonexistent-dir"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("tcb_info.json")));
}

}  // namespace
}  // namespace pml::tdx
