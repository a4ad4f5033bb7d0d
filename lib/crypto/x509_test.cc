#include "lib/crypto/x509.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/cert_builder.h"
#include "lib/crypto/key.h"

namespace pml::crypto {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct TestPki {
  EvpPkeyPtr root_key;
  X509Ptr root;
  EvpPkeyPtr ca_key;
  X509Ptr ca;
  EvpPkeyPtr leaf_key;
  X509Ptr leaf;
};

TestPki MakePki() {
  TestPki p;
  p.root_key = GenerateEcKey(Curve::kP256).value();
  p.root = IssueCertificate({.common_name = "Test Root CA", .is_ca = true}, *p.root_key,
                            *p.root_key, nullptr)
               .value();
  p.ca_key = GenerateEcKey(Curve::kP256).value();
  p.ca = IssueCertificate({.common_name = "Test Intermediate CA", .is_ca = true}, *p.ca_key,
                          *p.root_key, p.root.get())
             .value();
  p.leaf_key = GenerateEcKey(Curve::kP256).value();
  p.leaf = IssueCertificate({.common_name = "Test Leaf",
                             .serial = {0x01, 0x23},
                             .extensions = {{.oid = "1.2.840.113741.1.13.1",
                                             .der_value = {0x30, 0x03, 0x02, 0x01, 0x07}}}},
                            *p.leaf_key, *p.ca_key, p.ca.get())
               .value();
  return p;
}

std::string SharedDir() {
  const char* d = std::getenv("PML_SHARED_DIR");
  return d == nullptr ? "" : d;
}

TEST(X509Test, ParsesPemChainInOrderAndIgnoresTrailingNul) {
  TestPki p = MakePki();
  std::string pem = CertificateToPem(*p.leaf).value() + "junk\n" +
                    CertificateToPem(*p.ca).value() + CertificateToPem(*p.root).value();
  pem.push_back('\0');
  PML_ASSERT_OK_AND_ASSIGN(std::vector<X509Ptr> certs, ParsePemCertificates(pem));
  ASSERT_EQ(certs.size(), 3u);
  EXPECT_EQ(SubjectCommonName(*certs[0]), "Test Leaf");
  EXPECT_EQ(SubjectCommonName(*certs[1]), "Test Intermediate CA");
  EXPECT_EQ(IssuerCommonName(*certs[1]), "Test Root CA");
  EXPECT_EQ(SubjectCommonName(*certs[2]), "Test Root CA");
}

TEST(X509Test, RejectsEmptyAndBrokenPem) {
  EXPECT_THAT(ParsePemCertificates("hello"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no pem certificate")));
  EXPECT_THAT(ParsePemCertificates("-----BEGIN CERTIFICATE-----\nAAAA\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no END line")));
  EXPECT_THAT(
      ParsePemCertificates("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base64")));
  EXPECT_THAT(
      ParsePemCertificates("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("certificate 0")));
}

TEST(X509Test, CapsCertificateCount) {
  TestPki p = MakePki();
  const std::string one = CertificateToPem(*p.root).value();
  EXPECT_THAT(ParsePemCertificates(one + one + one, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than 2")));
}

TEST(X509Test, DerRoundTripAndTrailingBytes) {
  TestPki p = MakePki();
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> der, CertificateDer(*p.leaf));
  EXPECT_THAT(ParseDerCertificate(der), IsOk());
  std::vector<uint8_t> extra = der;
  extra.push_back(0);
  EXPECT_THAT(ParseDerCertificate(extra),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("trailing")));
  std::vector<uint8_t> two = der;
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> ca_der, CertificateDer(*p.ca));
  two.insert(two.end(), ca_der.begin(), ca_der.end());
  PML_ASSERT_OK_AND_ASSIGN(std::vector<X509Ptr> certs, ParseDerCertificates(two));
  EXPECT_EQ(certs.size(), 2u);
  der.resize(der.size() / 2);
  EXPECT_THAT(ParseDerCertificate(der), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("malformed")));
}

TEST(X509Test, VerifiesOneLinkAndRejectsWrongIssuerKey) {
  TestPki p = MakePki();
  EXPECT_THAT(VerifyCertificateSignature(*p.leaf, *p.ca_key), IsOk());
  EXPECT_THAT(VerifyCertificateSignature(*p.ca, *p.root_key), IsOk());
  EXPECT_THAT(VerifyCertificateSignature(*p.root, *p.root_key), IsOk());
  EXPECT_THAT(VerifyCertificateSignature(*p.leaf, *p.root_key),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("does not verify")));
  EXPECT_TRUE(IssuerNameMatches(*p.leaf, *p.ca));
  EXPECT_FALSE(IssuerNameMatches(*p.leaf, *p.root));
}

TEST(X509Test, PublicKeyIsTheSubjectKey) {
  TestPki p = MakePki();
  PML_ASSERT_OK_AND_ASSIGN(const EVP_PKEY* k, CertificatePublicKey(*p.leaf));
  EXPECT_EQ(PublicKeyToRawPoint(*k).value(), PublicKeyToRawPoint(*p.leaf_key).value());
}

