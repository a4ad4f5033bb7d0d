#include "tools/pmlctl/pki.h"

#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/ossl.h"

namespace pml::pmlctl {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::HasSubstr;

class PkiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pml_pki_testXXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl + "/pki";
  }
  void TearDown() override { std::filesystem::remove_all(std::filesystem::path(dir_).parent_path()); }

  crypto::X509Ptr Load(const std::string& name) {
    auto pem = core::ReadFile(dir_ + "/" + name);
    EXPECT_TRUE(pem.ok());
    crypto::BioPtr bio = crypto::MemBio(*pem);
    return crypto::X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  }

  std::string dir_;
};

TEST_F(PkiTest, WritesEveryRoleAndServiceWithPrivateKeys) {
  ASSERT_THAT(InitPki({.dir = dir_, .extra_hosts = {"node1.example", "10.0.0.5"}}), IsOk());
  crypto::X509Ptr ca = Load("ca.pem");
  ASSERT_NE(ca, nullptr);
  crypto::X509StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca.get());
  std::vector<std::string> names = {"ca"};
  for (const auto& r : PkiRoles()) names.push_back(r);
  for (const auto& s : PkiServices()) names.push_back("server-" + s);
  for (const auto& n : names) {
    SCOPED_TRACE(n);
    struct stat st {};
    ASSERT_EQ(::stat((dir_ + "/" + n + ".key").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    crypto::X509Ptr cert = Load(n + ".pem");
    ASSERT_NE(cert, nullptr);
    crypto::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
    X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr);
    EXPECT_EQ(X509_verify_cert(ctx.get()), 1);
  }
  crypto::X509Ptr op = Load("operator.pem");
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(op.get(), NID_subject_alt_name, nullptr, nullptr));
  ASSERT_NE(sans, nullptr);
  ASSERT_EQ(sk_GENERAL_NAME_num(sans), 1);
  const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, 0);
  ASSERT_EQ(gn->type, GEN_URI);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier))),
            "spiffe://pml/operator/operator");
  GENERAL_NAMES_free(sans);

  crypto::X509Ptr server = Load("server-verifier.pem");
  EXPECT_EQ(X509_check_host(server.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(server.get(), "node1.example", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "10.0.0.5", 0), 1);
}

TEST_F(PkiTest, RefusesToOverwriteWithoutForce) {
  ASSERT_THAT(InitPki({.dir = dir_}), IsOk());
  EXPECT_THAT(InitPki({.dir = dir_}), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("--force")));
  EXPECT_THAT(InitPki({.dir = dir_, .force = true}), IsOk());
}

TEST_F(PkiTest, RejectsBadHost) {
  EXPECT_THAT(InitPki({.dir = dir_, .extra_hosts = {"a,b"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--host")));
}

}  // namespace
}  // namespace pml::pmlctl
