#include "services/attestation/signing_keys.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/file.h"
#include "lib/core/status.h"
#include "lib/core/testing/status_matchers.h"
#include "lib/crypto/jwt.h"
#include "lib/crypto/key.h"

namespace pml::attestation {
namespace {

using ::pml::testing::IsOk;
using ::pml::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Time kT0 = absl::FromUnixSeconds(1700000000);
constexpr absl::Duration kLifetime = absl::Hours(1);

class SigningKeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "pml_signing_keys_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/keys";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  std::string KeyFile(absl::string_view kid) const {
    return absl::StrCat(dir_, "/", kid, ".key.pem");
  }

  static mode_t Mode(const std::string& path) {
    struct stat st {};
    PML_CHECK(::stat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
  }

  static nlohmann::json Claims(absl::Time now) {
    return {{"iss", "pml-verifier"}, {"exp", absl::ToUnixSeconds(now + absl::Minutes(5))}};
  }

  static crypto::VerifyJwtOptions Options(absl::Time now) {
    crypto::VerifyJwtOptions o;
    o.now = now;
    o.issuer = "pml-verifier";
    return o;
  }

  static std::vector<std::string> JwksKids(const nlohmann::json& jwks) {
    std::vector<std::string> kids;
    for (const auto& k : jwks["keys"]) {
      kids.push_back(k["kid"].get<std::string>());
    }
    return kids;
  }

  std::string root_;
  std::string dir_;
};

TEST_F(SigningKeyStoreTest, FirstOpenGeneratesKeyWithPrivateModes) {
  PML_ASSERT_OK_AND_ASSIGN(auto store, SigningKeyStore::Open(dir_, kT0));
  const std::string kid = store->CurrentKid();
  EXPECT_EQ(kid.size(), 43u);
  EXPECT_EQ(Mode(dir_), 0700u);
  EXPECT_EQ(Mode(KeyFile(kid)), 0600u);
  PML_ASSERT_OK_AND_ASSIGN(std::string state_text, core::ReadFile(dir_ + "/state.json"));
  const nlohmann::json state = nlohmann::json::parse(state_text);
  EXPECT_EQ(state["current"], kid);
  ASSERT_EQ(state["keys"].size(), 1u);
  EXPECT_EQ(state["keys"][0]["kid"], kid);
  EXPECT_EQ(state["keys"][0]["created"], "2023-11-14T22:13:20+00:00");
  EXPECT_FALSE(state["keys"][0].contains("retired_at"));

  // The key file is PKCS#8 PEM whose public key has the kid as its thumbprint.
  PML_ASSERT_OK_AND_ASSIGN(std::string pem, core::ReadFile(KeyFile(kid)));
  EXPECT_THAT(pem, HasSubstr("-----BEGIN PRIVATE KEY-----"));
  PML_ASSERT_OK_AND_ASSIGN(crypto::EvpPkeyPtr key, crypto::PrivateKeyFromPem(pem));
  EXPECT_THAT(crypto::JwkThumbprint(*key), ::pml::testing::IsOkAndHolds(kid));

  ASSERT_EQ(store->Keys().size(), 1u);
  EXPECT_EQ(store->Keys()[0].created, kT0);
}

TEST_F(SigningKeyStoreTest, ReopenKeepsKidAndKeys) {
  std::string kid;
  std::string rotated;
  {
    PML_ASSERT_OK_AND_ASSIGN(auto store, SigningKeyStore::Open(dir_, kT0));
    kid = store->CurrentKid();
    PML_ASSERT_OK_AND_ASSIGN(rotated, store->Rotate(kT0 + absl::Minutes(1)));
  }
  PML_ASSERT_OK_AND_ASSIGN(auto store, SigningKeyStore::Open(dir_, kT0 + absl::Hours(5)));
  EXPECT_EQ(store->CurrentKid(), rotated);
  const std::vector<SigningKeyInfo> keys = store->Keys();
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].kid, kid);
  EXPECT_EQ(keys[0].created, kT0);
  EXPECT_EQ(keys[0].retired_at, kT0 + absl::Minutes(1));
  EXPECT_EQ(keys[1].kid, rotated);
  EXPECT_EQ(keys[1].retired_at, std::nullopt);
  // The reopened store signs with the same key a verifier already trusts.
  PML_ASSERT_OK_AND_ASSIGN(crypto::JwkSet jwks,
                           crypto::JwkSet::Parse(store->Jwks(kT0 + absl::Minutes(2), kLifetime)));
  PML_ASSERT_OK_AND_ASSIGN(std::string token, store->Sign(Claims(kT0), kT0));
  EXPECT_THAT(crypto::VerifyJwt(token, jwks, Options(kT0)), IsOk());
}

