#include "lib/ratls/cert.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"

namespace pml::ratls {
namespace {

using ::pml::testing::IsOk;
using ::testing::HasSubstr;

crypto::X509Ptr Issue(const std::vector<crypto::CustomExtension>& ext, const EVP_PKEY& key) {
  crypto::CertSpec spec;
  spec.common_name = "t";
  spec.extensions = ext;
  auto c = crypto::IssueCertificate(spec, key, key, nullptr);
  EXPECT_THAT(c, IsOk());
  return *std::move(c);
}

TEST(RaTlsCertTest, ClaimsRoundTripThroughACertificate) {
  auto key = crypto::GenerateEcKey(crypto::Curve::kP256);
  ASSERT_THAT(key, IsOk());
  RaTlsClaims in;
  in.quote.assign(5000, 0x5a);  // long form DER length
  in.event_log = R"([{"imr":3}])";
  in.app_id.assign(20, 0xa1);
  in.usage = "app:custom";
  auto cert = Issue(RaTlsExtensions(in), **key);
  auto out = ParseRaTlsClaims(*cert);
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->quote, in.quote);
  EXPECT_EQ(out->event_log, in.event_log);
  EXPECT_EQ(out->app_id, in.app_id);
  EXPECT_EQ(out->usage, in.usage);
  // The extension value is a DER OCTET STRING of the bytes, as dstack writes it.
  auto raw = crypto::FindExtension(*cert, kOidAppId);
  ASSERT_THAT(raw, IsOk());
  ASSERT_TRUE(raw->has_value());
  EXPECT_EQ((**raw)[0], 0x04);
  EXPECT_EQ((**raw)[1], 20);
}

TEST(RaTlsCertTest, EmptyClaimsAddNoExtensions) {
  EXPECT_TRUE(RaTlsExtensions({}).empty());
  auto key = crypto::GenerateEcKey(crypto::Curve::kP256);
  ASSERT_THAT(key, IsOk());
  auto cert = Issue({}, **key);
  auto out = ParseRaTlsClaims(*cert);
  ASSERT_THAT(out, IsOk());
  EXPECT_TRUE(out->quote.empty());
  EXPECT_TRUE(out->usage.empty());
}

TEST(RaTlsCertTest, MalformedExtensionsAreRefusedNamingTheOid) {
  auto key = crypto::GenerateEcKey(crypto::Curve::kP256);
  ASSERT_THAT(key, IsOk());
  // Not an OCTET STRING.
  auto c1 = Issue({{kOidQuote, false, {0x02, 0x01, 0x05}}}, **key);
  auto r1 = ParseRaTlsClaims(*c1);
  EXPECT_FALSE(r1.ok());
  EXPECT_THAT(std::string(r1.status().message()), HasSubstr(kOidQuote));
  // Trailing bytes after the OCTET STRING.
  auto c2 = Issue({{kOidEventLog, false, {0x04, 0x01, 'x', 0x00}}}, **key);
  EXPECT_FALSE(ParseRaTlsClaims(*c2).ok());
  // Length running past the end.
  auto c3 = Issue({{kOidQuote, false, {0x04, 0x82, 0xff, 0xff, 0x00}}}, **key);
  EXPECT_FALSE(ParseRaTlsClaims(*c3).ok());
  // An app id that is not 20 bytes; a usage that is not printable.
  auto c4 = Issue({{kOidAppId, false, {0x04, 0x02, 0x01, 0x02}}}, **key);
  EXPECT_FALSE(ParseRaTlsClaims(*c4).ok());
  auto c5 = Issue({{kOidSpecialUsage, false, {0x04, 0x02, 'a', 0x01}}}, **key);
  EXPECT_FALSE(ParseRaTlsClaims(*c5).ok());
  // Duplicated extension.
  auto c6 = Issue({{kOidAppId, false, {0x04, 0x00}}, {kOidAppId, false, {0x04, 0x00}}}, **key);
  EXPECT_FALSE(ParseRaTlsClaims(*c6).ok());
}

TEST(RaTlsCertTest, BindingIsSha512OfTheTaggedSpki) {
  auto key = crypto::GenerateEcKey(crypto::Curve::kP256);
  auto other = crypto::GenerateEcKey(crypto::Curve::kP256);
  ASSERT_THAT(key, IsOk());
  ASSERT_THAT(other, IsOk());
  auto cert = Issue({}, **key);
  auto rd = CertReportData(*cert);
  ASSERT_THAT(rd, IsOk());
  auto spki = crypto::PublicKeyToDer(**key);
  ASSERT_THAT(spki, IsOk());
  auto want = ComputeReportData(ReportDataPurpose::kRaTlsCert, *spki);
  ASSERT_THAT(want, IsOk());
  EXPECT_EQ(*rd, *want);
  EXPECT_THAT(CheckBinding(*cert, *rd), IsOk());
  auto wrong = KeyReportData(**other);
  ASSERT_THAT(wrong, IsOk());
  EXPECT_EQ(CheckBinding(*cert, *wrong).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(CheckBinding(*cert, absl::Span<const uint8_t>(rd->data(), 32)).ok());
}

}  // namespace
}  // namespace pml::ratls