TEST(X509Test, CrlSignatureIssuerTimesAndRevocation) {
  TestPki p = MakePki();
  const absl::Time tu = absl::FromUnixSeconds(1700000000);
  const absl::Time nu = tu + absl::Hours(24);
  PML_ASSERT_OK_AND_ASSIGN(X509CrlPtr crl, IssueCrl(*p.ca, *p.ca_key, {{0x01, 0x23}, {0x05}}, tu, nu));
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> der, CrlToDer(*crl));
  PML_ASSERT_OK_AND_ASSIGN(X509CrlPtr parsed, ParseCrl(der));
  EXPECT_THAT(VerifyCrlSignature(*parsed, *p.ca_key), IsOk());
  EXPECT_THAT(VerifyCrlSignature(*parsed, *p.root_key),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("crl signature")));
  EXPECT_TRUE(CrlIssuerMatchesCertIssuer(*parsed, *p.leaf));
  EXPECT_FALSE(CrlIssuerMatchesCertIssuer(*parsed, *p.ca));
  EXPECT_TRUE(IsRevoked(*parsed, *p.leaf));
  EXPECT_FALSE(IsRevoked(*parsed, *p.ca));
  EXPECT_THAT(RevokedSerials(*parsed),
              ::testing::UnorderedElementsAre(std::vector<uint8_t>{0x01, 0x23},
                                              std::vector<uint8_t>{0x05}));
  PML_ASSERT_OK_AND_ASSIGN(CrlTimes t, CrlValidity(*parsed));
  EXPECT_EQ(t.this_update, tu);
  EXPECT_EQ(t.next_update, nu);

  PML_ASSERT_OK_AND_ASSIGN(std::string pem, CrlToPem(*crl));
  EXPECT_THAT(ParseCrl(core::AsBytes(pem)), IsOk());
  der.push_back(0);
  EXPECT_THAT(ParseCrl(der), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("trailing")));
}

TEST(X509Test, SerialAndValidity) {
  TestPki p = MakePki();
  EXPECT_THAT(SerialNumber(*p.leaf), ElementsAre(0x01, 0x23));
  PML_ASSERT_OK_AND_ASSIGN(Validity v, CertificateValidity(*p.leaf));
  EXPECT_LT(v.not_before, v.not_after);
}

TEST(X509Test, FindsExtensionByOid) {
  TestPki p = MakePki();
  PML_ASSERT_OK_AND_ASSIGN(auto ext, FindExtension(*p.leaf, "1.2.840.113741.1.13.1"));
  ASSERT_TRUE(ext.has_value());
  EXPECT_THAT(*ext, ElementsAre(0x30, 0x03, 0x02, 0x01, 0x07));
  PML_ASSERT_OK_AND_ASSIGN(auto none, FindExtension(*p.leaf, "1.2.3.4"));
  EXPECT_FALSE(none.has_value());
  EXPECT_THAT(FindExtension(*p.leaf, "1..2"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad oid")));
}

TEST(X509Test, DerReaderWalksAndRejectsOverruns) {
  const std::vector<uint8_t> der = {0x30, 0x08, 0x06, 0x03, 0x2a, 0x86, 0x48, 0x02, 0x01, 0x05};
  DerReader r(der);
  EXPECT_EQ(r.PeekTag(), kDerSequence);
  PML_ASSERT_OK_AND_ASSIGN(DerTlv seq, r.Expect(kDerSequence, "seq"));
  EXPECT_EQ(seq.raw.size(), der.size());
  EXPECT_EQ(seq.content.size(), 8u);
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r.PeekTag(), -1);
  DerReader inner(seq.content);
  PML_ASSERT_OK_AND_ASSIGN(DerTlv oid, inner.Expect(kDerOid, "oid"));
  EXPECT_THAT(DerOidToString(oid.content), ::pml::testing::IsOkAndHolds(std::string("1.2.840")));
  PML_ASSERT_OK_AND_ASSIGN(DerTlv i, inner.Expect(kDerInteger, "int"));
  EXPECT_THAT(DerNonNegativeInteger(i.content), ::pml::testing::IsOkAndHolds(5));
  EXPECT_TRUE(inner.empty());

  const std::vector<uint8_t> overrun = {0x30, 0x05, 0x01};
  DerReader bad(overrun);
  EXPECT_THAT(bad.Next("x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overruns")));
  const std::vector<uint8_t> indefinite = {0x30, 0x80, 0x00, 0x00};
  DerReader bad2(indefinite);
  EXPECT_THAT(bad2.Next("x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("indefinite")));
  EXPECT_THAT(DerNonNegativeInteger(std::vector<uint8_t>{0x80}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative")));
  EXPECT_THAT(DerOidToString(std::vector<uint8_t>{0x2a, 0x86}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("malformed oid")));
}

// The Intel SGX Root CA from the shared vectors: a real self-signed P-256 certificate.
TEST(X509Test, IntelRootIsSelfSignedWithExpectedName) {
  PML_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> der,
                           core::ReadFileBytes(SharedDir() + "/vectors/tdx/_trust/intel_sgx_root_ca.der"));
  PML_ASSERT_OK_AND_ASSIGN(X509Ptr root, ParseDerCertificate(der));
  EXPECT_EQ(SubjectCommonName(*root), "Intel SGX Root CA");
  EXPECT_TRUE(IssuerNameMatches(*root, *root));
  PML_ASSERT_OK_AND_ASSIGN(const EVP_PKEY* key, CertificatePublicKey(*root));
  EXPECT_THAT(VerifyCertificateSignature(*root, *key), IsOk());
  EXPECT_THAT(NameToString(*X509_get_subject_name(root.get())), HasSubstr("CN=Intel SGX Root CA"));
}

}  // namespace
}  // namespace pml::crypto