TEST_F(SigningKeyStoreTest, ExistingDirectoryIsKeptAndWritableByOthersRefused) {
  ASSERT_THAT(core::MakeDirs(dir_, 0700), IsOk());
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  EXPECT_THAT(SigningKeyStore::Open(dir_, kT0),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("group/world writable")));
  ASSERT_EQ(::chmod(dir_.c_str(), 0750), 0);
  EXPECT_THAT(SigningKeyStore::Open(dir_, kT0), IsOk());
}

TEST_F(SigningKeyStoreTest, ReopenRefusesReadableKeyFile) {
  std::string kid;
  {
    PML_ASSERT_OK_AND_ASSIGN(auto store, SigningKeyStore::Open(dir_, kT0));
    kid = store->CurrentKid();
  }
  for (mode_t mode : {0644, 0640, 0604, 0660}) {
    SCOPED_TRACE(mode);
    ASSERT_EQ(::chmod(KeyFile(kid).c_str(), mode), 0);
    EXPECT_THAT(SigningKeyStore::Open(dir_, kT0),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr(absl::StrCat(kid, ".key.pem is group/world accessible"))));
  }
  ASSERT_EQ(::chmod(KeyFile(kid).c_str(), 0400), 0);
  EXPECT_THAT(SigningKeyStore::Open(dir_, kT0), IsOk());
}

TEST_F(SigningKeyStoreTest, ReopenRefusesMissingKeyFile) {
  std::string kid;
  {
    PML_ASSERT_OK_AND_ASSIGN(auto store, SigningKeyStore::Open(dir_, kT0));
    kid = store->CurrentKid();
  }
  ASSERT_TRUE(std::filesystem::remove(KeyFile(kid)));
  EXPECT_THAT(SigningKeyStore::Open(dir_, kT0),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(kid + ".key.pem")));
}

