// The KMS derivations against tests/vectors/kms-derivations.json, which an independent Python
// implementation computed from the formulas in derive.h; and the properties the design needs.

#include "services/kms/derive.h"

#include <string>

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/key.h"
#include "lib/crypto/secp256k1.h"

namespace pml::kms {
namespace {

using ::pml::testing::IsOk;

std::vector<uint8_t> Hex(const nlohmann::json& j, const char* k) {
  return *core::HexDecode(j[k].get<std::string>());
}

TEST(DeriveTest, MatchesTheIndependentVectors) {
  auto text = core::ReadFile(std::string(PML_REPO_DIR) + "/tests/vectors/kms-derivations.json");
  ASSERT_THAT(text, IsOk());
  const auto doc = nlohmann::json::parse(*text);
  ASSERT_GE(doc["cases"].size(), 5u);
  for (const auto& c : doc["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    RootSecret root{c["epoch"].get<uint32_t>(), crypto::SecretBytes(Hex(c, "root_ca_scalar")),
                    crypto::SecretBytes(Hex(c, "root_k256_scalar"))};
    auto d = DeriveAppSecrets(root, Hex(c, "app_id"), Hex(c, "instance_id"));
    ASSERT_THAT(d, IsOk());
    EXPECT_EQ(core::HexEncode(d->app_ca_scalar.span()), c["app_ca_scalar"]);
    EXPECT_EQ(core::HexEncode(d->disk_key.span()), c["disk_key"]);
    EXPECT_EQ(core::HexEncode(d->env_key.span()), c["env_key"]);
    EXPECT_EQ(core::HexEncode(d->env_public_key), c["env_public_key"]);
    EXPECT_EQ(core::HexEncode(d->k256_scalar.span()), c["k256_scalar"]);
    EXPECT_EQ(core::HexEncode(d->k256_public_key), c["k256_public_key"]);
    auto ca = crypto::PrivateKeyFromScalar(crypto::Curve::kP256, d->app_ca_scalar.span());
    ASSERT_THAT(ca, IsOk());
    EXPECT_EQ(core::HexEncode(*crypto::Secp256k1CompressedPublicKey(**ca)),
              c["app_ca_public_key"]);
  }
}

TEST(DeriveTest, EpochAppAndInstanceSeparateKeys) {
  RootSecret r1{1, crypto::SecretBytes(std::vector<uint8_t>(32, 1)),
                crypto::SecretBytes(std::vector<uint8_t>(32, 2))};
  RootSecret r2 = r1;
  r2.epoch = 2;
  const std::vector<uint8_t> app(20, 0xaa), other(20, 0xbb), i1(20, 1), i2(20, 2);
  auto a = *DeriveAppSecrets(r1, app, i1);
  auto b = *DeriveAppSecrets(r2, app, i1);
  auto c = *DeriveAppSecrets(r1, other, i1);
  auto d = *DeriveAppSecrets(r1, app, i2);
  auto again = *DeriveAppSecrets(r1, app, i1);
  EXPECT_TRUE(a.k256_scalar == again.k256_scalar && a.disk_key == again.disk_key);
  EXPECT_FALSE(a.k256_scalar == b.k256_scalar);
  EXPECT_FALSE(a.app_ca_scalar == b.app_ca_scalar);
  EXPECT_FALSE(a.k256_scalar == c.k256_scalar);
  EXPECT_FALSE(a.disk_key == d.disk_key);
  EXPECT_TRUE(a.k256_scalar == d.k256_scalar);  // only disk keys bind the instance
  EXPECT_TRUE(DeriveAppSecrets(r1, app, {})->disk_key.span().empty());
  EXPECT_TRUE(*DeriveDiskKey(r1, app, i1) == a.disk_key);
  EXPECT_FALSE(DeriveDiskKey(r1, app, {}).ok());
  EXPECT_FALSE(DeriveAppSecrets(r1, std::vector<uint8_t>(19), i1).ok());
  EXPECT_FALSE(DeriveAppSecrets(r1, app, std::vector<uint8_t>(5)).ok());
}

TEST(DeriveTest, RootSignaturesRecoverToTheRootKey) {
  RootSecret r{1, crypto::SecretBytes(std::vector<uint8_t>(32, 1)),
               crypto::SecretBytes(std::vector<uint8_t>(32, 2))};
  const std::vector<uint8_t> app(20, 0xaa);
  auto d = *DeriveAppSecrets(r, app, {});
  const auto msg = KmsIssuedMessage(app, d.k256_public_key);
  EXPECT_EQ(std::string(msg.begin(), msg.begin() + 18), "dstack-kms-issued:");
  auto sig = SignWithRootK256(r, msg);
  ASSERT_THAT(sig, IsOk());
  auto root_key = crypto::PrivateKeyFromScalar(crypto::Curve::kSecp256k1, r.k256_scalar.span());
  ASSERT_THAT(root_key, IsOk());
  EXPECT_EQ(*crypto::RecoverSecp256k1PublicKey(crypto::Keccak256(msg), *sig),
            *crypto::Secp256k1CompressedPublicKey(**root_key));
  const auto env = EnvPubKeyMessage(app, 0x0102030405060708ull, d.env_public_key);
  EXPECT_EQ(env.size(), 26u + 20 + 8 + 32);
  EXPECT_EQ(env[46], 0x01);
  EXPECT_EQ(EnvPubKeyMessage(app, std::nullopt, d.env_public_key).size(), 26u + 20 + 32);
}

}  // namespace
}  // namespace pml::kms
