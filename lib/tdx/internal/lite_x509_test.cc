#include "lib/tdx/internal/lite_x509.h"

#include <openssl/x509v3.h>

#include <algorithm>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/key.h"
#include "lib/crypto/x509.h"
#include "lib/tdx/collateral.h"
#include "lib/tdx/quote.h"
#include "lib/tdx/testing/vectors.h"

namespace pml::tdx::internal {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;
namespace tv = ::pml::tdx::testing;

std::shared_ptr<const P256Group> Group() { return P256Group::Create().value(); }

std::vector<uint8_t> Der(const X509& cert) { return crypto::CertificateDer(cert).value(); }

// The reader must agree with OpenSSL on every field it reads, for every certificate of every
// vector chain.
TEST(LiteCertTest, AgreesWithOpensslOnVectorCertificates) {
  auto group = Group();
  size_t checked = 0;
  for (const std::string& name : tv::ListVectorDirs()) {
    auto c = LoadCollateralJsonFile(tv::VectorDir(name) + "/collateral.json");
    ASSERT_THAT(c, IsOk());
    auto q = ParseQuote(tv::ReadQuoteBytes(name));
    std::string pems = c->tcb_info_issuer_chain + c->pck_crl_issuer_chain + c->pck_certificate_chain;
    if (q.ok()) pems += std::string(q->PckCertChainPem());
    PML_ASSERT_OK_AND_ASSIGN(auto ders, PemCertificatesToDer(pems, 64));
    for (const std::vector<uint8_t>& der : ders) {
      PML_ASSERT_OK_AND_ASSIGN(crypto::X509Ptr ossl, crypto::ParseDerCertificate(der));
      PML_ASSERT_OK_AND_ASSIGN(auto lite, LiteCert::Parse(der, *group));
      EXPECT_EQ(lite->subject_cn(), crypto::SubjectCommonName(*ossl));
      EXPECT_EQ(lite->issuer_cn(), crypto::IssuerCommonName(*ossl));
      PML_ASSERT_OK_AND_ASSIGN(crypto::Validity v, crypto::CertificateValidity(*ossl));
      EXPECT_EQ(lite->not_before(), v.not_before);
      EXPECT_EQ(lite->not_after(), v.not_after);
      EXPECT_EQ(lite->serial(), crypto::SerialNumber(*ossl));
      PML_ASSERT_OK_AND_ASSIGN(const EVP_PKEY* key, crypto::CertificatePublicKey(*ossl));
      PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> point, crypto::PublicKeyToRawPoint(*key));
      EXPECT_TRUE(std::equal(point.begin(), point.end(), lite->key().point().begin()));
      EXPECT_EQ(lite->is_ca(), X509_check_ca(ossl.get()) > 0);
      for (const LiteExtension& e : lite->extensions()) {
        PML_ASSERT_OK_AND_ASSIGN(auto value, crypto::FindExtension(*ossl, e.oid));
        ASSERT_TRUE(value.has_value()) << e.oid;
        EXPECT_EQ(*value, e.value);
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 50u);
}

TEST(LiteCertTest, VerifiesLinksOfARealChain) {
  auto group = Group();
  const std::vector<uint8_t> quote = tv::ReadQuoteBytes("tdx-v4-phala-b0c06f");
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(quote));
  PML_ASSERT_OK_AND_ASSIGN(auto ders, PemCertificatesToDer(q.PckCertChainPem()));
  ASSERT_EQ(ders.size(), 3u);
  PML_ASSERT_OK_AND_ASSIGN(auto leaf, LiteCert::Parse(ders[0], *group));
  PML_ASSERT_OK_AND_ASSIGN(auto ca, LiteCert::Parse(ders[1], *group));
  PML_ASSERT_OK_AND_ASSIGN(auto root, LiteCert::Parse(ders[2], *group));
  EXPECT_THAT(leaf->VerifySignedBy(ca->key()), IsOk());
  EXPECT_THAT(ca->VerifySignedBy(root->key()), IsOk());
  EXPECT_THAT(root->VerifySignedBy(root->key()), IsOk());
  EXPECT_THAT(leaf->VerifySignedBy(root->key()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("does not verify")));
  EXPECT_TRUE(root->IsSelfIssued());
  EXPECT_FALSE(leaf->IsSelfIssued());
  EXPECT_EQ(leaf->issuer_der(), ca->subject_der());
  EXPECT_NE(leaf->FindExtension("1.2.840.113741.1.13.1"), nullptr);
  EXPECT_EQ(leaf->FindExtension("1.2.3"), nullptr);
}

TEST(LiteCertTest, RejectsEveryTruncationAndBitFlipOfTheSignature) {
  auto group = Group();
  PML_ASSERT_OK_AND_ASSIGN(Quote q, ParseQuote(tv::ReadQuoteBytes("tdx-v4-phala-b0c06f")));
  PML_ASSERT_OK_AND_ASSIGN(auto ders, PemCertificatesToDer(q.PckCertChainPem()));
  const std::vector<uint8_t>& der = ders[0];
  for (size_t n = 0; n < der.size(); ++n) {
    std::vector<uint8_t> cut(der.begin(), der.begin() + static_cast<long>(n));
    ASSERT_FALSE(LiteCert::Parse(cut, *group).ok()) << n;
  }
  PML_ASSERT_OK_AND_ASSIGN(auto ca, LiteCert::Parse(ders[1], *group));
  std::vector<uint8_t> flipped = der;
  flipped[flipped.size() - 5] ^= 1;  // inside s
  auto leaf = LiteCert::Parse(flipped, *group);
  if (leaf.ok()) {
    EXPECT_FALSE((*leaf)->VerifySignedBy(ca->key()).ok());
  }
}

TEST(LiteCertTest, RejectsOtherCurvesAlgorithmsAndCriticalExtensions) {
  auto group = Group();
  PML_ASSERT_OK_AND_ASSIGN(crypto::EvpPkeyPtr p256, crypto::GenerateEcKey(crypto::Curve::kP256));
  PML_ASSERT_OK_AND_ASSIGN(crypto::EvpPkeyPtr p384, crypto::GenerateEcKey(crypto::Curve::kP384));
  PML_ASSERT_OK_AND_ASSIGN(crypto::X509Ptr ok_cert,
                           crypto::IssueCertificate({.common_name = "ok", .is_ca = true}, *p256, *p256, nullptr));
  PML_ASSERT_OK_AND_ASSIGN(auto parsed, LiteCert::Parse(Der(*ok_cert), *group));
  EXPECT_TRUE(parsed->is_ca());
  EXPECT_EQ(parsed->subject_cn(), "ok");
  EXPECT_THAT(parsed->VerifySignedBy(parsed->key()), IsOk());

  PML_ASSERT_OK_AND_ASSIGN(crypto::X509Ptr p384_key,
                           crypto::IssueCertificate({.common_name = "k"}, *p384, *p256, nullptr));
  EXPECT_THAT(LiteCert::Parse(Der(*p384_key), *group),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prime256v1")));
  PML_ASSERT_OK_AND_ASSIGN(crypto::X509Ptr sha384,
                           crypto::IssueCertificate({.common_name = "k", .digest = crypto::Digest::kSha384},
                                                    *p256, *p256, nullptr));
  EXPECT_THAT(LiteCert::Parse(Der(*sha384), *group),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ecdsa-with-SHA256")));
  PML_ASSERT_OK_AND_ASSIGN(
      crypto::X509Ptr critical,
      crypto::IssueCertificate({.common_name = "k",
                                .extensions = {{.oid = "1.3.6.1.4.1.99999.1", .critical = true,
                                                .der_value = {0x05, 0x00}}}},
                               *p256, *p256, nullptr));
  EXPECT_THAT(LiteCert::Parse(Der(*critical), *group),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unsupported critical")));
}

TEST(LiteCrlTest, AgreesWithOpensslOnVectorCrls) {
  for (const std::string& name : tv::ListVectorDirs()) {
    SCOPED_TRACE(name);
    auto c = LoadCollateralJsonFile(tv::VectorDir(name) + "/collateral.json");
    ASSERT_THAT(c, IsOk());
    for (const std::vector<uint8_t>* der : {&c->pck_crl, &c->root_ca_crl}) {
      PML_ASSERT_OK_AND_ASSIGN(crypto::X509CrlPtr ossl, crypto::ParseCrl(*der));
      PML_ASSERT_OK_AND_ASSIGN(auto lite, LiteCrl::Parse(*der));
      PML_ASSERT_OK_AND_ASSIGN(crypto::CrlTimes t, crypto::CrlValidity(*ossl));
      EXPECT_EQ(lite->this_update(), t.this_update);
      EXPECT_EQ(lite->next_update(), t.next_update);
      EXPECT_EQ(lite->issuer_cn(), crypto::CommonName(*X509_CRL_get_issuer(ossl.get())));
      const auto serials = crypto::RevokedSerials(*ossl);
      EXPECT_EQ(lite->revoked_count(), serials.size());
      for (const auto& s : serials) EXPECT_TRUE(lite->IsRevoked(s));
      EXPECT_FALSE(lite->IsRevoked(std::vector<uint8_t>{0x42, 0x42, 0x42}));
    }
  }
}

TEST(LiteCrlTest, VerifiesAndRejectsTruncation) {
  auto group = Group();
  PML_ASSERT_OK_AND_ASSIGN(crypto::EvpPkeyPtr key, crypto::GenerateEcKey(crypto::Curve::kP256));
  PML_ASSERT_OK_AND_ASSIGN(crypto::X509Ptr ca,
                           crypto::IssueCertificate({.common_name = "ca", .is_ca = true}, *key, *key, nullptr));
  PML_ASSERT_OK_AND_ASSIGN(crypto::X509CrlPtr crl,
                           crypto::IssueCrl(*ca, *key, {{0x01, 0x02}}, absl::FromUnixSeconds(1e9),
                                            absl::FromUnixSeconds(1e9 + 3600)));
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> der, crypto::CrlToDer(*crl));
  PML_ASSERT_OK_AND_ASSIGN(auto lite, LiteCrl::Parse(der));
  PML_ASSERT_OK_AND_ASSIGN(auto ca_lite, LiteCert::Parse(Der(*ca), *group));
  EXPECT_THAT(lite->VerifySignedBy(ca_lite->key()), IsOk());
  EXPECT_TRUE(lite->IsRevoked(std::vector<uint8_t>{0x01, 0x02}));
  EXPECT_EQ(lite->issuer_der(), ca_lite->subject_der());
  for (size_t n = 0; n < der.size(); ++n) {
    ASSERT_FALSE(LiteCrl::Parse(absl::MakeConstSpan(der.data(), n)).ok()) << n;
  }
}

TEST(PemTest, SplitsAndDecodes) {
  EXPECT_THAT(SplitPemCertificates("nothing"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no pem")));
  EXPECT_THAT(SplitPemCertificates("-----BEGIN CERTIFICATE-----\nAA"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no END")));
  PML_ASSERT_OK_AND_ASSIGN(auto blocks, SplitPemCertificates(
      "x-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----y"));
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_THAT(DecodePemCertificate(blocks[0]),
              ::pml::testing::IsOkAndHolds(std::vector<uint8_t>{0x00, 0x01, 0x02}));
  EXPECT_THAT(DecodePemCertificate("-----BEGIN CERTIFICATE-----!!-----END CERTIFICATE-----"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base64")));
  auto decode = [](absl::string_view b64) {
    return DecodePemCertificate(std::string("-----BEGIN CERTIFICATE-----\n") + std::string(b64) +
                                "\n-----END CERTIFICATE-----");
  };
  EXPECT_THAT(decode("AAE="), ::pml::testing::IsOkAndHolds(std::vector<uint8_t>{0x00, 0x01}));
  EXPECT_THAT(decode("AA=="), ::pml::testing::IsOkAndHolds(std::vector<uint8_t>{0x00}));
  EXPECT_FALSE(decode("AAF=").ok());   // non-zero unused bits
  EXPECT_FALSE(decode("AAE").ok());    // not a whole quantum
  EXPECT_FALSE(decode("A=AA").ok());   // padding in the middle
  EXPECT_FALSE(decode("A===").ok());   // too much padding
}

}  // namespace
}  // namespace pml::tdx::internal