TEST_F(SigningKeyStoreTest, ReopenRefusesSymlinkedKeyFile) {
  std::string kid;
  {
    PML_ASSERT_OK_AND_ASSIGN(auto store, SigningKeyStore::Open(dir_, kT0));
    kid = store->CurrentKid();
  }
  const std::string moved = root_ + "/elsewhere.pem";
  std::filesystem::rename(KeyFile(kid), moved);
  std::filesystem::create_symlink(moved, KeyFile(kid));
  EXPECT_THAT(SigningKeyStore::Open(dir_, kT0),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is a symlink")));
}

TEST_F(SigningKeyStoreTest, ReopenRefusesKeyWhoseThumbprintIsNotItsKid) {
  std::string kid;
  {
    PML_ASSERT_OK_AND_ASSIGN(auto store, SigningKeyStore::Open(dir_, kT0));
    kid = store->CurrentKid();
  }
  PML_ASSERT_OK_AND_ASSIGN(crypto::EvpPkeyPtr other, crypto::GenerateEcKey(crypto::Curve::kP256));
  PML_ASSERT_OK_AND_ASSIGN(crypto::SecretBytes pem, crypto::PrivateKeyToPem(*other));
  ASSERT_THAT(core::WriteFileAtomic(
                  KeyFile(kid),
                  absl::string_view(reinterpret_cast<const char*>(pem.data()), pem.size()), 0600),
              IsOk());
  EXPECT_THAT(SigningKeyStore::Open(dir_, kT0),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not its kid")));
}

TEST_F(SigningKeyStoreTest, ReopenRefusesMalformedState) {
  std::string kid;
  {
    PML_ASSERT_OK_AND_ASSIGN(auto store, SigningKeyStore::Open(dir_, kT0));
    kid = store->CurrentKid();
  }
  const nlohmann::json good_key = {{"kid", kid}, {"created", "2023-11-14T22:13:20Z"}};
  struct Case {
    const char* name;
    std::string state;
    absl::StatusCode code;
    const char* reason;
  };
  const Case cases[] = {
      {"not json", "{", absl::StatusCode::kInvalidArgument, "not a JSON object"},
      {"no current", nlohmann::json({{"keys", {good_key}}}).dump(),
       absl::StatusCode::kInvalidArgument, "current is not a kid"},
      {"path in kid",
       nlohmann::json(
           {{"current", kid},
            {"keys", {{{"kid", "../../etc/passwd"}, {"created", "2023-11-14T22:13:20Z"}}}}})
           .dump(),
       absl::StatusCode::kInvalidArgument, "keys[0] kid is not a 43-character thumbprint"},
      {"bad time",
       nlohmann::json({{"current", kid}, {"keys", {{{"kid", kid}, {"created", "yesterday"}}}}})
           .dump(),
       absl::StatusCode::kInvalidArgument, "created is not an RFC 3339 time"},
      {"current missing",
       nlohmann::json({{"current", std::string(43, 'A')}, {"keys", {good_key}}}).dump(),
       absl::StatusCode::kInvalidArgument, "is not among its keys"},
      {"current retired",
       nlohmann::json({{"current", kid},
                       {"keys",
                        {{{"kid", kid},
                          {"created", "2023-11-14T22:13:20Z"},
                          {"retired_at", "2023-11-14T22:13:21Z"}}}}})
           .dump(),
       absl::StatusCode::kFailedPrecondition, "is marked retired"},
      {"duplicate", nlohmann::json({{"current", kid}, {"keys", {good_key, good_key}}}).dump(),
       absl::StatusCode::kInvalidArgument, "repeats kid"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_THAT(core::WriteFileAtomic(dir_ + "/state.json", c.state, 0600), IsOk());
    EXPECT_THAT(SigningKeyStore::Open(dir_, kT0), StatusIs(c.code, HasSubstr(c.reason)));
  }
  ASSERT_THAT(
      core::WriteFileAtomic(dir_ + "/state.json",
                            nlohmann::json({{"current", kid}, {"keys", {good_key}}}).dump(), 0600),
      IsOk());
  EXPECT_THAT(SigningKeyStore::Open(dir_, kT0), IsOk());
}

TEST_F(SigningKeyStoreTest, RotateMakesNewKeyCurrentAndKeepsOldInJwksForTokenLifetime) {
  PML_ASSERT_OK_AND_ASSIGN(auto store, SigningKeyStore::Open(dir_, kT0));
  const std::string old_kid = store->CurrentKid();
  PML_ASSERT_OK_AND_ASSIGN(std::string old_token, store->Sign(Claims(kT0), kT0));

  const absl::Time rotated_at = kT0 + absl::Minutes(2);
  PML_ASSERT_OK_AND_ASSIGN(std::string new_kid, store->Rotate(rotated_at));
  EXPECT_NE(new_kid, old_kid);
  EXPECT_EQ(store->CurrentKid(), new_kid);
  EXPECT_EQ(Mode(KeyFile(new_kid)), 0600u);
  EXPECT_TRUE(core::PathExists(KeyFile(old_kid)));

  // Current key first; the retired key stays until retired_at + lifetime.
  EXPECT_THAT(JwksKids(store->Jwks(rotated_at, kLifetime)), ElementsAre(new_kid, old_kid));
  EXPECT_THAT(JwksKids(store->Jwks(rotated_at + kLifetime - absl::Seconds(1), kLifetime)),
              ElementsAre(new_kid, old_kid));
  EXPECT_THAT(JwksKids(store->Jwks(rotated_at + kLifetime, kLifetime)), ElementsAre(new_kid));

  // A token signed before the rotation verifies with the JWKS published after it.
  PML_ASSERT_OK_AND_ASSIGN(crypto::JwkSet jwks,
                           crypto::JwkSet::Parse(store->Jwks(rotated_at, kLifetime)));
  EXPECT_THAT(crypto::VerifyJwt(old_token, jwks, Options(rotated_at)), IsOk());
  PML_ASSERT_OK_AND_ASSIGN(std::string new_token, store->Sign(Claims(rotated_at), rotated_at));
  PML_ASSERT_OK_AND_ASSIGN(crypto::VerifiedJwt v,
                           crypto::VerifyJwt(new_token, jwks, Options(rotated_at)));
  EXPECT_EQ(v.header["kid"], new_kid);

  // Once pruned, the old key's tokens no longer verify; the key stays on disk.
  PML_ASSERT_OK_AND_ASSIGN(crypto::JwkSet pruned,
                           crypto::JwkSet::Parse(store->Jwks(rotated_at + kLifetime, kLifetime)));
  EXPECT_THAT(crypto::VerifyJwt(old_token, pruned, Options(rotated_at)),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("is not a known key")));
  EXPECT_EQ(store->Keys().size(), 2u);
}

TEST_F(SigningKeyStoreTest, RotatingTwiceOrdersRetiredKeysNewestFirst) {
  PML_ASSERT_OK_AND_ASSIGN(auto store, SigningKeyStore::Open(dir_, kT0));
  const std::string k0 = store->CurrentKid();
  PML_ASSERT_OK_AND_ASSIGN(std::string k1, store->Rotate(kT0 + absl::Minutes(10)));
  PML_ASSERT_OK_AND_ASSIGN(std::string k2, store->Rotate(kT0 + absl::Minutes(20)));
  EXPECT_THAT(JwksKids(store->Jwks(kT0 + absl::Minutes(30), kLifetime)), ElementsAre(k2, k1, k0));
  EXPECT_THAT(JwksKids(store->Jwks(kT0 + absl::Minutes(75), kLifetime)), ElementsAre(k2, k1));
}

TEST_F(SigningKeyStoreTest, SignedTokenVerifiesWithPublishedJwks) {
  PML_ASSERT_OK_AND_ASSIGN(auto store, SigningKeyStore::Open(dir_, kT0));
  const nlohmann::json jwks_json = store->Jwks(kT0, kLifetime);
  ASSERT_EQ(jwks_json["keys"].size(), 1u);
  const nlohmann::json& jwk = jwks_json["keys"][0];
  EXPECT_EQ(jwk["kty"], "EC");
  EXPECT_EQ(jwk["crv"], "P-256");
  EXPECT_EQ(jwk["alg"], "ES256");
  EXPECT_EQ(jwk["use"], "sig");
  EXPECT_FALSE(jwk.contains("d"));
  PML_ASSERT_OK_AND_ASSIGN(crypto::JwkSet jwks, crypto::JwkSet::ParseText(jwks_json.dump()));

  PML_ASSERT_OK_AND_ASSIGN(std::string token, store->Sign(Claims(kT0), kT0));
  PML_ASSERT_OK_AND_ASSIGN(crypto::VerifiedJwt v, crypto::VerifyJwt(token, jwks, Options(kT0)));
  EXPECT_EQ(v.header,
            nlohmann::json({{"alg", "ES256"}, {"kid", store->CurrentKid()}, {"typ", "JWT"}}));
  EXPECT_EQ(v.payload["iat"], absl::ToUnixSeconds(kT0));  // stamped
  EXPECT_EQ(v.payload["exp"], Claims(kT0)["exp"]);
  EXPECT_THAT(crypto::VerifyJwt(token, jwks, Options(kT0 + absl::Minutes(7))),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("token expired")));
}

TEST_F(SigningKeyStoreTest, SignRefusesPayloadWithoutFutureExp) {
  PML_ASSERT_OK_AND_ASSIGN(auto store, SigningKeyStore::Open(dir_, kT0));
  EXPECT_THAT(store->Sign(nlohmann::json::array(), kT0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an object")));
  EXPECT_THAT(store->Sign({{"iss", "x"}}, kT0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exp is missing")));
  EXPECT_THAT(store->Sign({{"exp", absl::ToUnixSeconds(kT0)}}, kT0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not after now")));
  PML_ASSERT_OK_AND_ASSIGN(std::string token,
                           store->Sign({{"exp", absl::ToUnixSeconds(kT0) + 1}, {"iat", 5}}, kT0));
  PML_ASSERT_OK_AND_ASSIGN(crypto::JwkSet jwks, crypto::JwkSet::Parse(store->Jwks(kT0, kLifetime)));
  crypto::VerifyJwtOptions o = Options(kT0);
  o.issuer.clear();
  PML_ASSERT_OK_AND_ASSIGN(crypto::VerifiedJwt v, crypto::VerifyJwt(token, jwks, o));
  EXPECT_EQ(v.payload["iat"], 5);  // a caller's iat is kept
}

TEST_F(SigningKeyStoreTest, ErrorsAndJwksNeverCarryPrivateKeyMaterial) {
  std::string kid;
  {
    PML_ASSERT_OK_AND_ASSIGN(auto store, SigningKeyStore::Open(dir_, kT0));
    kid = store->CurrentKid();
    EXPECT_THAT(store->Jwks(kT0, kLifetime).dump(), Not(HasSubstr("\"d\"")));
  }
  // A damaged PEM: the error names the file but quotes none of it.
  PML_ASSERT_OK_AND_ASSIGN(std::string pem, core::ReadFile(KeyFile(kid)));
  const std::string damaged = pem.substr(0, pem.size() / 2);
  ASSERT_THAT(core::WriteFileAtomic(KeyFile(kid), damaged, 0600), IsOk());
  auto reopened = SigningKeyStore::Open(dir_, kT0);
  ASSERT_THAT(reopened,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not a PEM private key")));
  const std::string body = pem.substr(28, 40);  // inside the base64 body
  EXPECT_THAT(std::string(reopened.status().message()), Not(HasSubstr(body)));
}

}  // namespace
}  // namespace pml::attestation
