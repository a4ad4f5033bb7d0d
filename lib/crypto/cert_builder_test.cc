#include "lib/crypto/cert_builder.h"

#include <openssl/x509v3.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/testing/status_matchers.h"

namespace pml::crypto {
namespace {

using ::pml::testing::StatusIs;
using ::testing::HasSubstr;

TEST(CertBuilderTest, IssuesChainThatOpensslVerifies) {
  PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr ca_key, GenerateEcKey(Curve::kP256));
  CertSpec ca_spec{.common_name = "test ca", .is_ca = true};
  PML_ASSERT_OK_AND_ASSIGN(X509Ptr ca, IssueCertificate(ca_spec, *ca_key, *ca_key, nullptr));
  PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr leaf_key, GenerateEcKey(Curve::kP256));
  CertSpec leaf_spec{.common_name = "leaf",
                     .dns_sans = {"localhost"},
                     .ip_sans = {"127.0.0.1"},
                     .uri_sans = {"spiffe://pml/operator/alice"},
                     .server_auth = true,
                     .client_auth = true};
  PML_ASSERT_OK_AND_ASSIGN(X509Ptr leaf, IssueCertificate(leaf_spec, *leaf_key, *ca_key, ca.get()));

  X509StorePtr store(X509_STORE_new());
  ASSERT_EQ(X509_STORE_add_cert(store.get(), ca.get()), 1);
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  ASSERT_EQ(X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), nullptr), 1);
  EXPECT_EQ(X509_verify_cert(ctx.get()), 1)
      << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
  EXPECT_EQ(X509_check_host(leaf.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(leaf.get(), "127.0.0.1", 0), 1);

  PML_ASSERT_OK_AND_ASSIGN(X509CrlPtr crl,
                           IssueCrl(*ca, *ca_key, {{0x01, 0x02}}, absl::Now(),
                                    absl::Now() + absl::Hours(1)));
  EXPECT_EQ(X509_CRL_verify(crl.get(), ca_key.get()), 1);
}

TEST(CertBuilderTest, RejectsSanInjection) {
  PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr key, GenerateEcKey(Curve::kP256));
  CertSpec spec{.common_name = "x", .dns_sans = {"a,DNS:evil"}};
  EXPECT_THAT(IssueCertificate(spec, *key, *key, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dns san")));
}

TEST(CertBuilderTest, CustomExtensionIsCarried) {
  PML_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr key, GenerateEcKey(Curve::kP256));
  CertSpec spec{.common_name = "x",
                .extensions = {{.oid = "1.3.6.1.4.1.62397.1.1", .der_value = {0x04, 0x01, 0xaa}}}};
  PML_ASSERT_OK_AND_ASSIGN(X509Ptr cert, IssueCertificate(spec, *key, *key, nullptr));
  ASN1_OBJECT* obj = OBJ_txt2obj("1.3.6.1.4.1.62397.1.1", 1);
  const int idx = X509_get_ext_by_OBJ(cert.get(), obj, -1);
  ASN1_OBJECT_free(obj);
  ASSERT_GE(idx, 0);
  const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(X509_get_ext(cert.get(), idx));
  ASSERT_EQ(ASN1_STRING_length(data), 3);
  EXPECT_EQ(ASN1_STRING_get0_data(data)[2], 0xaa);
}

}  // namespace
}  // namespace pml::crypto
